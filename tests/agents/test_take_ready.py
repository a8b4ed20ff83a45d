"""``take_ready``: a batch is handed over as soon as nothing more waits, never on a clock."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.agents import _batch
from streams.agents._batch import take_ready
from streams.app import app
from tests.agents.conftest import until


class Recorder:
    """An agent body over ``take_ready`` that keeps each batch and can be held inside one."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.acked_before_next: list[bool] = []

    async def run(self, stream: Any, max_: int = 200) -> None:
        async for events in take_ready(stream, max_):
            # Acks come after the body: none of this batch is acked while it is being handled.
            self.acked_before_next.append(any(event.message.acked for event in events))
            self.batches.append([event.value for event in events])
            await self.release.wait()


async def _with_agent(recorder: Recorder, max_: int, body: Any) -> None:
    channel = app.channel()
    stream = app.stream(channel)
    task = asyncio.ensure_future(recorder.run(stream, max_))
    try:
        await body(channel)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_quiet_stream_hands_each_event_over_without_waiting_for_a_clock(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # The idle wake-up set to a minute: a batch that waited for a tick would never come in time.
    monkeypatch.setattr(_batch, "_IDLE_S", 60.0)
    recorder = Recorder()

    async def body(channel: Any) -> None:
        for number in range(5):
            await channel.send(value=number)
            await until(lambda: len(recorder.batches) == number + 1)
            await asyncio.sleep(0.02)  # quiet between events

    await _with_agent(recorder, 200, body)
    assert recorder.batches == [[0], [1], [2], [3], [4]]
    assert not any(recorder.acked_before_next)


async def test_what_arrives_while_a_batch_is_handled_is_the_next_batch() -> None:
    recorder = Recorder()

    async def body(channel: Any) -> None:
        recorder.release.clear()  # the agent is busy with its first batch...
        await channel.send(value="first")
        await until(lambda: len(recorder.batches) == 1)
        for number in range(7):  # ...while seven more arrive
            await channel.send(value=number)
        await asyncio.sleep(0.05)
        assert len(recorder.batches) == 1, "nothing may join a batch already handed over"
        recorder.release.set()
        await until(lambda: len(recorder.batches) == 2)

    await _with_agent(recorder, 200, body)
    assert recorder.batches == [["first"], list(range(7))]


async def test_a_batch_never_exceeds_its_maximum() -> None:
    recorder = Recorder()

    async def body(channel: Any) -> None:
        recorder.release.clear()
        await channel.send(value="first")
        await until(lambda: len(recorder.batches) == 1)
        for number in range(10):
            await channel.send(value=number)
        recorder.release.set()
        await until(lambda: sum(len(batch) for batch in recorder.batches) == 11)

    await _with_agent(recorder, 4, body)
    assert recorder.batches == [["first"], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]

"""``take_ready`` when an agent body raises: Faust's supervisor restarts the agent on the same stream.

A real ``faust.Agent`` with its real supervisor (``OneForOneSupervisor``: not ``test_context``'s,
which re-raises the crash) over an in-memory channel: the restart reuses the actor's stream
(``Agent._replace_actor``) and its passive drainer, as in a worker. mode's supervisor notices a
replacement actor's crash only on its 5-second poll (the wake-up comes while it is not waiting),
so every raise after the first takes ~5 s to be restarted, in a worker as here.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from faust import Agent

from streams.agents import _batch
from streams.agents._batch import take_ready
from streams.app import app, runtime
from tests.agents.conftest import until


class Body:
    """An agent body over ``take_ready`` that raises on a batch holding a poison value."""

    def __init__(self, raises: Callable[[list[Any], int], bool]) -> None:
        self.raises = raises  # (values of the batch, raises so far) -> raise now?
        self.batches: list[list[Any]] = []
        self.handled: list[Any] = []  # values of the batches the body got through
        self.raised = 0
        self.hold = asyncio.Event()
        self.hold.set()
        self.acked_early: list[Any] = []

    async def __call__(self, stream: Any) -> None:
        async for events in take_ready(stream):
            values = [event.value for event in events]
            self.batches.append(values)
            self.acked_early += [event.value for event in events if event.message.acked]
            await self.hold.wait()
            if self.raises(values, self.raised):
                self.raised += 1
                raise RuntimeError("a bug in the agent")
            self.handled += values
            self.events = events


async def _running(body: Body) -> AsyncIterator[tuple[Any, Agent]]:
    channel = app.channel()
    agent = Agent(body, app=app, channel=channel, name="tests.agents.crashing.probe", concurrency=1)
    await agent.start()
    try:
        yield channel, agent
    finally:
        await agent.stop()


def _stream(agent: Agent) -> Any:
    return next(iter(agent._actors)).stream


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batch, "_AGAIN_S", 0.01, raising=False)


async def test_the_batch_a_body_raised_on_and_what_arrived_meanwhile_reach_the_restarted_agent() -> None:
    # Before: the batch was acked when the abandoned generator was finalized (at once), and the
    # record that arrived while the body held it skipped the restarted agent's collector: never
    # handled, never acked (its partition's commit and Faust's wait_empty held for good).
    body = Body(lambda values, raised: "poison" in values and raised == 0)
    async for channel, agent in _running(body):
        body.hold.clear()
        await channel.send(value="poison")
        await until(lambda: body.batches)
        await channel.send(value="meanwhile")  # the drainer holds it until the batch is done
        await asyncio.sleep(0.05)
        body.hold.set()
        await until(lambda: body.raised == 1)
        for number in range(3):
            await channel.send(value=number)
        await until(lambda: len(body.handled) == 5)
        assert body.handled == ["poison", "meanwhile", 0, 1, 2]
        assert body.batches[:2] == [["poison"], ["poison"]]  # raised, then handed over again alone
        assert body.acked_early == [], "an event is acked only once a body has handled it"
        assert _stream(agent).enable_acks is False
        break


async def test_a_batch_is_handed_over_again_one_event_at_a_time_and_not_acked_before() -> None:
    body = Body(lambda values, raised: len(values) > 1 and raised == 0)
    async for channel, agent in _running(body):
        body.hold.clear()
        await channel.send(value="first")
        await until(lambda: body.batches)
        for value in ("a", "b", "c"):
            await channel.send(value=value)
        body.hold.set()
        await until(lambda: body.raised == 1)
        stream = _stream(agent)
        await until(lambda: len(body.handled) == 4)
        assert body.batches == [["first"], ["a", "b", "c"], ["a"], ["b"], ["c"]]
        assert body.acked_early == []
        assert all(event.message.acked for event in body.events)
        assert stream.enable_acks is False
        break


async def test_a_record_that_always_makes_its_body_raise_is_skipped_by_position_and_the_rest_handled(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures = runtime.metrics.command_failures.labels("crashing")
    before = failures._value.get()
    monkeypatch.setattr(_batch, "ALONE_TRIES", 2, raising=False)
    body = Body(lambda values, raised: "poison" in values)
    caplog.set_level(logging.WARNING, logger="streams.agents._batch")
    async for channel, agent in _running(body):
        body.hold.clear()
        await channel.send(value="before")
        await until(lambda: body.batches)
        for value in ("x", "poison", "y"):
            await channel.send(value=value)
        body.hold.set()
        await until(lambda: len(body.handled) == 3, timeout=30)
        await channel.send(value="after")
        await until(lambda: len(body.handled) == 4)
        assert body.handled == ["before", "x", "y", "after"]
        assert body.raised == 1 + _batch.ALONE_TRIES  # the batch, then alone each time
        assert body.batches.count(["poison"]) == _batch.ALONE_TRIES
        assert failures._value.get() == before + 1
        skipped = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "streams.agents._batch"]
        assert len(skipped) == 1 and "skipped the record at" in skipped[0].getMessage()
        assert "poison" not in caplog.text, "records are logged by position, never by content"
        break


async def test_a_body_that_raises_once_for_a_passing_reason_loses_nothing() -> None:
    body = Body(lambda values, raised: raised < 2)  # e.g. a dependency down for a moment
    async for channel, agent in _running(body):
        body.hold.clear()
        await channel.send(value="first")
        await until(lambda: body.batches)
        for value in ("a", "b"):
            await channel.send(value=value)
        body.hold.set()
        await until(lambda: len(body.handled) == 3, timeout=30)
        assert sorted(body.handled) == ["a", "b", "first"]
        break

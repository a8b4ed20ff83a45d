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
from faust.types import TP
from faust.types.tuples import ConsumerMessage

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


TP_ = TP("tests.take-ready.revoke", 0)


def _put(channel: Any, value: str, offset: int) -> Any:
    """Put an event as the consumer delivers it: its ack reaches ``app.consumer.ack`` (``faust_fixes``' fix 1)."""
    message = ConsumerMessage(topic=TP_.topic, partition=TP_.partition, offset=offset, timestamp=0.0,
                              timestamp_type=0, headers=[], key=None, value=None, checksum=None,
                              generation_id=app.consumer_generation_id)
    return channel.put(app.create_event(None, value, [], message))


@pytest.fixture
def consumer_offsets(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The consumer's acked offsets of ``TP_`` (what its next commit would write), counted from 0."""
    consumer = app.consumer
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
    consumer._committed_offset[TP_] = 0
    consumer._acked.pop(TP_, None)
    consumer._acked_index.pop(TP_, None)
    yield consumer
    consumer._committed_offset.pop(TP_, None)
    consumer._acked.pop(TP_, None)
    consumer._acked_index.pop(TP_, None)


async def test_a_rebalance_releases_the_events_waiting_to_go_again_at_once_and_commits_none_of_them(
    consumer_offsets: Any,
) -> None:
    # Review C, C1: Faust's revoke suspends the flow, then waits (``wait_empty``) for every unacked
    # record. Before, the retries went on (~20 s per record that always raises; three reached the
    # 60 s rebalance timeout, after which two workers handled the same records).
    body = Body(lambda values, raised: len(values) > 1 or values == ["b"])  # "b" always raises
    async for channel, agent in _running(body):
        body.hold.clear()
        await _put(channel, "first", 0)
        await until(lambda: body.batches)
        for offset, value in enumerate(("a", "b", "c"), start=1):
            await _put(channel, value, offset)
        body.hold.set()
        await until(lambda: body.raised == 1)  # the batch a, b, c: each goes again alone
        await until(lambda: "a" in body.handled)
        await until(lambda: body.raised == 2)  # b alone, then a back-off before it goes again
        stream = _stream(agent)
        waiting = [event for event, _ in _batch._collectors[stream].again]
        assert [event.value for event in waiting] == ["b", "c"]
        assert consumer_offsets._acked[TP_] == [0, 1]  # first and a, handled
        handed_over = len(body.batches)
        app.flow_control.suspend()  # what Faust's on_partitions_revoked does before wait_empty
        try:
            await until(lambda: all(event.message.acked for event in waiting), timeout=0.5)
            await asyncio.sleep(0.3)
            assert len(body.batches) == handed_over, "nothing is handed over while the partitions are revoked"
            assert consumer_offsets._acked[TP_] == [0, 1], "released, not committed: the next owner reads them"
            assert not consumer_offsets._unacked_messages & {event.message for event in waiting}
        finally:
            app.flow_control.resume()
        break


async def test_a_record_the_drainer_held_when_a_rebalance_began_is_released_not_handed_over(
    consumer_offsets: Any,
) -> None:
    body = Body(lambda values, raised: False)
    async for channel, agent in _running(body):
        body.hold.clear()
        await _put(channel, "first", 0)
        await until(lambda: body.batches)
        await _put(channel, "meanwhile", 1)  # the drainer holds it until the batch is done
        await asyncio.sleep(0.05)
        app.flow_control.suspend()
        try:
            body.hold.set()  # the body finishes its batch: its ack does not count either
            await until(lambda: body.handled == ["first"])
            await asyncio.sleep(0.3)
            assert body.batches == [["first"]]
            assert consumer_offsets._acked[TP_] == []
            assert not consumer_offsets._unacked_messages, "the revoke's wait_empty has nothing left to wait for"
        finally:
            app.flow_control.resume()
        await _put(channel, "after", 2)
        await until(lambda: body.handled == ["first", "after"])
        break


async def test_a_stop_wakes_a_back_off_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Review C, C3: the back-off waited its whole delay (up to 10 s) before it looked at the stop.
    monkeypatch.setattr(_batch, "_AGAIN_S", 8.0, raising=False)
    exits: list[str] = []

    def exit_now(reason: str, status: int | None = None) -> None:
        exits.append(reason)
        raise asyncio.CancelledError  # in a worker the process ends here

    monkeypatch.setattr(_batch.stopping, "exit_now", exit_now)
    body = Body(lambda values, raised: True)
    async for channel, agent in _running(body):
        await channel.send(value="poison")
        await until(lambda: body.raised == 1)
        await until(lambda: _batch._collectors[_stream(agent)].again)
        await asyncio.sleep(0.1)  # in the back-off now
        started = asyncio.get_running_loop().time()
        monkeypatch.setattr(type(app), "should_stop", property(lambda self: True))
        await until(lambda: exits, timeout=1.0)
        assert asyncio.get_running_loop().time() - started < 0.5
        assert "to handle again after its body raised" in exits[0]
        monkeypatch.undo()
        break


async def test_a_rebalance_during_the_back_off_releases_the_batch_at_once(
    consumer_offsets: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_batch, "_AGAIN_S", 8.0, raising=False)  # the restarted agent waits in its back-off
    body = Body(lambda values, raised: len(values) > 1)
    async for channel, agent in _running(body):
        body.hold.clear()
        await _put(channel, "first", 0)
        await until(lambda: body.batches)
        for offset, value in enumerate(("a", "b"), start=1):
            await _put(channel, value, offset)
        body.hold.set()
        await until(lambda: body.raised == 1)
        collector = _batch._collectors[_stream(agent)]
        await until(lambda: collector.held is None and len(collector.again) == 2)  # taken over: backing off
        waiting = [event for event, _ in collector.again]
        app.flow_control.suspend()
        try:
            await until(lambda: all(event.message.acked for event in waiting), timeout=0.5)
            await asyncio.sleep(0.3)
            assert body.batches == [["first"], ["a", "b"]]
            assert consumer_offsets._acked[TP_] == [0]
        finally:
            app.flow_control.resume()
        await _put(channel, "after", 3)
        await until(lambda: body.handled == ["first", "after"])
        break

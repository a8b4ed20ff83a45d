"""``streams.topics.publish`` waits for Kafka's acks without cancelling them (Kafka outage logs), and gives
up once the worker is stopping (a SIGTERM during a Kafka outage hung until SIGKILL)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.errors import NotLeaderForPartitionError

from rules.commands import Outgoing
from streams import stopping, topics
from streams.topics import acknowledged
from tests.agents.conftest import Exited


def _faust_future(loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    """A producer future with the done-callback Faust's ``Topic.publish_message`` adds: it reads the
    result and catches ``Exception`` only (``Topic._on_published``)."""
    future: asyncio.Future[Any] = loop.create_future()

    def on_published(fut: asyncio.Future[Any]) -> None:
        try:
            fut.result()
        except Exception:
            pass

    future.add_done_callback(on_published)
    return future


async def test_an_ack_past_the_bound_is_a_timeout_and_the_future_is_left_alone() -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []  # what the loop would log as "Exception in callback …"
    loop.set_exception_handler(lambda _, context: loop_errors.append(context))
    try:
        late = _faust_future(loop)
        with pytest.raises(TimeoutError, match="1 of 1 message"):
            await acknowledged([late], 0.05)
        assert not late.cancelled()  # Faust's callback will read a result, not a cancellation
        late.set_result("stored later")  # Kafka comes back: the record was in the producer's buffer
        await asyncio.sleep(0)
        assert loop_errors == []  # no "Exception in callback Topic._on_published … CancelledError"
    finally:
        loop.set_exception_handler(None)


async def test_the_old_wait_for_gather_cancelled_the_future_and_the_callback_raised() -> None:
    # What the outage logs showed, kept as a check of the mechanism the fix avoids.
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        late = _faust_future(loop)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.gather(late), 0.05)
        await asyncio.sleep(0)
        assert late.cancelled()
        assert [type(e.get("exception")).__name__ for e in errors] == ["CancelledError"]
    finally:
        loop.set_exception_handler(None)


async def test_every_ack_returns_and_a_refusal_is_raised() -> None:
    loop = asyncio.get_running_loop()
    ok = [_faust_future(loop) for _ in range(3)]
    for future in ok:
        loop.call_soon(future.set_result, "meta")
    await acknowledged(ok, 1.0)
    refused = [_faust_future(loop), _faust_future(loop)]
    loop.call_soon(refused[0].set_result, "meta")
    loop.call_soon(refused[1].set_exception, NotLeaderForPartitionError())
    with pytest.raises(NotLeaderForPartitionError):
        await acknowledged(refused, 1.0)
    await acknowledged([], 1.0)


def _kafka_never_answers(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.Future[Any]]:
    loop = asyncio.get_running_loop()
    sent: list[asyncio.Future[Any]] = []

    async def send(message: Outgoing) -> asyncio.Future[Any]:
        sent.append(_faust_future(loop))
        return sent[-1]

    monkeypatch.setattr(topics, "send", send)
    return sent


_ONE = [Outgoing(channel="lead.events", key="k", value={"x": 1})]


async def test_publish_gives_up_within_the_grace_once_the_worker_stops_and_kafka_never_acks(
        monkeypatch: pytest.MonkeyPatch, exits: list[str], stopping_app: Callable[[], None]) -> None:
    # The s16 review: with Kafka gone, publish retried for ever and Faust's stop waited for it.
    sent = _kafka_never_answers(monkeypatch)
    task = asyncio.ensure_future(topics.publish(_ONE))
    await asyncio.sleep(0.3)
    assert not task.done()  # running: Kafka may come back, the partition waits
    stopping_app()
    began = time.monotonic()
    done, _ = await asyncio.wait({task}, timeout=stopping.STOPPING_GRACE_S + 1.0)
    took = time.monotonic() - began
    assert done, "publish still waiting for Kafka after the stop began"
    with pytest.raises(Exited):
        task.result()
    assert stopping.STOPPING_GRACE_S - 0.1 <= took <= stopping.STOPPING_GRACE_S + 0.6, took
    assert len(exits) == 1 and "1 message(s) are not stored" in exits[0]
    assert not sent[0].cancelled()  # Faust's future is left alone (its callback reads a result)


async def test_publish_gives_up_between_retries_once_the_worker_stops(
        monkeypatch: pytest.MonkeyPatch, exits: list[str], stopping_app: Callable[[], None]) -> None:
    attempts = 0

    async def refused(message: Outgoing) -> Any:
        nonlocal attempts
        attempts += 1
        raise NotLeaderForPartitionError()

    monkeypatch.setattr(topics, "send", refused)
    task = asyncio.ensure_future(topics.publish(_ONE))
    await asyncio.sleep(0.1)
    stopping_app()  # during the 0.5 s back-off after the first refusal
    with pytest.raises(Exited):
        await asyncio.wait_for(task, 1.0)
    assert attempts == 1 and "Kafka refused them" in exits[0]


async def test_publish_during_the_stop_still_returns_when_kafka_acks(
        monkeypatch: pytest.MonkeyPatch, exits: list[str], stopping_app: Callable[[], None]) -> None:
    # A stop with Kafka there: the agents' last batches are stored as ever (acked after 0.4 s here).
    sent = _kafka_never_answers(monkeypatch)
    stopping_app()
    task = asyncio.ensure_future(topics.publish(_ONE * 3))
    await asyncio.sleep(0.4)
    for future in sent:
        future.set_result("meta")
    await asyncio.wait_for(task, 1.0)
    assert exits == [] and len(sent) == 3

"""``streams.topics.publish`` waits for Kafka's acks without cancelling them (Kafka outage logs)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import NotLeaderForPartitionError

from streams.topics import acknowledged


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

"""The API's writes to Kafka (``streams/web.py``): bounded, never cancelling an ack, refused at once after a failure."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

import streams.web as web
from connectors.api.write_gate import WriteGate, WritesPaused
from leadflow.errors import TransientError, Unconfirmed


class FakeTopic:
    """``Topic.send`` as Faust does it: queue the record and hand back the producer's future."""

    def __init__(self, acks: list[asyncio.Future[Any] | Exception]) -> None:
        self.acks = acks
        self.sent = 0

    async def send(self, *, key: str, value: Any) -> asyncio.Future[Any]:
        self.sent += 1
        ack = self.acks.pop(0)
        if isinstance(ack, Exception):
            raise ack
        # What Faust's Topic.publish_message does: its _on_published reads the result when done.
        ack.add_done_callback(lambda fut: fut.result() if not fut.exception() else None)
        return ack


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> web.Engine:
    monkeypatch.setattr(web, "_ACK_TIMEOUT_S", 0.2)
    engine = web.Engine.__new__(web.Engine)  # no app: only the write path is under test
    engine._gate = WriteGate(cooldown_s=60.0)
    return engine


async def test_an_ack_not_in_time_is_unconfirmed_and_its_future_is_left_for_faust_s_callback(
        engine: web.Engine) -> None:
    loop = asyncio.get_running_loop()
    callback_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: callback_errors.append(context))
    ack: asyncio.Future[Any] = loop.create_future()
    started = loop.time()
    with pytest.raises(Unconfirmed):
        await engine._acked([(FakeTopic([ack]), "k", b"v")])
    assert loop.time() - started < 0.5
    # Cancelling it made Faust's Topic._on_published raise CancelledError in an event-loop
    # callback: "Exception in callback Topic._on_published", one ERROR traceback per capture.
    assert not ack.cancelled()
    ack.set_result("stored after all")
    await asyncio.sleep(0)
    assert callback_errors == []


async def test_after_a_write_kafka_did_not_take_the_next_is_refused_at_once_without_sending(
        engine: web.Engine) -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(Unconfirmed):
        await engine._acked([(FakeTopic([loop.create_future()]), "k", b"v")])
    topic = FakeTopic([loop.create_future()])
    started = loop.time()
    with pytest.raises(WritesPaused) as refused:
        await engine._acked([(topic, "k", b"v")])
    assert loop.time() - started < 0.05 and topic.sent == 0
    assert refused.value.retry_after_s >= 1


async def test_a_refused_send_is_not_stored_and_a_partly_acknowledged_batch_is_unconfirmed(
        engine: web.Engine) -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TransientError) as refused:
        await engine._acked([(FakeTopic([ConnectionError("no broker")]), "k", b"v")])
    assert type(refused.value) is TransientError  # nothing was queued: "not stored" is true

    engine._gate = WriteGate(cooldown_s=60.0)
    stored, lost = loop.create_future(), loop.create_future()
    stored.set_result("ok")
    lost.set_exception(ConnectionError("broker gone"))
    topic = FakeTopic([stored, lost])
    with pytest.raises(Unconfirmed):  # one record is stored: "not stored" would be false
        await engine._acked([(topic, "a", b"v"), (topic, "b", b"v")])


async def test_acknowledged_writes_pass_and_a_good_probe_reopens_writes(engine: web.Engine) -> None:
    loop = asyncio.get_running_loop()
    engine._gate = WriteGate(cooldown_s=0.0)
    with pytest.raises(Unconfirmed):
        await engine._acked([(FakeTopic([loop.create_future()]), "k", b"v")])
    acked = loop.create_future()
    acked.set_result("ok")
    await engine._acked([(FakeTopic([acked]), "k", b"v")])  # the probe
    assert engine._gate.failing_for() is None

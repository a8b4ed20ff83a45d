"""A dead letter Kafka refuses never costs the intake a record or its batch (session 17).

``reject`` raised when Kafka refused a dead letter; ``take_ready`` acks a batch whose body raised, so
the record was committed without its dead letter and the valid leads of its batch without their
capture. Now a dead letter too large for Kafka goes again smaller, and any other refusal is retried
(the feed waits for Kafka) until the worker stops, which ends the process with the batch unacked.
The real broker's refusal is in ``tests/integration/test_dead_letter_refused.py``.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError, NotLeaderForPartitionError
from faust.exceptions import ProducerSendError

from rules.commands import CaptureLead
from streams import stopping, topics
from streams.agents import intake
from tests.agents.conftest import Exited, Published, until

ORIGIN = "x.leads.inbound:0:3"


class RefusingTopic:
    """``leads.rejected`` as Kafka answers it: records over ``limit`` bytes refused, ``refusals`` first
    answered with ``error``; what it stored is in ``stored``."""

    def __init__(self, *, limit: int = 10**6, refusals: int = 0, error: Exception | None = None,
                 client_side: bool = False) -> None:
        self.limit, self.refusals, self.error, self.client_side = limit, refusals, error, client_side
        self.stored: list[tuple[bytes, dict[str, bytes]]] = []
        self.attempts = 0

    async def send(self, *, key: Any = None, value: bytes = b"", headers: dict[str, bytes]) -> asyncio.Future[None]:
        self.attempts += 1
        size = len(value) + sum(len(k) + len(v) for k, v in headers.items())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if size > self.limit and self.client_side:
            # What Faust's producer raises for a record over its max_request_size.
            try:
                raise MessageSizeTooLargeError("larger than the maximum request size")
            except MessageSizeTooLargeError as exc:
                raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        if size > self.limit:
            future.set_exception(MessageSizeTooLargeError())  # the broker's answer, on the future
        elif self.refusals > 0:
            self.refusals -= 1
            future.set_exception(self.error or NotLeaderForPartitionError())
        else:
            self.stored.append((value, headers))
            future.set_result(None)
        return future


def test_a_dead_letter_has_smaller_forms_that_keep_its_reason_and_origin() -> None:
    raw = b"x" * 5000
    full, without_value, smallest = intake.dead_letters(raw, "malformed_json", {"message": "m"}, ORIGIN)
    assert full == (raw, {"leadflow-reason": b"malformed_json", "leadflow-detail": b'{"message":"m"}',
                          "leadflow-origin": ORIGIN.encode()})
    assert without_value[0] == b"" and without_value[1]["leadflow-value-omitted"] == b"5000"
    assert without_value[1]["leadflow-detail"] == b'{"message":"m"}'
    assert smallest[0] == b"" and smallest[1]["leadflow-value-omitted"] == b"5000"
    assert b"leadflow-origin" in smallest[1]["leadflow-detail"]
    for _, headers in (without_value, smallest):
        assert headers["leadflow-reason"] == b"malformed_json" and headers["leadflow-origin"] == ORIGIN.encode()
    # An empty record (a tombstone) has nothing to leave out.
    assert intake.dead_letters(None, "empty", {}, ORIGIN) == [(b"", full[1] | {"leadflow-reason": b"empty",
                                                                             "leadflow-detail": b"{}"})]


def test_intake_uses_topics_too_large() -> None:
    # Review B: intake had a copy of its own.
    assert not hasattr(intake, "too_large")
    assert topics.too_large(MessageSizeTooLargeError())
    assert not topics.too_large(TimeoutError("1 of 1 message(s) not acknowledged in 30 s"))


async def test_a_bug_on_the_dead_letter_s_way_raises_instead_of_being_retried_for_ever(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Review B: reject retried any exception, so a bug stalled the feed for ever; now it raises and
    # take_ready's rule applies (the batch again, the record skipped after three raises alone).
    monkeypatch.setattr(intake, "_RETRY_S", 0.01)
    rejected = RefusingTopic(refusals=1, error=TypeError("a bug"))
    monkeypatch.setattr(intake, "leads_rejected", rejected)
    with pytest.raises(TypeError):
        await asyncio.wait_for(intake.reject(b"{}", "invalid_lead", {"fields": []}, ORIGIN), 2.0)
    assert rejected.attempts == 1 and not rejected.stored


async def test_kafka_s_answers_are_still_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "_RETRY_S", 0.01)
    for error in (NotLeaderForPartitionError(), ProducerSendError("Error while sending"), TimeoutError("no ack")):
        rejected = RefusingTopic(refusals=1, error=error)
        monkeypatch.setattr(intake, "leads_rejected", rejected)
        await asyncio.wait_for(intake.reject(b"{}", "invalid_lead", {"fields": []}, ORIGIN), 2.0)
        assert rejected.attempts == 2 and len(rejected.stored) == 1


@pytest.mark.parametrize("client_side", [False, True], ids=["broker", "producer"])
async def test_a_dead_letter_too_large_goes_smaller_and_its_batch_is_captured(
        published: Published, monkeypatch: pytest.MonkeyPatch, client_side: bool) -> None:
    # Before: reject raised MessageSizeTooLargeError, the agent crashed and the batch was acked:
    # the poison record had no dead letter and the three leads no capture (the integration test's 5 of 6).
    rejected = RefusingTopic(limit=2048, client_side=client_side)
    monkeypatch.setattr(intake, "publish", published)
    monkeypatch.setattr(intake, "leads_rejected", rejected)
    poison = b"not a lead " + b"x" * 4000
    records = [orjson.dumps({"email": f"good.{i}@feed.example"}) for i in range(3)]
    async with intake.capture_leads.test_context() as agent:
        for value in [records[0], poison, *records[1:]]:
            await agent.put(key=b"k", value=value)
        await until(lambda: len(published.messages) >= 3 and rejected.stored)
    captured = [m.value.capture if hasattr(m.value, "capture") else m.value for m in published.messages]
    assert sorted(c.lead.email for c in captured if isinstance(c, CaptureLead)) == [
        f"good.{i}@feed.example" for i in range(3)]
    ((value, headers),) = rejected.stored
    assert value == b"" and headers["leadflow-value-omitted"] == str(len(poison)).encode()
    assert headers["leadflow-reason"] == b"malformed_json" and headers["leadflow-origin"].endswith(b":1")


async def test_a_refused_dead_letter_is_retried_until_kafka_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: the first NotLeaderForPartitionError (or, in an outage, the producer's timeout) came out
    # of reject and the batch was acked.
    monkeypatch.setattr(intake, "_RETRY_S", 0.01)
    rejected = RefusingTopic(refusals=3)
    monkeypatch.setattr(intake, "leads_rejected", rejected)
    await asyncio.wait_for(intake.reject(b"{}", "invalid_lead", {"fields": []}, ORIGIN), 2.0)
    assert rejected.attempts == 4 and rejected.stored == [(b"{}", intake.dead_letters(
        b"{}", "invalid_lead", {"fields": []}, ORIGIN)[0][1])]


async def test_a_dead_letter_too_large_in_every_form_waits_for_kafka_and_is_stored_once_it_fits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A topic whose max.message.bytes is below even a dead letter's headers: the feed waits (never a
    # record lost) until the operator raises it.
    monkeypatch.setattr(intake, "_RETRY_S", 0.01)
    rejected = RefusingTopic(limit=10)
    monkeypatch.setattr(intake, "leads_rejected", rejected)
    task = asyncio.ensure_future(intake.reject(b"x" * 100, "malformed_json", {"message": "m"}, ORIGIN))
    await asyncio.sleep(0.2)
    assert not task.done() and rejected.attempts >= 4 and not rejected.stored
    rejected.limit = 10**6
    await asyncio.wait_for(task, 2.0)
    ((value, headers),) = rejected.stored
    assert value == b"" and b"leadflow-origin" in headers["leadflow-detail"]  # the smallest form


async def test_a_dead_letter_kafka_never_acknowledges_ends_the_process_once_the_worker_stops(
        monkeypatch: pytest.MonkeyPatch, exits: list[str], stopping_app: Callable[[], None]) -> None:
    # Kafka gone: the attempt waits (Faust's own bound is 20 minutes); the stop must not wait for it,
    # and must not ack the batch either: the process ends, the record is read again after the restart.
    sent: list[asyncio.Future[None]] = []

    class Silent:
        async def send(self, **kwargs: Any) -> asyncio.Future[None]:
            sent.append(asyncio.get_running_loop().create_future())
            return sent[-1]

    monkeypatch.setattr(intake, "leads_rejected", Silent())
    task = asyncio.ensure_future(intake.reject(b"{}", "invalid_lead", {}, ORIGIN))
    await asyncio.sleep(0.3)
    assert not task.done()
    stopping_app()
    began = time.monotonic()
    done, _ = await asyncio.wait({task}, timeout=stopping.STOPPING_GRACE_S + 1.0)
    assert done and isinstance(task.exception(), Exited), "reject still waiting for Kafka after the stop began"
    assert time.monotonic() - began <= stopping.STOPPING_GRACE_S + 0.6
    assert len(exits) == 1 and "not stored" in exits[0] and "dead letter" in exits[0]
    assert not sent[0].cancelled()  # Faust's future is left alone


async def test_a_refused_dead_letter_during_the_stop_ends_the_process_instead_of_retrying(
        monkeypatch: pytest.MonkeyPatch, exits: list[str], stopping_app: Callable[[], None]) -> None:
    rejected = RefusingTopic(refusals=100)
    monkeypatch.setattr(intake, "leads_rejected", rejected)
    task = asyncio.ensure_future(intake.reject(b"{}", "invalid_lead", {}, ORIGIN))
    await asyncio.sleep(0.1)
    stopping_app()  # during the back-off after the first refusal
    with pytest.raises(Exited):
        await asyncio.wait_for(task, 1.0)
    assert rejected.attempts == 1 and not rejected.stored and "not stored" in exits[0]

"""What the notifier does when something unexpected raises: no message of the batch is lost.

Seen in an audit: with ``LEADFLOW_WEBHOOK_TIMEOUT=-1`` building the sender raised ValueError in every
batch; the batch was acknowledged and every webhook dropped, not retried, not dead-lettered, and the
lead never heard of it. Settings now refuse that value; these tests keep the notifier from losing a
batch to whatever else may raise.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.webhooks import DeliveryResult
from rules.commands import Notify, RecordDelivery
from rules.delivery import CircuitBreaker, DeliveryBacklog, endpoint_of
from streams.agents import notifier
from streams.tables.webhook_retries import webhook_retries
from tests.agents.conftest import Published, until

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _notify(lead_id: str) -> Notify:
    return Notify(webhook_id=f"msg_{lead_id}", event_type="lead.assigned", lead_id=lead_id, rep_id="a",
                  url="https://hooks.example/a", secret="whsec_x", payload={"type": "lead.assigned"}, created_at=NOW)


@pytest.fixture
def wired(published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notifier, "publish", published)
    monkeypatch.setattr(notifier, "breaker", CircuitBreaker(threshold=5, cooldown_s=60.0))
    monkeypatch.setattr(notifier, "_SCHEDULE", (5.0, 300.0))


async def test_a_delivery_that_raises_is_a_failed_attempt_retried_on_the_schedule(
        published: Published, wired: None, monkeypatch: pytest.MonkeyPatch) -> None:
    async def deliver(notify: Notify, gate: Any) -> DeliveryResult:
        raise ValueError("timeout_s must be a positive number of seconds")  # what the bad timeout raised

    monkeypatch.setattr(notifier, "_deliver", deliver)
    lead_id = f"ld_{uuid.uuid4().hex[:8]}"
    async with notifier.deliver_notifications.test_context() as agent:
        await agent.put(key=lead_id, value=_notify(lead_id))
        await until(lambda: published.values(RecordDelivery))
        backlog = webhook_retries.get(lead_id)
        assert isinstance(backlog, DeliveryBacklog)
        (entry,) = backlog.pending
        assert entry.attempts == 1 and entry.last_error == "notifier error: ValueError (see the worker's log)"
    (report,) = published.values(RecordDelivery)
    assert not report.delivered and not report.dead_lettered
    assert report.error == "notifier error: ValueError (see the worker's log)"


async def test_our_own_failures_do_not_count_against_the_endpoints_circuit(
        published: Published, wired: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # A bug of ours (an exception, not a status, timeout or connection error from the receiver)
    # counted as the endpoint's failure: five of them opened a healthy rep's circuit, and their
    # next leads were deferred for the cooldown.
    answers: list[int | Exception] = [RuntimeError("a bug")] * 5 + [204]

    async def deliver(notify: Notify, gate: Any) -> DeliveryResult:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return DeliveryResult(webhook_id=notify.webhook_id, delivered=True, attempts=1, status=answer, error=None,
                              duration_s=0.01, gave_up_reason=None)

    monkeypatch.setattr(notifier, "_deliver", deliver)
    leads = [f"ld_{uuid.uuid4().hex[:8]}" for _ in range(6)]
    endpoint = endpoint_of(_notify(leads[0]).url)
    async with notifier.deliver_notifications.test_context() as agent:
        for count, lead_id in enumerate(leads[:5], 1):  # one batch each: the breaker sees them in order
            await agent.put(key=lead_id, value=_notify(lead_id))
            await until(lambda: len(published.values(RecordDelivery)) == count)
        assert not notifier.breaker.is_open(endpoint) and len(notifier.breaker) == 0
        await agent.put(key=leads[5], value=_notify(leads[5]))
        await until(lambda: len(published.values(RecordDelivery)) == 6)
    assert answers == [], "the sixth lead was attempted, not deferred by an open circuit"
    reports = {r.lead_id: r for r in published.values(RecordDelivery)}
    assert reports[leads[5]].delivered
    # Our failures are still failed attempts, retried on the schedule, and logged as before.
    for lead_id in leads[:5]:
        assert not reports[lead_id].delivered and not reports[lead_id].dead_lettered
        assert reports[lead_id].error == "notifier error: RuntimeError (see the worker's log)"
        backlog = webhook_retries.get(lead_id)
        assert isinstance(backlog, DeliveryBacklog) and backlog.pending[0].attempts == 1


async def test_an_endpoint_that_fails_still_opens_its_circuit(
        published: Published, wired: None, monkeypatch: pytest.MonkeyPatch) -> None:
    async def deliver(notify: Notify, gate: Any) -> DeliveryResult:
        return DeliveryResult(webhook_id=notify.webhook_id, delivered=False, attempts=1, status=503,
                              error="HTTP 503", duration_s=0.01, gave_up_reason=None)

    monkeypatch.setattr(notifier, "_deliver", deliver)
    leads = [f"ld_{uuid.uuid4().hex[:8]}" for _ in range(5)]
    async with notifier.deliver_notifications.test_context() as agent:
        for count, lead_id in enumerate(leads, 1):
            await agent.put(key=lead_id, value=_notify(lead_id))
            await until(lambda: len(published.values(RecordDelivery)) == count)
    assert notifier.breaker.is_open(endpoint_of(_notify(leads[0]).url))


async def test_a_batch_that_cannot_be_handled_is_dead_lettered_and_the_lead_told(
        published: Published, wired: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_settle(*args: Any) -> None:
        raise RuntimeError("a bug")

    async def deliver(notify: Notify, gate: Any) -> DeliveryResult:
        return DeliveryResult(webhook_id=notify.webhook_id, delivered=True, attempts=1, status=204, error=None,
                              duration_s=0.01, gave_up_reason=None)

    monkeypatch.setattr(notifier, "_deliver", deliver)
    monkeypatch.setattr(notifier, "_settle", broken_settle)
    leads = [f"ld_{uuid.uuid4().hex[:8]}" for _ in range(3)]
    async with notifier.deliver_notifications.test_context() as agent:
        for lead_id in leads:
            await agent.put(key=lead_id, value=_notify(lead_id))
        await until(lambda: len(published.values(RecordDelivery)) == 3)
    dead = [m.value for m in published.messages if m.channel == "notifications.dead"]
    assert sorted((d["lead_id"], d["reason"]) for d in dead) == sorted(
        (lead_id, "notifier error: RuntimeError (see the worker's log)") for lead_id in leads)
    assert all("secret" not in d for d in dead)
    reports = published.values(RecordDelivery)
    assert sorted(r.lead_id for r in reports) == sorted(leads)
    assert all(r.dead_lettered and not r.delivered for r in reports)

"""The notifier's durable retries through ``test_context()``: backlog table, RetryDue, dead letters, breaker."""
from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.webhooks import DeliveryResult
from rules.commands import Notify, RecordDelivery
from rules.delivery import CircuitBreaker, DeliveryBacklog, RetryDue
from streams.agents import notifier
from streams.tables.webhook_retries import webhook_retries
from tests.agents.conftest import Published

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _notify(lead_id: str, url: str = "https://hooks.example/a") -> Notify:
    return Notify(webhook_id=f"msg_{lead_id}", event_type="lead.assigned", lead_id=lead_id, rep_id="a", url=url,
                  secret="whsec_x", payload={"type": "lead.assigned"}, created_at=NOW)


def _result(notify: Notify, status: int | None, *, gave_up: str | None = None) -> DeliveryResult:
    ok = status is not None and 200 <= status < 300
    return DeliveryResult(webhook_id=notify.webhook_id, delivered=ok, attempts=1, status=status,
                          error=None if ok else f"HTTP {status}", duration_s=0.01, gave_up_reason=gave_up)


@pytest.fixture
def wired(published: Published, monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Deliveries answer with the statuses the test queues (204 when empty); publish is captured."""
    answers: list[int | None] = []
    monkeypatch.setattr(notifier, "publish", published)
    monkeypatch.setattr(notifier, "breaker", CircuitBreaker(threshold=2, cooldown_s=60.0))
    monkeypatch.setattr(notifier, "_SCHEDULE", (5.0, 300.0))

    async def deliver(message: Notify, gate: Any) -> DeliveryResult:
        status = answers.pop(0) if answers else 204
        return _result(message, status, gave_up="endpoint gone (410)" if status == 410 else None)

    monkeypatch.setattr(notifier, "_deliver", deliver)
    return answers


async def _until(check: Any, what: str) -> None:
    for _ in range(150):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_failure_waits_in_the_table_and_a_due_retry_delivers_it(
    published: Published, wired: list[int | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifier, "breaker", CircuitBreaker(threshold=5, cooldown_s=60.0))  # stays closed here
    lead_id = f"ld_{uuid.uuid4().hex[:8]}"
    notify = _notify(lead_id)
    wired.extend([503, 503])
    async with notifier.deliver_notifications.test_context() as agent:
        await agent.put(key=lead_id, value=notify)
        await _until(lambda: published.values(RecordDelivery), "the first failure reported")
        backlog = webhook_retries.get(lead_id)
        assert isinstance(backlog, DeliveryBacklog)
        (entry,) = backlog.pending
        assert entry.attempts == 1 and entry.last_error == "HTTP 503"
        assert entry.next_at - entry.first_attempt_at == timedelta(seconds=5)  # the schedule's first delay
        (first,) = published.values(RecordDelivery)
        assert not first.delivered and not first.dead_lettered and first.attempts == 1
        assert notifier.retry_index.get(lead_id) is not None

        # Made due now (the test cannot wait 5 s); the replayed Notify is ignored, it is already waiting.
        await agent.put(key=lead_id, value=_replace_next_at(lead_id, notify))
        # A stale RetryDue (an attempt already made) does nothing; the right one tries again: 503 once more.
        for attempt in (1, 2):
            await agent.put(key=lead_id, value=RetryDue(lead_id=lead_id, webhook_id=notify.webhook_id,
                                                        attempt=attempt, due_at=NOW))
        await _until(lambda: not wired, "the second attempt")
        await _until(lambda: webhook_retries.get(lead_id).pending[0].attempts == 2, "attempt 2 recorded")
        (entry,) = webhook_retries.get(lead_id).pending
        assert entry.next_at > NOW + timedelta(seconds=200)  # the schedule's second delay (300 s)
        assert not [m for m in published.messages if m.channel == "notifications.dead"]
        # The third attempt (the last one the schedule allows) is delivered.
        await agent.put(key=lead_id, value=_replace_next_at(lead_id, notify))
        await agent.put(key=lead_id, value=RetryDue(lead_id=lead_id, webhook_id=notify.webhook_id, attempt=3,
                                                    due_at=NOW))
        await _until(lambda: any(r.delivered for r in published.values(RecordDelivery)), "the retry delivered")
    delivered = [r for r in published.values(RecordDelivery) if r.delivered]
    assert [(r.webhook_id, r.attempts) for r in delivered] == [(notify.webhook_id, 3)]
    assert webhook_retries.get(lead_id) is None


def _replace_next_at(lead_id: str, notify: Notify) -> Notify:
    """Make the stored retry due now (the test cannot wait 5 s): a replayed Notify is ignored meanwhile."""
    backlog = webhook_retries.data[lead_id]
    entry = backlog.pending[0]
    webhook_retries.data[lead_id] = DeliveryBacklog(lead_id=lead_id, pending=(
        type(entry)(notify=entry.notify, attempts=entry.attempts, first_attempt_at=entry.first_attempt_at,
                    next_at=NOW - timedelta(seconds=1), last_error=entry.last_error),))
    return notify  # the replay of the original Notify: already waiting, so not sent again


async def test_410_is_dead_lettered_at_once_and_the_lead_told(published: Published, wired: list[int | None]) -> None:
    lead_id = f"ld_{uuid.uuid4().hex[:8]}"
    wired.extend([410])
    async with notifier.deliver_notifications.test_context() as agent:
        await agent.put(key=lead_id, value=_notify(lead_id))
        await _until(lambda: published.values(RecordDelivery), "the dead letter")
    dead = [m.value for m in published.messages if m.channel == "notifications.dead"]
    assert [(d["lead_id"], d["reason"], d["attempts"]) for d in dead] == [(lead_id, "endpoint gone (410)", 1)]
    assert "secret" not in dead[0]
    (report,) = published.values(RecordDelivery)
    assert report.dead_lettered and not report.delivered
    assert webhook_retries.get(lead_id) is None


async def test_an_open_circuit_defers_without_using_an_attempt(published: Published, wired: list[int | None]) -> None:
    url = f"https://down-{uuid.uuid4().hex[:6]}.example/hook"
    leads = [f"ld_{uuid.uuid4().hex[:8]}" for _ in range(3)]
    wired.extend([503, 503])
    async with notifier.deliver_notifications.test_context() as agent:
        for lead_id in leads[:2]:
            await agent.put(key=lead_id, value=_notify(lead_id, url))
            await asyncio.sleep(0.1)  # separate batches: the breaker counts them in order
        await agent.put(key=leads[2], value=_notify(leads[2], url))
        await _until(lambda: webhook_retries.get(leads[2]) is not None, "the deferral")
        deferred = webhook_retries.get(leads[2])
    assert isinstance(deferred, DeliveryBacklog)
    (entry,) = deferred.pending
    assert entry.attempts == 0 and entry.last_error == "deferred: endpoint circuit open"
    assert not wired, "both failures were real attempts"

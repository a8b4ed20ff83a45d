"""Deliver webhooks in batches with bounded parallelism, retry them durably, report each outcome.

One agent on ``notifications`` (``concurrency=1``) takes a batch, delivers it with bounded
parallelism, and moves on only when the whole batch is done and its outcomes are published
(DESIGN §5). A message that fails is not retried here: it goes to ``webhook_retries`` with
the time of its next attempt on the Standard Webhooks schedule (``rules/delivery.py``), and
a timer (``fire_webhook_retries``) sends a ``RetryDue`` back to ``notifications`` when that
time comes. Nothing waits on a long delay, and a crash loses no retry: the table is durable
and the timer's index is rebuilt from it.

Per endpoint, a circuit breaker defers deliveries while the endpoint keeps failing (no
attempt is used up), then lets one probe through. ``410 Gone``, another 4xx, or the schedule
running out dead-letters the message on ``notifications.dead`` with the reason, and the lead
hears it (``RecordDelivery(dead_lettered=True)``): an unreachable rep loses the assignment.

Nothing unexpected loses a message either: a delivery that raises is a failed attempt (retried
on the schedule), and a batch that cannot be handled at all is dead-lettered message by message
with the reason, so its leads hear of it too (``dead_letter_batch``). Such a failure is ours, not
the endpoint's: its circuit does not count it (``DeliveryResult.our_fault``).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from connectors.webhooks import DeliveryResult, OutboundWebhook
from rules.commands import Notify, Outgoing, RecordDelivery
from rules.delivery import (
    CircuitBreaker,
    DeliveryBacklog,
    PendingDelivery,
    RetryDue,
    deadline,
    endpoint_of,
    judge,
)
from sla.timers import TimerIndex
from streams import stall_guard
from streams.agents._batch import acting_for, readable, take_ready
from streams.app import app, runtime
from streams.tables.webhook_retries import webhook_retries
from streams.topics import notifications, publish

__all__ = ["deliver_notifications", "fire_webhook_retries", "breaker", "retry_index", "dead_letter_batch"]

log = logging.getLogger(__name__)

_BATCH = 64
_PARALLEL = 32
_SCHEDULE = runtime.settings.webhook_retry_schedule
#: How often the retry timer looks for due messages: a quarter of the shortest delay, 50 ms-1 s.
_TICK_S = min(1.0, max(0.05, min(_SCHEDULE, default=4.0) / 4))

#: In memory, per worker: an accelerator, not state (after a crash every circuit starts closed).
breaker = CircuitBreaker(threshold=runtime.settings.webhook_breaker_threshold,
                         cooldown_s=runtime.settings.webhook_breaker_cooldown_s)
#: lead_id -> its earliest pending retry; derived from ``webhook_retries`` and rebuilt from it.
retry_index = TimerIndex()
#: (lead_id, webhook_id) -> (attempt, next_at) already sent as ``RetryDue`` and not yet acted on.
_fired: dict[tuple[str, str], tuple[int, float]] = {}


async def _deliver(notify: Notify, gate: asyncio.Semaphore) -> DeliveryResult:
    message = OutboundWebhook(webhook_id=notify.webhook_id, event_type=notify.event_type, url=notify.url,
                              secret=notify.secret, body=orjson.dumps(notify.payload))
    async with gate:
        stall_guard.check()  # paused past the session: this lead's webhook is the new owner's to send
        return await runtime.resources.sender.deliver(message)


async def _attempt(notify: Notify, gate: asyncio.Semaphore) -> DeliveryResult:
    """``_deliver``, with whatever it raises (it should return every failure) turned into a failed
    attempt: the message then takes the retry schedule like any failure, and the dead letter at its
    end, instead of taking the whole batch down with it."""
    started = asyncio.get_running_loop().time()
    try:
        return await _deliver(notify, gate)
    except Exception as exc:
        runtime.metrics.command_failures.labels("notifier").inc()
        log.exception("notifier could not attempt webhook_id=%s event_type=%s lead_id=%s",
                      notify.webhook_id, notify.event_type, notify.lead_id)
        # The exception's type only: its text may quote anything (a URL's query, a payload field).
        return DeliveryResult(webhook_id=notify.webhook_id, delivered=False, attempts=0, status=None,
                              error=f"notifier error: {type(exc).__name__} (see the worker's log)",
                              duration_s=asyncio.get_running_loop().time() - started, gave_up_reason=None,
                              our_fault=True)


@dataclass(slots=True)
class _Job:
    lead_id: str
    notify: Notify
    attempts_before: int
    first_attempt_at: datetime
    endpoint: str


@dataclass(slots=True)
class _Batch:
    """What one batch decided, applied in the crash-safe order: publish, then write the table."""

    now: datetime
    backlogs: dict[str, DeliveryBacklog]
    events: dict[str, Any]  # lead_id -> its last event in the batch
    changed: set[str]
    reports: list[Outgoing]

    def report(self, notify: Notify, *, delivered: bool, attempts: int, status: int | None,
               error: str | None, dead_lettered: bool = False) -> None:
        self.reports.append(Outgoing(channel="lead.commands", key=notify.lead_id, value=RecordDelivery(
            lead_id=notify.lead_id, webhook_id=notify.webhook_id, event_type=notify.event_type,
            rep_id=notify.rep_id, delivered=delivered, attempts=attempts, status=status, error=error,
            at=self.now, dead_lettered=dead_lettered)))

    def dead_letter(self, notify: Notify, *, attempts: int, status: int | None, reason: str) -> None:
        runtime.metrics.webhook_attempts.labels(notify.event_type, "dead_lettered").inc()
        runtime.metrics.webhook_dead_letters.labels(notify.event_type).inc()
        log.warning("webhook dead-lettered webhook_id=%s event_type=%s lead_id=%s attempts=%s reason=%s",
                    notify.webhook_id, notify.event_type, notify.lead_id, attempts, reason)
        self.reports.append(Outgoing(channel="notifications.dead", key=notify.lead_id, value={  # type: ignore[arg-type]
            "webhook_id": notify.webhook_id, "event_type": notify.event_type, "lead_id": notify.lead_id,
            "rep_id": notify.rep_id, "endpoint": endpoint_of(notify.url), "attempts": attempts,
            "status": status, "reason": reason, "at": self.now, "created_at": notify.created_at,
            # Everything needed to send it again by hand, except the secret (looked up again then).
            "url": notify.url, "payload": notify.payload,
        }))
        self.report(notify, delivered=False, attempts=attempts, status=status, error=reason, dead_lettered=True)

    def put(self, lead_id: str, entry: PendingDelivery) -> None:
        backlog, overflow = self.backlogs[lead_id].put(entry)
        self.backlogs[lead_id] = backlog
        self.changed.add(lead_id)
        for old in overflow:
            self.dead_letter(old.notify, attempts=old.attempts, status=None,
                             reason="too many messages waiting for this lead")

    def drop(self, lead_id: str, webhook_id: str) -> None:
        backlog = self.backlogs[lead_id]
        if backlog.find(webhook_id) is not None:
            self.backlogs[lead_id] = backlog.without(webhook_id)
            self.changed.add(lead_id)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _message(batch: _Batch, event: Any) -> tuple[str, Notify | RetryDue] | None:
    """The event's lead and message, its lead's backlog loaded into the batch; ``None``: not ours."""
    lead_id, value = event.key, event.value
    if not isinstance(lead_id, str) or not isinstance(value, (Notify, RetryDue)):
        return None
    if lead_id not in batch.backlogs:
        with acting_for(event):
            stored = webhook_retries.get(lead_id)
        batch.backlogs[lead_id] = stored if isinstance(stored, DeliveryBacklog) else DeliveryBacklog(lead_id=lead_id)
    batch.events[lead_id] = event
    return lead_id, value


def _plan(batch: _Batch, events: list[Any]) -> list[_Job]:
    """Which messages of the batch to attempt now; the rest are stale, replays or deferred."""
    jobs: list[_Job] = []
    taken: set[str] = set()
    now, now_s = batch.now, batch.now.timestamp()
    for event in events:
        message = _message(batch, event)
        if message is None:
            continue
        lead_id, value = message
        backlog = batch.backlogs[lead_id]
        if isinstance(value, Notify):
            if value.webhook_id in taken or backlog.find(value.webhook_id) is not None:
                continue  # a replay of a message already in flight or waiting for its retry
            notify, attempts, first = value, 0, now
        else:
            entry = backlog.find(value.webhook_id)
            if entry is None or entry.attempts + 1 != value.attempt or value.webhook_id in taken:
                continue  # already acted on (a timer fired twice, or before a crash)
            if entry.next_at.timestamp() > now_s + _TICK_S:
                continue  # deferred since the timer fired: it comes back at its new time
            notify, attempts, first = entry.notify, entry.attempts, entry.first_attempt_at
        taken.add(notify.webhook_id)
        endpoint = endpoint_of(notify.url)
        if breaker.allow(endpoint, now_s):
            jobs.append(_Job(lead_id, notify, attempts, first, endpoint))
        elif now >= deadline(first, _SCHEDULE):
            batch.drop(lead_id, notify.webhook_id)
            batch.dead_letter(notify, attempts=attempts, status=None,
                              reason="endpoint circuit open until the retry schedule ran out")
        else:
            # Deferred, not dropped: no attempt is used; tried again when the circuit half-opens.
            runtime.metrics.webhook_attempts.labels(notify.event_type, "deferred").inc()
            batch.put(lead_id, PendingDelivery(notify=notify, attempts=attempts, first_attempt_at=first,
                                               next_at=_utc(breaker.retry_at(endpoint, now_s)),
                                               last_error="deferred: endpoint circuit open"))
    return jobs


def _settle(batch: _Batch, job: _Job, result: DeliveryResult) -> None:
    notify = job.notify
    if result.our_fault:
        # Our failure says nothing about the endpoint: neither a failure nor a success of its
        # circuit (a bug would open a healthy rep's circuit); a probe it was is freed for the next.
        breaker.release(job.endpoint)
    else:
        breaker.record(job.endpoint, not result.retryable, batch.now.timestamp())
    # A message that never got a request out (DNS failure) still uses its attempt.
    attempts = job.attempts_before + max(result.attempts, 1)
    verdict = judge(delivered=result.delivered, gave_up_reason=result.gave_up_reason, error=result.error,
                    attempts=attempts, now=batch.now, schedule=_SCHEDULE)
    runtime.metrics.webhook_attempts.labels(notify.event_type, "delivered" if result.delivered else "failed").inc()
    runtime.metrics.webhook_duration.observe(result.duration_s)
    runtime.metrics.webhook_requests.labels(notify.event_type).inc(result.attempts)
    if verdict.outcome == "delivered":
        batch.drop(job.lead_id, notify.webhook_id)
        batch.report(notify, delivered=True, attempts=attempts, status=result.status, error=None)
    elif verdict.outcome == "dead_letter":
        batch.drop(job.lead_id, notify.webhook_id)
        batch.dead_letter(notify, attempts=attempts, status=result.status, reason=verdict.reason or "failed")
    else:
        assert verdict.next_at is not None
        batch.put(job.lead_id, PendingDelivery(notify=notify, attempts=attempts, first_attempt_at=job.first_attempt_at,
                                               next_at=verdict.next_at, last_error=result.error))
        if job.attempts_before == 0:  # the lead's timeline shows the first failure, not every retry
            batch.report(notify, delivered=False, attempts=attempts, status=result.status, error=result.error)


async def handle_batch(events: list[Any], gate: asyncio.Semaphore) -> None:
    batch = _Batch(now=runtime.clock.now(), backlogs={}, events={}, changed=set(), reports=[])
    jobs = _plan(batch, events)
    results = await asyncio.gather(*(_attempt(job.notify, gate) for job in jobs))
    for job, result in zip(jobs, results):
        _settle(batch, job, result)
    await _commit(batch)


async def dead_letter_batch(events: list[Any], exc: Exception) -> None:
    """After ``handle_batch`` failed on ``events``: dead-letter each of their messages with the reason,
    so the lead hears of it as of any dead letter (a rep who is never told loses the lead), instead of
    the messages being acknowledged and lost (DESIGN §5: dead letters are explicit)."""
    batch = _Batch(now=runtime.clock.now(), backlogs={}, events={}, changed=set(), reports=[])
    reason = f"notifier error: {type(exc).__name__} (see the worker's log)"
    done: set[str] = set()
    for event in events:
        message = _message(batch, event)
        if message is None:
            continue
        lead_id, value = message
        entry = batch.backlogs[lead_id].find(value.webhook_id)
        if value.webhook_id in done or (isinstance(value, RetryDue) and entry is None):
            continue  # a replay, or a retry already acted on
        done.add(value.webhook_id)
        notify, attempts = (entry.notify, entry.attempts) if entry is not None else (value, 0)
        assert isinstance(notify, Notify)
        batch.drop(lead_id, notify.webhook_id)
        batch.dead_letter(notify, attempts=attempts, status=None, reason=reason)
    await _commit(batch)


async def _commit(batch: _Batch) -> None:
    # Outcomes and dead letters acknowledged first, then the backlog (see ``publish``): a crash
    # in between repeats the batch, and receivers dedup on the stable webhook-id.
    await publish(batch.reports)
    for lead_id in batch.changed:
        backlog = batch.backlogs[lead_id]
        with acting_for(batch.events[lead_id]):
            if backlog.pending:
                webhook_retries[lead_id] = backlog
            elif webhook_retries.get(lead_id) is not None:
                webhook_retries.pop(lead_id, None)
    for lead_id, backlog in batch.backlogs.items():
        track(lead_id, backlog)


@app.agent(notifications, concurrency=1)
async def deliver_notifications(stream: Any) -> None:
    gate = asyncio.Semaphore(_PARALLEL)
    async for events in take_ready(stream, _BATCH):
        batch = list(readable(events, "notifier"))
        try:
            await handle_batch(batch, gate)
        except Exception as exc:
            # A bug must not stop every lead's webhooks, nor lose this batch's: count it, log ids
            # only, dead-letter the batch's messages with the reason, move on.
            runtime.metrics.command_failures.labels("notifier").inc()
            log.exception("notifier could not handle a batch of %d message(s); dead-lettering them", len(events))
            try:
                await dead_letter_batch(batch, exc)
            except Exception:
                runtime.metrics.command_failures.labels("notifier").inc()
                log.exception("notifier could not dead-letter a batch of %d message(s): they are lost", len(events))


def track(lead_id: str, backlog: DeliveryBacklog | None) -> None:
    """Keep the retry index in step with the lead's backlog (what the notifier just wrote)."""
    pending = backlog.pending if backlog is not None else ()
    live = {(lead_id, p.notify.webhook_id) for p in pending}
    for key in [k for k in _fired if k[0] == lead_id and k not in live]:
        del _fired[key]
    waiting = [p.next_at.timestamp() for p in pending
               if _fired.get((lead_id, p.notify.webhook_id)) != (p.attempts + 1, p.next_at.timestamp())]
    if waiting:
        retry_index.schedule(lead_id, min(waiting))
    else:
        retry_index.cancel(lead_id)




def due_retries(now_s: float, limit: int = 500) -> list[Outgoing]:
    """``RetryDue`` commands for this worker's messages whose next attempt has come."""
    commands: list[Outgoing] = []
    for lead_id, _ in retry_index.pop_due(now_s, limit=limit):
        backlog = webhook_retries.get(lead_id)
        if not isinstance(backlog, DeliveryBacklog):
            continue
        later = []
        for entry in backlog.pending:
            mark = (entry.attempts + 1, entry.next_at.timestamp())
            key = (lead_id, entry.notify.webhook_id)
            if _fired.get(key) == mark:
                continue  # sent already; the notifier re-tracks the lead when it acts on it
            if mark[1] <= now_s:
                _fired[key] = mark
                commands.append(Outgoing(channel="notifications", key=lead_id, value=RetryDue(
                    lead_id=lead_id, webhook_id=entry.notify.webhook_id, attempt=mark[0], due_at=_utc(now_s))))
            else:
                later.append(mark[1])
        if later:
            retry_index.schedule(lead_id, min(later))
    return commands


@app.task
async def fire_webhook_retries() -> None:
    built_for = -1
    while not app.should_stop:
        await asyncio.sleep(_TICK_S)
        if not app.tables_settled():
            continue
        if built_for != app.rebalancing_count:
            retry_index.clear()
            _fired.clear()
            count = 0
            for lead_id, backlog in webhook_retries.items():
                if isinstance(backlog, DeliveryBacklog):
                    track(lead_id, backlog)
                    count += len(backlog.pending)
            built_for = app.rebalancing_count
            log.info("notifier: retry index rebuilt with %d pending webhook(s)", count)
        commands = due_retries(runtime.clock.now().timestamp())
        if commands:
            await publish(commands)

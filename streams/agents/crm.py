"""Hand opportunities to the CRM: upsert by leadflow's id, retry durably, dead-letter; deferred lead commands.

One message at a time (``concurrency=1``): a call to the CRM has a timeout, so a CRM that is
down delays a partition by at most that, never forever. A failed upsert is not retried inline:
it becomes a row in ``crm_pending`` with its due time, and the timer loop puts it back on
``crm.outbox`` when it is due, so other leads keep flowing and a crash loses nothing; a replay
while the retry waits keeps its attempt count and due time (``rules.crm_retry``). After the
last delay of ``crm.retry_delays`` (or at once, for a permanent refusal) the opportunity goes to
``crm.outbox.dead`` and the lead hears it failed; on success it hears the CRM's id. The same
table holds deferred lead commands (``DeferCommand``: a lost deal's return to routing).
A CRM out of API quota (``RateLimited``) is waited for until the time it names, without using up
``retry_delays``, for at most ``crm.rate_limit_max_wait`` after the first such refusal.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import datetime
from typing import Any

import orjson

from connectors.crm import CrmAdapter, RateLimited
from leadflow.errors import PermanentError, TransientError
from rules.commands import DeferCommand, Outgoing, RecordCrmSync, UpsertOpportunity
from rules.crm_retry import pending_key, plan_upsert, retry_after_failure, wait_for_quota
from rules.opportunity import PendingCrm
from sla.timers import TimerIndex
from streams.agents._batch import is_readable
from streams.app import app, runtime
from streams.crm_config import build_adapter
from streams.tables.crm_pending import crm_pending
from streams import stopping, topics
from streams.topics import crm_dead, crm_outbox, publish

__all__ = ["sync_opportunities", "fire_crm_timers", "crm_timers"]

log = logging.getLogger(__name__)

_TICK_S = 0.2
_GAUGE_EVERY = 5  # ticks: the retries-pending gauge once a second
#: Derived from ``crm_pending`` and rebuilt from it after a rebalance; never the source of truth.
crm_timers = TimerIndex()
_adapters: dict[str, CrmAdapter | None] = {}  # the one adapter of this process (a connection cache)


def _adapter() -> CrmAdapter | None:
    if "crm" not in _adapters:
        _adapters["crm"] = build_adapter(runtime.config.crm, runtime.resources.session, os.environ,
                                         allow_private=runtime.settings.webhook_allow_private)
    return _adapters["crm"]


def _keep(row: PendingCrm) -> None:
    if crm_pending.get(row.key) != row:
        crm_pending[row.key] = row
    crm_timers.schedule(row.key, row.due_at.timestamp(), row.message)


def _forget(key: str) -> None:
    if crm_pending.get(key) is not None:
        crm_pending.pop(key, None)
    crm_timers.cancel(key)


@app.agent(crm_outbox, concurrency=1)
async def sync_opportunities(stream: Any) -> None:
    async for event in stream.events():
        if not is_readable(event, "crm"):
            continue
        lead_id, message = event.key, event.value
        try:
            if isinstance(message, DeferCommand):
                await _defer(message, runtime.clock.now())
            elif isinstance(message, UpsertOpportunity):
                await _upsert(message, runtime.clock.now())
        except Exception:
            # A bug must not stall the partition; the message stays in the topic for inspection.
            runtime.metrics.command_failures.labels("crm").inc()
            log.exception("crm agent could not handle %s for lead %s", type(message).__name__, lead_id)


async def _defer(message: DeferCommand, now: datetime) -> None:
    if message.due_at > now:
        _keep(PendingCrm(key=message.defer_id, due_at=message.due_at, message=message))
        return
    await publish([Outgoing(channel="lead.commands", key=message.lead_id, value=message.command)])
    _forget(message.defer_id)


async def _upsert(arrived: UpsertOpportunity, now: datetime) -> None:
    key = pending_key(arrived)
    pending = crm_pending.get(key)
    message = plan_upsert(pending, arrived)
    if isinstance(message, PendingCrm):
        # A replay (crash redelivery, or a re-send already attempted) while a retry waits: the
        # pending attempt count and due time stand, or replays could retry forever.
        _keep(message)
        log.info("crm upsert replay held opportunity_id=%s until its pending retry", arrived.opportunity_id)
        return
    attempts = message.attempt + 1
    adapter = _adapter()
    settings = runtime.config.crm
    if adapter is None:
        # No CRM configured: the opportunity lives in leadflow and lead.events only.
        await _report(message, True, "none", None, attempts, None, now)
        _forget(key)
        return
    started = time.monotonic()
    try:
        # The lead id goes into the CRM (a property or field) so its events can name the lead.
        payload = {**message.payload, "lead_id": message.lead_id}
        record = await asyncio.wait_for(adapter.upsert(message.opportunity_id, payload), settings.timeout + 1)
    except RateLimited as exc:
        _count_call("transient", started)
        wait = wait_for_quota(message, now, exc.retry_after, settings.rate_limit_max_wait, pending)
        if wait is not None:
            _keep(wait)
            log.warning("crm upsert rate-limited opportunity_id=%s quota=%s attempt=%d (%s); not counted, next "
                        "at %s", message.opportunity_id, exc.quota, attempts, exc, wait.due_at.isoformat())
            return
        await _dead_letter(message, adapter.name, attempts, f"gave up after {attempts} attempts: the CRM's quota "
                           f"({exc.quota}) was still used up {settings.rate_limit_max_wait:g} s after it first "
                           f"refused: {exc}", now, kind="gave_up")
        _forget(key)
        return
    except (TransientError, TimeoutError) as exc:
        _count_call("transient", started)
        reason = str(exc) or "timed out"
        retry = retry_after_failure(message, now, settings.retry_delays, pending)
        if retry is not None:
            _keep(retry)
            log.warning("crm upsert failed opportunity_id=%s attempt=%d (%s); retry at %s",
                        message.opportunity_id, attempts, reason, retry.due_at.isoformat())
            return
        await _dead_letter(message, adapter.name, attempts, f"gave up after {attempts} attempts: {reason}", now,
                           kind="gave_up")
        _forget(key)
        return
    except PermanentError as exc:
        _count_call("permanent", started)
        await _dead_letter(message, adapter.name, attempts, f"refused: {exc}", now, kind="refused")
        _forget(key)
        return
    _count_call("ok", started)
    log.info("crm upsert ok opportunity_id=%s crm=%s created=%s attempt=%d", message.opportunity_id, adapter.name,
             record.created, attempts)
    await _report(message, True, adapter.name, record.crm_id, attempts, None, now)
    _forget(key)


def _count_call(outcome: str, started: float) -> None:
    runtime.metrics.crm_calls.labels("upsert_opportunity", outcome).inc()
    runtime.metrics.crm_duration.observe(time.monotonic() - started)


async def _report(message: UpsertOpportunity, synced: bool, crm: str, crm_id: str | None, attempts: int,
                  error: str | None, now: datetime) -> None:
    await publish([Outgoing(channel="lead.commands", key=message.lead_id, value=RecordCrmSync(
        lead_id=message.lead_id, opportunity_id=message.opportunity_id, synced=synced, crm=crm, crm_id=crm_id,
        attempts=attempts, error=error, at=now))])


async def _dead_letter(message: UpsertOpportunity, crm: str, attempts: int, reason: str, now: datetime, *,
                       kind: str) -> None:
    log.warning("crm upsert dead-lettered opportunity_id=%s crm=%s (%s)", message.opportunity_id, crm, reason)
    delay = _STORE_RETRY_S
    forms = dead_letters(message, crm, attempts, reason, now)
    while True:  # the dead letter must be stored before the lead hears: retry like publish does
        attempt = asyncio.ensure_future(_stored(message.lead_id, forms[0]))
        try:
            # publish's wait and stop rule: a stop never waits on a retry here.
            stored = await topics.unless_stopping(attempt)
        except asyncio.CancelledError:
            attempt.cancel()
            raise
        except Exception as exc:  # aiokafka's KafkaError family, Faust's ProducerSendError, the timeout
            if topics.too_large(exc) and len(forms) > 1:
                forms = forms[1:]
                log.warning("crm dead letter of opportunity_id=%s lead_id=%s is too large for Kafka (%s); sending "
                            "it without the opportunity's payload", message.opportunity_id, message.lead_id,
                            type(exc).__name__)
                continue
            log.warning("crm dead letter of opportunity_id=%s not stored (%s); retrying in %.1f s",
                        message.opportunity_id, type(exc).__name__, delay)
        else:
            if stored:
                break
            attempt.cancel()  # tests only: in a worker the process ends on the next line
            topics.give_up(1, f"Kafka has not acknowledged a CRM dead letter {stopping.STOPPING_GRACE_S:.0f} s "
                              "into the stop")
        await topics.sleep_unless_stopping(delay, 1)
        delay = min(delay * 2, _STORE_RETRY_MAX_S)
    runtime.metrics.crm_dead_letters.labels(kind).inc()
    await _report(message, False, crm, None, attempts, reason, now)


#: The first wait after a dead letter Kafka did not take; doubled up to ``_STORE_RETRY_MAX_S``, as ``publish``.
_STORE_RETRY_S = 0.5
_STORE_RETRY_MAX_S = 10.0
#: How long one attempt waits for Kafka's acknowledgement, as ``publish``'s (Faust's own bound is 20 min).
_ACK_TIMEOUT_S = 30.0
#: The reason kept in a dead letter without its payload (a CRM's error text has no bound of its own).
_REASON_CHARS = 2000


def dead_letters(message: UpsertOpportunity, crm: str, attempts: int, reason: str, now: datetime) -> list[bytes]:
    """The forms of an opportunity's dead letter, whole then small.

    The whole one carries the opportunity's payload (the lead, its timeline, its answers), which
    can outgrow Kafka's record limit (1,000,000 bytes by Faust's producer, or the topic's
    ``max.message.bytes``); refused for its size, the same record would be refused for ever and
    the CRM agent's partition would stall. The small form keeps the ids, the reason and the
    payload's size (``payload_omitted``); the payload itself is in ``crm.outbox`` at the lead's
    key, and the lead's history in ``lead.events``.
    """
    record = {"opportunity_id": message.opportunity_id, "lead_id": message.lead_id, "crm": crm,
              "attempts": attempts, "reason": reason, "at": now}
    payload = orjson.dumps(message.payload)
    whole = orjson.dumps({**record, "payload": orjson.Fragment(payload)})
    small = orjson.dumps({**record, "reason": reason[:_REASON_CHARS], "payload": None, "payload_omitted": len(payload)})
    return [whole, small]


async def _stored(lead_id: str, value: bytes) -> None:
    sent = await crm_dead.send(key=lead_id, value=value)
    await topics.acknowledged([sent], _ACK_TIMEOUT_S)


def _retries_pending() -> int:
    """Upserts waiting for their next attempt in this worker's partitions (deferred commands are not retries)."""
    return sum(1 for row in crm_pending.values()
               if isinstance(row, PendingCrm) and isinstance(row.message, UpsertOpportunity))




@app.task
async def fire_crm_timers() -> None:
    """Put due retries and deferred commands back on ``crm.outbox`` (the owner decides again)."""
    built_for = -1
    tick = 0
    while not app.should_stop:
        await asyncio.sleep(_TICK_S)
        if not app.tables_settled():
            continue
        tick += 1
        if tick % _GAUGE_EVERY == 1:
            runtime.metrics.crm_retries_pending.set(_retries_pending())
        if built_for != app.rebalancing_count:
            crm_timers.clear()
            count = crm_timers.load((key, row.due_at.timestamp(), row.message) for key, row in crm_pending.items()
                                    if isinstance(row, PendingCrm))
            built_for = app.rebalancing_count
            log.info("crm: timer index rebuilt with %d pending item(s)", count)
        due = crm_timers.pop_due(runtime.clock.now().timestamp(), limit=200)
        if due:
            await publish([Outgoing(channel="crm.outbox", key=message.lead_id,  # type: ignore[attr-defined]
                                    value=message) for _, message in due])

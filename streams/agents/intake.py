"""Turn raw inbound records (HTTP API or external producers) into ``CaptureLead`` commands.

Anything that cannot be a lead goes to ``leads.rejected`` with its original bytes (left out when
they would make the dead letter too large for Kafka) and a machine-readable reason in the record
headers; the stream never stalls on bad input, and waits for Kafka to store the dead letter.

Each valid lead is looked up by the HTTP providers of the ``enrichment:`` config (in parallel,
within one time budget, ``connectors/enrichment``) before its command is sent; the record counts
as processed only once the command is acknowledged, so a crash replays it and loses nothing.

Records come in ``take_ready`` batches: one enrichment call and one acknowledged publish per
batch. (Batching was once reverted for a stall in the ``kill -9`` test; the cause was Faust
committing offsets it never processed, fixed in ``streams/faust_fixes.py``.)
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from connectors.enrichment import Enricher
from connectors.lead_input import LeadInvalid, RecordRefused, open_meta, read_record, validate_lead
from rules.account_book import capture_outgoing
from rules.commands import CaptureLead
from streams import stopping, topics
from streams.agents._batch import take_ready
from streams.app import app, runtime
from streams.topics import leads_inbound, leads_rejected, publish

__all__ = ["capture_leads", "dead_letters", "reject", "settle_background"]

log = logging.getLogger(__name__)

#: What Kafka may answer a dead letter with: aiokafka's errors, Faust's wrapper of the producer's, and
#: ``topics.acknowledged``'s timeout. Anything else is a bug, which no retry would change.
_REFUSED = (KafkaError, ProducerSendError, TimeoutError)
#: The first wait after a dead letter Kafka did not take; doubled up to ``_RETRY_MAX_S``, as ``publish``.
_RETRY_S = 0.5
_RETRY_MAX_S = 10.0
#: How long one attempt waits for Kafka's acknowledgement, as ``publish``'s (Faust's own bound is 20 min).
_ACK_TIMEOUT_S = 30.0


def dead_letters(raw: bytes | None, reason: str, detail: Any, origin: str) -> list[tuple[bytes, dict[str, bytes]]]:
    """The forms of a record's dead letter, as ``(value, headers)``, from whole to smallest.

    The first carries the original bytes. A record near Kafka's size limit makes it too large (the
    headers come on top): the next leaves the bytes out and says how many there were, then the
    detail goes too. The reason and ``leadflow-origin`` (topic:partition:offset, where the record
    itself stays until the topic's retention) are in every form.
    """
    value = raw or b""
    headers = {"leadflow-reason": reason.encode(), "leadflow-detail": orjson.dumps(detail),
               "leadflow-origin": origin.encode()}
    if not value:
        return [(value, headers)]
    omitted = {**headers, "leadflow-value-omitted": str(len(value)).encode()}
    return [(value, headers), (b"", omitted), (b"", {**omitted, "leadflow-detail": orjson.dumps(
        {"message": "the record and its detail were too large for leads.rejected; read it at leadflow-origin"})})]


async def reject(raw: bytes | None, reason: str, detail: Any, origin: str) -> None:
    """Dead-letter a record: original bytes as the value, the reason in headers.

    Returns once Kafka has acknowledged the dead letter, and never raises for Kafka: a refused dead
    letter that raised lost its record and every lead of its batch not yet published (session 17:
    5 of 6 leads; ``take_ready`` now gives a raising batch again, but a refusal that lasts would
    make it skip the record as a bug after three tries). A dead letter too large for the
    topic or the producer is sent again smaller (``dead_letters``). Any other refusal, or no answer,
    is retried like ``publish``: the feed waits for Kafka, and once the worker is stopping the
    process ends without acking the batch (``streams/stopping.py``), which is read again after the
    restart. A dead letter not acknowledged in time may still be stored besides the retry's copy.
    Only Kafka's answers are retried (``_REFUSED``): any other exception is a bug, and it raises, so
    ``take_ready`` gives the batch again and skips the record after ``ALONE_TRIES`` raises alone.
    """
    forms = dead_letters(raw, reason, detail, origin)
    delay = _RETRY_S
    while True:
        value, headers = forms[0]
        attempt = asyncio.ensure_future(_stored(value, headers))
        try:
            # publish's wait and back-off: one stop rule for every write a batch waits for.
            stored = await topics.unless_stopping(attempt)
        except asyncio.CancelledError:
            attempt.cancel()
            raise
        except _REFUSED as exc:  # a bug raises (take_ready's rule: skipped after 3 raises alone), never retried
            if topics.too_large(exc) and len(forms) > 1:
                forms = forms[1:]
                log.warning("intake: the dead letter of the record at %s is too large for Kafka (%s); "
                            "sending it without %s", origin, type(exc).__name__,
                            "the record's bytes" if len(forms) == 2 else "its detail either")
                continue
            log.warning("intake: the dead letter of the record at %s was not stored (%s); retrying in %.1f s",
                        origin, type(exc).__name__, delay)
        else:
            if stored:
                break
            attempt.cancel()  # tests only: in a worker the process ends on the next line
            topics.give_up(1, f"Kafka has not acknowledged a dead letter {stopping.STOPPING_GRACE_S:.0f} s "
                              "into the stop")
        await topics.sleep_unless_stopping(delay, 1)
        delay = min(delay * 2, _RETRY_MAX_S)
    runtime.metrics.leads_rejected.labels("kafka", reason).inc()


async def _stored(value: bytes, headers: dict[str, bytes]) -> None:
    sent = await leads_rejected.send(key=None, value=value, headers=headers)
    await topics.acknowledged([sent], _ACK_TIMEOUT_S)


#: How far a record's own ``_meta.received_at`` may be from now before it is ignored (clock skew,
#: a backlog replayed after an outage). Outside it, or without a time zone, the capture time is now:
#: a naive or year-9999 time made the lead agent fail on the lead and lose it (poison test).
_RECEIVED_PAST = timedelta(days=30)
_RECEIVED_FUTURE = timedelta(minutes=5)


def _received_at(meta: dict[str, Any], now: datetime) -> datetime:
    try:
        at = datetime.fromisoformat(meta["received_at"])
    except (KeyError, TypeError, ValueError):
        return now
    if at.tzinfo is None or at.utcoffset() is None or not now - _RECEIVED_PAST <= at <= now + _RECEIVED_FUTURE:
        return now
    return at


_background: set[asyncio.Task[Any]] = set()
#: How long a stopping worker waits for the hints still being written before it cancels them.
#: A hint is one Redis pipeline bounded by the store's timeout; the stop should not wait longer.
_SETTLE_S = 1.0


def _in_background(work: Coroutine[Any, Any, Any]) -> None:
    """Run best-effort work (a cache hint) off the stream's path, holding the task until it ends."""
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def settle_background(timeout_s: float | None = None) -> None:
    """Wait up to ``timeout_s`` for the background hints, then cancel what is left and wait for that.

    A stopping worker closes Redis after its agents (``LeadflowApp.on_shutdown``): a hint still
    running then failed on a closed connection, or was destroyed pending when the loop closed
    (s16 review). A hint cancelled here is only a hint lost: the lead table has the truth.
    """
    tasks = set(_background)
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=_SETTLE_S if timeout_s is None else timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        log.info("intake: %d \"seen\" hint(s) still writing to Redis at the stop were cancelled", len(pending))


def _settle_on_stop(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> Awaitable[None]:
    # Sent by Faust's stop once the agents' last batches are done, before Redis is closed.
    return settle_background()


app.on_before_shutdown.connect(_settle_on_stop)  # type: ignore[arg-type]  # mypy matches no arm of mode's handler union


def _enricher() -> Enricher | None:
    """The worker's enricher from the config (``None``: no HTTP providers); keys from the environment."""
    resources, metrics = runtime.resources, runtime.metrics
    return runtime.config.enrichment.build(
        os.environ, session=lambda: resources.session, redis=resources.redis, prefix=f"{runtime.settings.app_id}:",
        on_lookup=lambda provider, outcome: metrics.enrichment_lookups.labels(provider, outcome).inc(),
        on_cache_degraded=lambda operation: metrics.redis_degraded.labels(operation).inc(),
    )


@dataclass(frozen=True, slots=True)
class _Refused:
    """A record to dead-letter: the reason code and its detail (never the lead's data)."""

    reason: str
    detail: dict[str, Any]


async def _capture(event: Any, ignored_meta: list[str],
                   failed: list[tuple[str, str]]) -> tuple[CaptureLead, bool] | None:
    """The command for one record (and whether it came from outside leadflow), or ``None``: rejected.

    A record with a ``_meta`` leadflow did not seal has its position added to ``ignored_meta``
    (its ``default_source`` and ``channel`` still count: ``open_meta``). A record this code fails
    on for a reason it did not foresee (a bug) is dead-lettered as ``internal_error`` and its
    ``(position, exception type)`` added to ``failed``: the batch's other records go on (they
    were acked with the batch: a crash here would lose every one of them).
    """
    message = event.message
    origin = f"{message.topic}:{message.partition}:{message.offset}"
    raw = event.value
    try:
        outcome = _command(raw, origin, ignored_meta)
    except Exception as exc:  # noqa: BLE001 - last resort: one record never costs its batch
        failed.append((origin, type(exc).__name__))
        # The exception's type only: its message may quote the lead.
        outcome = _Refused("internal_error", {"message": f"leadflow failed on this record ({type(exc).__name__}); "
                                                         "the worker's log names it by position"})
    if isinstance(outcome, _Refused):
        await reject(raw, outcome.reason, outcome.detail, origin)
        return None
    return outcome


def _command(raw: bytes | None, origin: str, ignored_meta: list[str]) -> tuple[CaptureLead, bool] | _Refused:
    try:
        data = read_record(raw)
    except RecordRefused as exc:
        return _Refused(exc.reason, {"message": exc.message[:200]})
    meta, ignored = open_meta(data)
    if ignored:
        ignored_meta.append(origin)
    try:
        valid = validate_lead(data, default_source=str(meta.get("default_source") or "kafka"),
                              channel=str(meta.get("channel") or "kafka"))
    except LeadInvalid as exc:
        return _Refused("invalid_lead", {"fields": [{"field": f.field, "reason": f.reason} for f in exc.fields]})
    now = runtime.clock.now()
    captured_at = _received_at(meta, now)
    # External records get a capture id from their position, so a replay is recognized.
    capture_id = str(meta.get("capture_id") or f"kafka:{origin}")
    # Not sealed: a producer's record (or, during a rolling upgrade, one the previous version wrote).
    return CaptureLead(lead_id=valid.lead_id, capture_id=capture_id, captured_at=captured_at,
                       lead=valid.lead), ignored or not meta


# Checked when the worker imports its agents, so a missing API key stops the start, naming the
# variable, instead of crashing this agent later (the enricher itself is built in the agent).
runtime.config.enrichment.check_env(os.environ)


@app.agent(leads_inbound, concurrency=1)
async def capture_leads(records: Any) -> None:
    enricher = _enricher()
    if enricher is not None:
        log.info("intake: enrichment by %s within %.0f ms per lead",
                 ", ".join(enricher.providers), enricher.budget_s * 1000)
    async for events in take_ready(records):
        ignored_meta: list[str] = []
        failed: list[tuple[str, str]] = []
        captures = [capture for capture in [await _capture(event, ignored_meta, failed) for event in events]
                    if capture is not None]
        if failed:
            # One line per batch, by position and exception type only (no lead data, no traceback).
            log.error("intake: dead-lettered %d record(s) as internal_error (first at %s: %s); the others went on",
                      len(failed), *failed[0])
        if ignored_meta:
            # A producer's own ``_meta`` (docs/capture.md): those records are leads like any other.
            # One line per batch, by position only (no lead data).
            log.warning("intake: ignored _meta on %d record(s) leadflow did not write (first at %s): "
                        "the key is reserved for leadflow's own HTTP channels", len(ignored_meta), ignored_meta[0])
        if not captures:
            continue
        enriched = None
        if enricher is not None:
            enriched = await enricher.enrich([command.lead for command, _ in captures])
            captures = [(replace(command, findings=findings), external)
                        for (command, external), findings in zip(captures, enriched.findings)]
        # Acknowledged before the batch counts as processed: its offsets may be committed next.
        # A lead with a company domain first visits the owner of that domain's account (account agent).
        await publish(tuple(capture_outgoing(command) for command, _ in captures))
        external = [command.lead_id for command, outside in captures if outside]
        if external:
            runtime.metrics.leads_captured.labels("kafka-feed", "kafka").inc(len(external))  # sources there are free text
            # The API's "seen this person" hint (docs/capture.md): a person first met on the feed is
            # `duplicate` when the HTTP API meets them next. After the send, in the background: a hint
            # never delays the stream, and a slow or absent Redis only costs the hint.
            _in_background(runtime.resources.store.mark_seen(external))
        if enricher is not None and enriched is not None:
            await enricher.remember(enriched)  # after the send: the cache never delays routing

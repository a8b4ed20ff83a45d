"""Turn raw inbound records (HTTP API or external producers) into ``CaptureLead`` commands.

Anything that cannot be a lead goes to ``leads.rejected`` with its original bytes and a
machine-readable reason in the record headers; the stream never stalls on bad input.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import orjson

from connectors.lead_input import LeadInvalid, validate_lead
from rules.commands import CaptureLead, Outgoing
from streams.agents._batch import BATCH, WITHIN_S
from streams.app import app, runtime
from streams.topics import leads_inbound, leads_rejected, publish

__all__ = ["capture_leads", "reject"]

log = logging.getLogger(__name__)


async def reject(raw: bytes | None, reason: str, detail: Any, origin: str) -> Any:
    """Dead-letter a record: original bytes as the value, the reason in headers; returns the send's future."""
    headers = {
        "leadflow-reason": reason.encode(),
        "leadflow-detail": orjson.dumps(detail),
        "leadflow-origin": origin.encode(),
    }
    runtime.metrics.leads_rejected.labels("kafka", reason).inc()
    return await leads_rejected.send(key=None, value=raw or b"", headers=headers)


def _meta(data: dict[str, Any]) -> dict[str, Any]:
    meta = data.pop("_meta", None)
    return meta if isinstance(meta, dict) else {}


def _capture(raw: Any, origin: str) -> CaptureLead | tuple[str, Any]:
    """A ``CaptureLead`` for a good record, or ``(reason, detail)`` for a bad one."""
    try:
        data = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        return "malformed_json", {"message": str(exc)[:200]}
    if not isinstance(data, dict):
        return "not_an_object", {"message": "a lead must be a JSON object"}
    meta = _meta(data)
    try:
        valid = validate_lead(data, default_source=str(meta.get("default_source") or "kafka"),
                              channel=str(meta.get("channel") or "kafka"))
    except LeadInvalid as exc:
        return "invalid_lead", {"fields": [{"field": f.field, "reason": f.reason} for f in exc.fields]}
    try:
        captured_at = datetime.fromisoformat(meta["received_at"])
    except (KeyError, TypeError, ValueError):
        captured_at = runtime.clock.now()
    if not meta:
        runtime.metrics.leads_captured.labels("kafka-feed", "kafka").inc()  # sources there are free text
    # External records get a capture id from their position, so a replay is recognized.
    return CaptureLead(lead_id=valid.lead_id, capture_id=str(meta.get("capture_id") or f"kafka:{origin}"),
                       captured_at=captured_at, lead=valid.lead)


@app.agent(leads_inbound, concurrency=1)
async def capture_leads(records: Any) -> None:
    async for events in records.take_events(BATCH, within=WITHIN_S):
        captures: list[Outgoing] = []
        rejected = []
        for event in events:
            message = event.message
            origin = f"{message.topic}:{message.partition}:{message.offset}"
            outcome = _capture(event.value, origin)
            if isinstance(outcome, CaptureLead):
                captures.append(Outgoing(channel="lead.commands", key=outcome.lead_id, value=outcome))
            else:
                rejected.append(await reject(event.value, outcome[0], outcome[1], origin))
        # Acknowledged before the batch counts as processed: its offsets may be committed next.
        await publish(captures)
        await asyncio.gather(*rejected)

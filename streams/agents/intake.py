"""Turn raw inbound records (HTTP API or external producers) into ``CaptureLead`` commands.

Anything that cannot be a lead goes to ``leads.rejected`` with its original bytes and a
machine-readable reason in the record headers; the stream never stalls on bad input.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson

from connectors.lead_input import LeadInvalid, validate_lead
from rules.account_book import capture_outgoing
from rules.commands import CaptureLead
from streams.app import app, runtime
from streams.topics import leads_inbound, leads_rejected, publish

__all__ = ["capture_leads", "reject"]

log = logging.getLogger(__name__)


async def reject(raw: bytes | None, reason: str, detail: Any, origin: str) -> None:
    """Dead-letter a record: original bytes as the value, the reason in headers."""
    headers = {
        "leadflow-reason": reason.encode(),
        "leadflow-detail": orjson.dumps(detail),
        "leadflow-origin": origin.encode(),
    }
    sent = await leads_rejected.send(key=None, value=raw or b"", headers=headers)
    await sent  # acknowledged before the record counts as processed
    runtime.metrics.leads_rejected.labels("kafka", reason).inc()


def _meta(data: dict[str, Any]) -> dict[str, Any]:
    meta = data.pop("_meta", None)
    return meta if isinstance(meta, dict) else {}


@app.agent(leads_inbound, concurrency=1)
async def capture_leads(records: Any) -> None:
    async for event in records.events():
        message = event.message
        origin = f"{message.topic}:{message.partition}:{message.offset}"
        raw = event.value
        try:
            data = orjson.loads(raw)
        except (orjson.JSONDecodeError, TypeError) as exc:
            await reject(raw, "malformed_json", {"message": str(exc)[:200]}, origin)
            continue
        if not isinstance(data, dict):
            await reject(raw, "not_an_object", {"message": "a lead must be a JSON object"}, origin)
            continue
        meta = _meta(data)
        try:
            valid = validate_lead(data, default_source=str(meta.get("default_source") or "kafka"),
                                  channel=str(meta.get("channel") or "kafka"))
        except LeadInvalid as exc:
            fields = [{"field": f.field, "reason": f.reason} for f in exc.fields]
            await reject(raw, "invalid_lead", {"fields": fields}, origin)
            continue
        now = runtime.clock.now()
        try:
            captured_at = datetime.fromisoformat(meta["received_at"])
        except (KeyError, TypeError, ValueError):
            captured_at = now
        # External records get a capture id from their position, so a replay is recognized.
        capture_id = str(meta.get("capture_id") or f"kafka:{origin}")
        # Acknowledged before the record counts as processed: its offset may be committed next.
        # A lead with a company domain first visits the owner of that domain's account (account agent).
        await publish((capture_outgoing(CaptureLead(
            lead_id=valid.lead_id, capture_id=capture_id, captured_at=captured_at, lead=valid.lead)),))
        if not meta:
            runtime.metrics.leads_captured.labels("kafka-feed", "kafka").inc()  # sources there are free text

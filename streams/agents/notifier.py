"""Deliver webhooks in small batches with bounded parallelism; report each outcome to the lead."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from connectors.webhooks import DeliveryResult, OutboundWebhook
from rules.commands import Notify, Outgoing, RecordDelivery
from streams.app import app, runtime
from streams.topics import notifications, publish

__all__ = ["deliver_notifications"]

log = logging.getLogger(__name__)

_BATCH = 64
_PARALLEL = 32


async def _deliver(notify: Notify, gate: asyncio.Semaphore) -> DeliveryResult:
    message = OutboundWebhook(webhook_id=notify.webhook_id, event_type=notify.event_type, url=notify.url,
                              secret=notify.secret, body=orjson.dumps(notify.payload))
    async with gate:
        return await runtime.resources.sender.deliver(message)


@app.agent(notifications, concurrency=1)
async def deliver_notifications(stream: Any) -> None:
    gate = asyncio.Semaphore(_PARALLEL)
    # The batch is finished (every delivery done and reported) before the next is taken, so a
    # crash mid-batch redelivers rather than loses; receivers dedup by the stable webhook-id.
    async for batch in stream.take(_BATCH, within=0.05):
        pending = [n for n in batch if isinstance(n, Notify)]
        results = await asyncio.gather(*(_deliver(n, gate) for n in pending))
        now = runtime.clock.now()
        reports: list[Outgoing] = []
        for notify, result in zip(pending, results):
            outcome = "delivered" if result.delivered else "failed"
            runtime.metrics.webhook_attempts.labels(notify.event_type, outcome).inc()
            runtime.metrics.webhook_duration.observe(result.duration_s)
            reports.append(Outgoing(channel="lead.commands", key=notify.lead_id, value=RecordDelivery(
                lead_id=notify.lead_id, webhook_id=notify.webhook_id, event_type=notify.event_type,
                rep_id=notify.rep_id, delivered=result.delivered, attempts=result.attempts,
                status=result.status, error=result.error or result.gave_up_reason, at=now)))
        await publish(reports)

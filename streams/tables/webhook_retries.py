"""``webhook_retries``: each lead's webhooks waiting for a retry (``DeliveryBacklog``) by ``lead_id``.

Co-partitioned with ``notifications`` (keyed by ``lead_id`` too) and written only by the
notifier agent, so the retry schedule survives a crash: after a rebalance the retry timer
rebuilds its in-memory index from this small table (only messages that failed live here).
"""
from __future__ import annotations

from streams.tables._table import entity_table

__all__ = ["webhook_retries"]

webhook_retries = entity_table("webhook_retries",
                               help="DeliveryBacklog by lead_id (written only by the notifier agent).")

"""``crm_pending``: the CRM agent's durable timers (retries, deferred commands), co-partitioned with ``crm.outbox``.

Keys are ``lead_id|opportunity_id`` (a retry) and ``lead_id:cycle:recycle`` (a deferred
command); written only by the CRM agent while it handles that lead's message, so every row lives
in the lead's partition.
"""
from __future__ import annotations

from streams.tables._table import entity_table

__all__ = ["crm_pending"]

crm_pending = entity_table("crm_pending", help="PendingCrm by lead_id|kind (written only by the CRM agent).")

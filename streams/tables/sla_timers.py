"""``sla_timers``: each lead's next SLA deadline by ``lead_id``, co-partitioned with ``lead.commands``.

Written only by the lead agent (a row per lead with a pending deadline, deleted when none is
left), so the in-memory timer index can be rebuilt from a small table after a rebalance
instead of scanning every lead.
"""
from __future__ import annotations

from streams.tables._table import entity_table

__all__ = ["sla_timers"]

sla_timers = entity_table("sla_timers", help="SlaTimer by lead_id (written only by the lead agent).")

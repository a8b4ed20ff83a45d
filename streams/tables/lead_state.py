"""``lead_state``: each lead's ``LeadState`` by ``lead_id``, co-partitioned with ``lead.commands``."""
from __future__ import annotations

from streams.tables._table import entity_table

__all__ = ["lead_state"]

lead_state = entity_table("lead_state", help="LeadState by lead_id (written only by the lead agent).")

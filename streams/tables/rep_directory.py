"""``rep_directory``: which team owns each rep, by ``rep_id``, co-partitioned with ``rep.commands``."""
from __future__ import annotations

from streams.tables._table import entity_table

__all__ = ["rep_directory"]

rep_directory = entity_table("rep_directory", help="RepEntry by rep_id (written only by the rep agent).")

"""``sla_overdue``: the team of each open lead past its first-contact deadline and still uncontacted.

Written only by the lead agent (a row while the lead is overdue, deleted at contact or close),
co-partitioned with ``lead.commands``: the worker owning a lead partition counts its rows for
the ``leadflow_sla_overdue_leads`` gauge, so the gauge moves with the partition on a rebalance.
Small by construction: only overdue leads, one short string each.
"""
from __future__ import annotations

from typing import Any

import faust

from rules.lead_state import OPEN
from streams.app import app

__all__ = ["sla_overdue", "overdue_team", "keep_overdue"]


class _TeamIdTable(faust.Table):  # type: ignore[type-arg]
    """Raw UTF-8 keys like every entity table (so the key lands in the lead's partition); the
    value is a bare team id string, which the leadflow codec (wire dataclasses only) does not carry."""

    def _serializer_from_type(self, typ: Any) -> str:
        return "raw" if typ is str else "json"


sla_overdue: Any = app.tables.add(_TeamIdTable(
    app, name="sla_overdue", key_type=str, value_type=None, beacon=app.tables.beacon,
    help="team_id by lead_id of overdue, uncontacted leads (written only by the lead agent)."))


def overdue_team(state: Any) -> str | None:
    """The lead's team while it is open, breached and uncontacted; otherwise ``None``."""
    if state is None or state.routing not in OPEN or state.contacted_at is not None:
        return None
    if state.sla is None or state.sla.breached_at is None:
        return None
    return str(state.team_id)


def keep_overdue(lead_id: str, state: Any) -> None:
    """Keep ``lead_id``'s row in step with ``state`` (the lead agent calls it after each write)."""
    team = overdue_team(state)
    if team != sla_overdue.get(lead_id):
        if team is None:
            sla_overdue.pop(lead_id, None)
        else:
            sla_overdue[lead_id] = team

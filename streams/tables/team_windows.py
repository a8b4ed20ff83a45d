"""Windowed SLA counters per team: tumbling minutes and a one-hour window hopping every 5 minutes.

Keys are ``"{team_id}|{signal}"`` (signals: arrival, contact_in_sla, contact_late, breach,
escalation). They are written by the team-signal agent from ``team.signals`` (keyed by team), so
each team's windows live on the partition, and the worker, that owns the team.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from streams.app import app, runtime

__all__ = ["SIGNALS", "team_minute", "team_hour", "window_counts"]

SIGNALS = ("arrival", "contact_in_sla", "contact_late", "breach", "escalation")

_partitions = runtime.settings.partitions
team_minute = app.Table("team_sla_minute", default=int, key_type=str, value_type=int, partitions=_partitions,
                        help="SLA signals per team per minute").tumbling(60, expires=timedelta(hours=2))
team_hour = app.Table("team_sla_hour", default=int, key_type=str, value_type=int, partitions=_partitions,
                      help="SLA signals per team over the last hour, every 5 minutes").hopping(
    3600, 300, expires=timedelta(hours=25))


def window_counts(table: Any, team_id: str) -> dict[str, Any]:
    """The counts of the window containing now, and the SLA compliance they give."""
    counts = {signal: int(table[f"{team_id}|{signal}"].now()) for signal in SIGNALS}
    judged = counts["contact_in_sla"] + counts["contact_late"] + counts["breach"]
    # Breached leads contacted late count once (as the breach), not twice.
    met = counts["contact_in_sla"]
    counts["compliance"] = round(met / judged, 4) if judged else None
    return counts

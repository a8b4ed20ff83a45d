"""A team's reps as the team agent tracks them: profile, presence and the leads they hold."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from rules.commands import Presence, RepProfile

__all__ = ["OpenLead", "RepState", "local_day", "local_week"]


def local_day(profile: RepProfile, at: datetime) -> str:
    """The rep's calendar day at ``at`` in their own time zone, e.g. ``2026-01-05``."""
    return at.astimezone(ZoneInfo(profile.timezone)).date().isoformat()


def local_week(profile: RepProfile, at: datetime) -> str:
    """The rep's ISO week at ``at`` in their own time zone, e.g. ``2026-W02``."""
    year, week, _ = at.astimezone(ZoneInfo(profile.timezone)).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenLead:
    """A lead a rep holds; ``route_id`` tells this assignment from a later one of the same lead."""

    lead_id: str
    route_id: str
    assigned_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RepState:
    """One rep inside a team's state. Bounded: ``open_leads`` never exceeds ``profile.capacity``."""

    profile: RepProfile
    presence: Presence = "offline"
    open_leads: tuple[OpenLead, ...] = ()
    assigned_total: int = 0
    last_assigned_at: datetime | None = None
    # Smooth weighted round robin's running credit (nginx's algorithm): only eligible reps
    # earn it, so a rep returning from "away" gets no catch-up burst.
    credit: int = 0
    # Assignments in the rep's current local day / ISO week (caps). The counters belong to the
    # period named beside them: a later period starts from zero, so resets need no timer.
    day: str = ""
    day_count: int = 0
    week: str = ""
    week_count: int = 0
    #: The rep moved to another team while holding leads of this one: kept here, never eligible,
    #: until those leads are released, so their release still finds the rep.
    departed: bool = False

    @property
    def rep_id(self) -> str:
        return self.profile.rep_id

    @property
    def load(self) -> int:
        return len(self.open_leads)

    def assigned_on(self, now: datetime) -> tuple[int, int]:
        """Leads assigned so far in the local day and ISO week that contain ``now``."""
        day = self.day_count if self.day == local_day(self.profile, now) else 0
        week = self.week_count if self.week == local_week(self.profile, now) else 0
        return day, week

    def holds(self, lead_id: str, route_id: str) -> bool:
        return any(o.lead_id == lead_id and o.route_id == route_id for o in self.open_leads)

    def with_lead(self, lead: OpenLead) -> RepState:
        day, week = self.assigned_on(lead.assigned_at)
        return replace(
            self,
            open_leads=self.open_leads + (lead,),
            assigned_total=self.assigned_total + 1,
            last_assigned_at=lead.assigned_at,
            day=local_day(self.profile, lead.assigned_at),
            day_count=day + 1,
            week=local_week(self.profile, lead.assigned_at),
            week_count=week + 1,
        )

    def without_lead(self, lead_id: str, route_id: str) -> RepState:
        kept = tuple(o for o in self.open_leads if not (o.lead_id == lead_id and o.route_id == route_id))
        return replace(self, open_leads=kept)

"""A team's reps as the team agent tracks them: profile, presence and the leads they hold."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from rules.commands import Presence, RepProfile

__all__ = ["OpenLead", "RepState"]


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

    @property
    def rep_id(self) -> str:
        return self.profile.rep_id

    @property
    def load(self) -> int:
        return len(self.open_leads)

    def holds(self, lead_id: str, route_id: str) -> bool:
        return any(o.lead_id == lead_id and o.route_id == route_id for o in self.open_leads)

    def with_lead(self, lead: OpenLead) -> RepState:
        return replace(
            self,
            open_leads=self.open_leads + (lead,),
            assigned_total=self.assigned_total + 1,
            last_assigned_at=lead.assigned_at,
        )

    def without_lead(self, lead_id: str, route_id: str) -> RepState:
        kept = tuple(o for o in self.open_leads if not (o.lead_id == lead_id and o.route_id == route_id))
        return replace(self, open_leads=kept)

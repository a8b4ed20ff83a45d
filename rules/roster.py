"""A team's reps as the team agent tracks them: profile, presence, and how many leads they hold.

Which leads a rep holds is not here: each assignment is a ``Holding`` kept outside the team's
state (``rules.team``: one small table value per assigned route), so a team's state stays
bounded by its roster however many leads its reps hold.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from rules.commands import Presence, RepProfile

__all__ = ["Holding", "RepState", "local_day", "local_week", "MAX_NAME_LENGTH", "MAX_TAGS", "MAX_TAG_LENGTH",
           "MAX_TERRITORIES", "MAX_PLACES", "MAX_WEBHOOK_URL_LENGTH", "MAX_EMAIL_LENGTH"]

# The most a rep's profile may hold, field by field: the API refuses more (422 naming the field),
# and the YAML should say the same. A team keeps every profile of its roster in one table value,
# bounded as a whole too (``rules.team.MAX_REPS``, ``rules.team.STATE_BYTES_BUDGET``); these keep one
# rep from taking a large share of it (at most about 16 KB encoded, where a usual rep takes ~0.8 KB).
#: A rep's display name, in characters.
MAX_NAME_LENGTH = 200
#: Skills, and languages: how many each, and how long one may be.
MAX_TAGS = 50
MAX_TAG_LENGTH = 64
#: Territories as given (regions, ISO countries, ISO states) ...
MAX_TERRITORIES = 200
#: ... and the places they stand for once each region is replaced by its countries.
MAX_PLACES = 500
#: A webhook URL (about what browsers and proxies take).
MAX_WEBHOOK_URL_LENGTH = 2000
#: An e-mail address (RFC 5321's path limit).
MAX_EMAIL_LENGTH = 254


def local_day(profile: RepProfile, at: datetime) -> str:
    """The rep's calendar day at ``at`` in their own time zone, e.g. ``2026-01-05``."""
    return at.astimezone(ZoneInfo(profile.timezone)).date().isoformat()


def local_week(profile: RepProfile, at: datetime) -> str:
    """The rep's ISO week at ``at`` in their own time zone, e.g. ``2026-W02``."""
    year, week, _ = at.astimezone(ZoneInfo(profile.timezone)).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """Who holds the lead of one route, and since when (the value stored under the route's id).

    The route id tells this assignment from a later one of the same lead; it is the key, so it is
    not repeated here.
    """

    rep_id: str
    lead_id: str
    assigned_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RepState:
    """One rep inside a team's state: a fixed number of fields, however many leads they hold."""

    profile: RepProfile
    presence: Presence = "offline"
    #: How many leads the rep holds open (one ``Holding`` each, outside the state). Taking a lead
    #: needs ``load < profile.capacity``; lowering the capacity never evicts, so it may exceed it.
    load: int = 0
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
    #: The rep directory's move number when the rep left (``RemoveRep.move``), echoed in reports.
    left_move: int = 0
    #: Leads the rep still holds in teams they left (the directory's count): they take capacity
    #: here too, so a rep who moves while holding leads is never over capacity.
    held_elsewhere: int = 0
    #: A team the rep left has not yet said how many leads they hold there: not eligible here.
    awaiting_handover: bool = False

    @property
    def rep_id(self) -> str:
        return self.profile.rep_id

    @property
    def open_leads(self) -> int:
        """Everything counted against the rep's capacity: this team's leads and other teams'."""
        return self.load + self.held_elsewhere

    def assigned_on(self, now: datetime) -> tuple[int, int]:
        """Leads assigned so far in the local day and ISO week that contain ``now``.

        The team decides at each command's own time, and with several producers that time can
        go back a little: a command stamped Sunday 23:59:59 may be read after one stamped Monday
        00:01. Only the latest period's count is kept, so an earlier day's or week's count is no
        longer known: it is taken as the cap (0 without one), so a late command never gives the
        rep a lead past that period's cap.
        """
        return (_so_far(self.day, self.day_count, local_day(self.profile, now), self.profile.daily_cap),
                _so_far(self.week, self.week_count, local_week(self.profile, now), self.profile.weekly_cap))

    def with_lead(self, assigned_at: datetime) -> RepState:
        """The rep after taking one more lead at ``assigned_at`` (open count and caps go up).

        Like ``with_late_lead``: a lead of an earlier day or week (a command read late) leaves the
        later period's count, and a later ``last_assigned_at``, as they are.
        """
        return self.with_late_lead(assigned_at)

    def with_late_lead(self, assigned_at: datetime) -> RepState:
        """The rep after the team learns late of a lead they took at ``assigned_at``.

        A crash lost the decision, and the lead kept this rep. The lead counts as open and in
        the caps of its own day and week. A later day's or week's count is left as it is, and so
        is a later ``last_assigned_at``.
        """
        day, week = local_day(self.profile, assigned_at), local_week(self.profile, assigned_at)
        latest = max(self.last_assigned_at, assigned_at) if self.last_assigned_at is not None else assigned_at
        return replace(
            self,
            load=self.load + 1,
            assigned_total=self.assigned_total + 1,
            last_assigned_at=latest,
            day=max(self.day, day),
            day_count=_counted(self.day, self.day_count, day),
            week=max(self.week, week),
            week_count=_counted(self.week, self.week_count, week),
        )

    def with_timezone_of(self, previous: RepProfile, now: datetime) -> RepState:
        """The rep after their time zone changed from ``previous.timezone`` to their profile's.

        The counts name periods of the old zone, which the new zone's days do not compare with
        (a rep moved west would be in an "earlier" day, taken as full, for hours). The counts of
        the day and week current at ``now`` carry over to the new zone's day and week; older
        ones are dropped.
        """
        day = self.day_count if self.day >= local_day(previous, now) else 0
        week = self.week_count if self.week >= local_week(previous, now) else 0
        return replace(self, day=local_day(self.profile, now), day_count=day,
                       week=local_week(self.profile, now), week_count=week)

    def without_lead(self, *, returned_from: datetime | None = None) -> RepState:
        """The rep after one of their leads is released.

        Caps count assignments, so a released lead stays counted, unless the rep never took it
        (``returned_from``: when it was assigned, for an offer they declined, let lapse or never
        received). That assignment leaves the count of its own local day and ISO week; a count
        of a later period is left as it is.
        """
        rep = replace(self, load=max(0, self.load - 1))
        if returned_from is None:
            return rep
        if rep.day == local_day(rep.profile, returned_from):
            rep = replace(rep, day_count=max(0, rep.day_count - 1))
        if rep.week == local_week(rep.profile, returned_from):
            rep = replace(rep, week_count=max(0, rep.week_count - 1))
        return rep


def _so_far(period: str, count: int, asked: str, cap: int | None) -> int:
    """The count of period ``asked`` when ``count`` is period ``period``'s (ISO strings sort by time)."""
    if asked == period:
        return count
    if asked > period:
        return 0
    return cap if cap is not None else 0  # an earlier period, no longer counted: taken as full


def _counted(period: str, count: int, late: str) -> int:
    """A period's count after one more assignment in period ``late`` (ISO strings sort by time)."""
    if late == period:
        return count + 1
    return 1 if late > period else count

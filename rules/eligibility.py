"""Who may take a lead now: each filter returns the human reason it removes a rep, or nothing.

Two kinds of filters, so the queue drain can stop early: ``rep_reasons`` depend only on the rep
and ``now`` (presence, working hours and holidays, capacity, daily / weekly caps) and
``lead_reasons`` on what one lead asks for (skills, language, territory, exclusions). Time is
always an argument; caps count in the rep's own time zone and reset when ``now`` reaches a new
local day or ISO week.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, time
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from rules.commands import RepProfile, RouteLead
from rules.roster import RepState, local_day, local_week
from rules.territory import uncovered
from sla.calendar import BusinessCalendar, Interval

__all__ = ["EXCLUDED", "WEEKDAYS", "parse_working_hours", "check_holidays_country", "calendar_of", "rep_reasons", "lead_reasons", "eligibility"]

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_ALL_DAY: Final[tuple[Interval, ...]] = ((time(0), time(0)),)  # 00:00-24:00


def _clock(hh: str, mm: str, what: str) -> time:
    hour, minute = int(hh), int(mm)
    if (hour, minute) == (24, 0):
        return time(0)  # BusinessCalendar reads a 00:00 close as midnight
    if hour > 23 or minute > 59:
        raise ValueError(f"{what}: {hh}:{mm} is not a time of day")
    return time(hour, minute)


def parse_working_hours(hours: Mapping[str, Sequence[str]]) -> dict[int, tuple[Interval, ...]]:
    """``{"mon-fri": ["09:00-13:00", "14:00-18:00"], "sat": ["10:00-14:00"]}`` -> weekday intervals.

    Keys are a weekday or an inclusive range (``fri-mon`` wraps); ``24:00`` closes at midnight.
    Raises ``ValueError`` naming the key and the problem. A span cannot cross midnight: split it.
    """
    week: dict[int, list[Interval]] = {}
    named: dict[int, list[tuple[time, time, str]]] = {}  # weekday -> spans so far, with where they came from
    for key, spans in hours.items():
        parts = key.strip().lower().split("-")
        if len(parts) not in (1, 2) or any(p not in WEEKDAYS for p in parts):
            raise ValueError(f"working_hours key {key!r}: use a weekday (mon..sun) or a range such as mon-fri")
        first, last = WEEKDAYS.index(parts[0]), WEEKDAYS.index(parts[-1])
        days = [(first + i) % 7 for i in range((last - first) % 7 + 1)]
        if isinstance(spans, str):
            raise ValueError(f"working_hours {key!r}: give a list of spans such as [\"09:00-17:00\"]")
        for span in spans:
            match = _SPAN.match(span.strip())
            if match is None:
                raise ValueError(f"working_hours {key!r}: {span!r} is not HH:MM-HH:MM")
            what = f"working_hours {key!r} {span!r}"
            opens, closes = _clock(match[1], match[2], what), _clock(match[3], match[4], what)
            if closes != time(0) and closes <= opens:
                raise ValueError(f"{what}: closes before it opens (split a night shift at 24:00)")
            for day in days:
                _no_overlap(day, opens, closes, f"{key!r} {span!r}", named.setdefault(day, []))
                week.setdefault(day, []).append((opens, closes))
    if hours and not week:
        raise ValueError("working_hours: no spans given")
    return {day: tuple(spans) for day, spans in week.items()}


def _no_overlap(day: int, opens: time, closes: time, label: str, seen: list[tuple[time, time, str]]) -> None:
    """Refuse a span that overlaps one given before for the same weekday (``BusinessCalendar``
    would refuse the rep's hours at every routing decision: the whole team would stop)."""
    end = time.max if closes == time(0) else closes
    for other_opens, other_end, other in seen:
        if opens < other_end and other_opens < end:
            raise ValueError(f"working_hours {label} overlaps {other} on {WEEKDAYS[day]}: give each weekday's "
                             "spans once, e.g. mon-thu [\"09:00-17:00\"] and fri [\"09:00-18:00\"]")
    seen.append((opens, end, label))


def check_holidays_country(country: str) -> None:
    """Raise ``ValueError`` unless the ``holidays`` package knows ``country``."""
    BusinessCalendar(timezone="UTC", hours={0: _ALL_DAY}, holidays_country=country)


@lru_cache(maxsize=1024)
def _calendar(timezone: str, hours: tuple[tuple[str, tuple[str, ...]], ...], country: str | None) -> BusinessCalendar:
    week = parse_working_hours(dict(hours)) if hours else {day: _ALL_DAY for day in range(7)}
    return BusinessCalendar(timezone=timezone, hours=week, holidays_country=country)


def calendar_of(profile: RepProfile) -> BusinessCalendar | None:
    """The rep's working calendar, or ``None`` when they have no hours and no holidays (always on).

    Cached by value (a pure memo): building a calendar validates the holiday country once.
    """
    if not profile.working_hours and profile.holidays_country is None:
        return None
    hours = tuple(sorted((k, tuple(v)) for k, v in profile.working_hours.items()))
    return _calendar(profile.timezone, hours, profile.holidays_country)


def rep_reasons(rep: RepState, now: datetime) -> tuple[str, ...]:
    """Why ``rep`` cannot take *any* lead at ``now`` (empty when they could take some)."""
    reasons: list[str] = []
    profile = rep.profile
    if rep.departed:
        return ("moved to another team",)
    if rep.presence != "available":
        reasons.append(f"presence is {rep.presence}")
    try:
        calendar = calendar_of(profile)
    except ValueError as exc:  # stored before its hours were checked: never stop the team for it
        return (*reasons, f"working hours cannot be read ({exc}); fix them with PUT /v1/reps/{rep.rep_id}")
    if calendar is not None and not calendar.is_open(now):
        local = now.astimezone(ZoneInfo(profile.timezone))
        if calendar.is_holiday(local.date()):
            reasons.append(f"on holiday ({local.date().isoformat()}, {profile.holidays_country})")
        else:
            reasons.append(f"outside working hours ({local:%a %H:%M} in {profile.timezone})")
    if rep.awaiting_handover:
        reasons.append("joined from another team: waiting for that team's count of the leads they hold there")
    if rep.open_leads >= profile.capacity:
        elsewhere = f", {rep.held_elsewhere} of them in other teams" if rep.held_elsewhere else ""
        reasons.append(f"at capacity ({rep.open_leads}/{profile.capacity} open{elsewhere})")
    day, week = rep.assigned_on(now)
    # A request of an earlier day or week read after a later one: that period's count is gone and
    # taken as the cap (RepState.assigned_on); say so rather than quote a count nobody kept.
    late = ("{0} cap taken as reached (the request is of an earlier {1} than the rep's latest lead: "
            "that {1}'s count is no longer kept)")
    if profile.daily_cap is not None and day >= profile.daily_cap:
        reasons.append(late.format("daily", "day") if rep.day > local_day(profile, now)
                       else f"daily cap reached ({day}/{profile.daily_cap} today)")
    if profile.weekly_cap is not None and week >= profile.weekly_cap:
        reasons.append(late.format("weekly", "week") if rep.week > local_week(profile, now)
                       else f"weekly cap reached ({week}/{profile.weekly_cap} this week)")
    return tuple(reasons)


def _norm(value: str) -> str:
    return value.strip().casefold()


def _primary(language: str) -> str:
    return _norm(language).replace("_", "-").split("-")[0]


#: A rep the lead excludes (it was taken from them, they declined it or let its offer lapse): the
#: team knows no more; the lead's own timeline entry says which (``rules.lead_state.why_excluded``).
EXCLUDED: Final = "excluded for this lead"


def lead_reasons(rep: RepState, lead: RouteLead | None, excluded: Sequence[str] = ()) -> tuple[str, ...]:
    """Why ``rep`` cannot take this particular lead (empty when the lead asks nothing they lack)."""
    reasons: list[str] = []
    profile = rep.profile
    if lead is not None:
        have = {_norm(s) for s in profile.skills}
        missing = [s for s in lead.required_skills if _norm(s) not in have]
        if missing:
            reasons.append(f"missing skills: {', '.join(missing)}")
        # A rep who lists no languages is not restricted by language (like empty territories).
        if lead.language and profile.languages and _primary(lead.language) not in {
                _primary(x) for x in profile.languages}:
            reasons.append(f"does not speak {lead.language}")
        where = uncovered(profile.territories, lead.country, lead.region)
        if where is not None:
            reasons.append(f"territory {where} not covered")
    if rep.rep_id in excluded or (lead is not None and rep.rep_id in lead.excluded_reps):
        reasons.append(EXCLUDED)
    return tuple(reasons)


def eligibility(rep: RepState, *, now: datetime, lead: RouteLead | None = None,
                excluded: Sequence[str] = ()) -> tuple[str, ...]:
    """Every reason ``rep`` cannot take ``lead`` at ``now``: the rep's own filters, then the lead's."""
    return rep_reasons(rep, now) + lead_reasons(rep, lead, excluded)

"""The ``sla:`` section of the YAML configuration, validated once at start (pydantic v2).

Only the loader uses these models; ``to_policies()`` and ``to_calendars()`` turn them into the
plain frozen objects the pure SLA functions work on. A manager writes::

    sla:
      policies:
        - name: hot-inbound            # the first policy that matches a lead wins
          tiers: [hot]                 # empty or absent: any tier / source / team
          sources: [web, chat]
          first_contact: 5m            # seconds (300) or '90s', '5m', '1h30m', '2d', '250ms'
          business_hours: false
          steps:                       # 'after' counts from the first-contact deadline
            - {kind: remind, after: 0}
            - {kind: reassign, after: 2m}
            - {kind: alert_manager, after: 5m}
            - {kind: release_to_pool, after: 10m}
      calendars:
        madrid:
          timezone: Europe/Madrid
          teams: [emea-sdr]            # no teams: the default calendar for every other team
          hours: {mon-fri: ["09:00-14:00", "15:00-18:00"]}
          holidays: {country: ES, subdiv: MD}
          closed: [2026-12-24]
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, time
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_data
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from leadflow.errors import ErrorAt
from sla.calendar import BusinessCalendar, Interval, TeamCalendars
from sla.policy import DEFAULT_POLICY, EscalationStep, SlaPolicy, StepKind

__all__ = ["StepConfig", "PolicyConfig", "HolidaysConfig", "CalendarConfig", "SlaConfig", "parse_duration", "zone_name"]

#: A number and its unit; ``ms`` before ``m`` so that "250ms" is not read as "250m" and a stray "s".
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)")
_UNIT_SECONDS: Final = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION_HELP: Final = "use seconds (300) or a string like '90s', '5m', '1h30m', '7d' or '250ms'"
_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL: Final = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*-\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``300``, ``"300"``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"1.5h"``, ``"7d"`` or ``"250ms"``.

    The one parser of durations in the YAML config (every section's ``Duration`` fields use it).
    """
    if isinstance(value, bool):
        raise ValueError(f"a duration is a number of seconds or a string: {_DURATION_HELP}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            return float(text)
        except ValueError:
            pass
        parts = _DURATION.findall(text)
        if parts and _DURATION.sub("", text).strip() == "" and len({u for _, u in parts}) == len(parts):
            return sum(float(n) / 1000 if u == "ms" else float(n) * _UNIT_SECONDS[u] for n, u in parts)
    raise ValueError(f"{value!r} is not a duration: {_DURATION_HELP}")


def zone_name(value: str) -> str:
    """``value`` when it names an IANA time zone; else ``ValueError`` saying so. The one check of a
    zone in the config: calendars' here, reps' (connectors/rep_fields.py) through it."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: keys naming a tzdata directory ("America") or too long for the filesystem.
        raise ValueError(f"unknown time zone {value[:64]!r} (use an IANA name such as Europe/Madrid)") from None
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, allow_inf_nan=False)]
_Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepConfig(_Strict):
    """One escalation step: ``kind`` fires ``after`` the first-contact deadline."""

    kind: StepKind
    after: Duration = 0.0


_DEFAULT_STEPS: Final = tuple(StepConfig(kind=s.kind, after=s.after_s) for s in DEFAULT_POLICY.steps)


class PolicyConfig(_Strict):
    name: _Id
    first_contact: Annotated[Duration, Field(gt=0)]
    business_hours: bool = False
    tiers: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    teams: tuple[_Id, ...] = ()
    steps: tuple[StepConfig, ...] = _DEFAULT_STEPS

    @field_validator("steps")
    @classmethod
    def _in_order(cls, steps: tuple[StepConfig, ...]) -> tuple[StepConfig, ...]:
        for i, (before, after) in enumerate(zip(steps, steps[1:]), start=1):
            if after.after < before.after:
                raise ErrorAt((i,), f"steps must be listed in the order they fire: step {i + 1} ({after.kind}, "
                                    f"after {after.after:g} s) comes before step {i} ({before.kind}, after "
                                    f"{before.after:g} s)")
        return steps

    def to_policy(self) -> SlaPolicy:
        return SlaPolicy(
            name=self.name, first_contact_s=self.first_contact,
            steps=tuple(EscalationStep(s.kind, s.after) for s in self.steps),
            business_hours=self.business_hours, tiers=self.tiers, teams=self.teams,
            # Leads carry their source trimmed and lower-cased (rules.capture.canonical_source).
            sources=tuple(s.strip().lower() for s in self.sources),
        )


class HolidaysConfig(_Strict):
    """Public holidays from the ``holidays`` package: ISO country code, optional subdivision."""

    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    subdiv: str | None = None

    @model_validator(mode="after")
    def _known(self) -> HolidaysConfig:
        try:
            holiday_data.country_holidays(self.country, subdiv=self.subdiv, years=())
        except NotImplementedError as exc:
            raise ValueError(f"unknown to the holidays package: {exc}") from None
        return self


def _time(hours: str, minutes: str, seconds: str | None, *, end: bool) -> time:
    h, m, s = int(hours), int(minutes), int(seconds or 0)
    if end and (h, m, s) == (24, 0, 0):
        return time(0)  # 24:00, the end of the day
    if h > 23 or m > 59 or s > 59:
        raise ValueError(f"{hours}:{minutes} is not a time of day")
    return time(h, m, s)


def _days(spec: str) -> list[int]:
    names = [part.strip().lower()[:3] for part in spec.split("-")]
    if not 1 <= len(names) <= 2 or any(n not in _DAYS for n in names):
        raise ValueError(f"{spec!r} is not a weekday or a range of them; use mon, tue, …, sun or e.g. mon-fri")
    first, last = _DAYS.index(names[0]), _DAYS.index(names[-1])
    # fri-mon wraps over the weekend, as a rep's working_hours does (rules/eligibility.py).
    return [(first + i) % 7 for i in range((last - first) % 7 + 1)]


def _weekly_hours(spec: dict[str, tuple[str, ...]]) -> dict[int, tuple[Interval, ...]]:
    """Weekday -> spans; a problem is raised at the day key of ``spec`` it is in (``ErrorAt``)."""
    week: dict[int, list[Interval]] = {}
    named: dict[int, list[tuple[Interval, str]]] = {}
    for days, intervals in spec.items():
        for text in intervals:
            match = _INTERVAL.match(text)
            if match is None:
                raise ErrorAt((days,), f"{days}: {text!r} is not a span of hours like '09:00-14:00'")
            g = match.groups()
            span = (_time(g[0], g[1], g[2], end=False), _time(g[3], g[4], g[5], end=True))
            try:
                weekdays = _days(days)
            except ValueError as exc:
                raise ErrorAt((days,), str(exc)) from None
            for day in weekdays:
                for other, where in named.get(day, []):
                    if _overlap(span, other):
                        raise ErrorAt((days,), f"{days} {text!r} overlaps {where} on {_DAYS[day]}: give each "
                                               "weekday's spans once")
                named.setdefault(day, []).append((span, f"{days} {text!r}"))
                week.setdefault(day, []).append(span)
    return {day: tuple(spans) for day, spans in week.items()}


def _overlap(a: Interval, b: Interval) -> bool:
    """Two spans of one day share time (a 00:00 close is midnight at the day's end)."""
    def end(t: time) -> time:
        return time.max if t == time(0) else t
    return a[0] < end(b[1]) and b[0] < end(a[1])


class CalendarConfig(_Strict):
    """A team's business calendar: its zone, weekly hours, public holidays and closed dates."""

    timezone: str
    hours: dict[str, tuple[str, ...]]
    holidays: HolidaysConfig | None = None
    closed: tuple[date, ...] = ()
    teams: tuple[_Id, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return zone_name(value)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        BusinessCalendar("UTC", _weekly_hours(value))  # spans, overlaps, an empty week: it says what is wrong
        return value

    def to_calendar(self) -> BusinessCalendar:
        return BusinessCalendar(
            timezone=self.timezone, hours=_weekly_hours(self.hours),
            holidays_country=self.holidays.country if self.holidays else None,
            holidays_subdiv=self.holidays.subdiv if self.holidays else None,
            closed_dates=frozenset(self.closed),
        )


class SlaConfig(_Strict):
    """``sla:``: the policies (first match wins, else the built-in default) and team calendars."""

    policies: tuple[PolicyConfig, ...] = ()
    calendars: dict[_Id, CalendarConfig] = {}

    @model_validator(mode="after")
    def _consistent(self) -> SlaConfig:
        names = [p.name for p in self.policies]
        if len(names) != len(set(names)):
            raise ValueError(f"policy names must be unique (repeated: {sorted({n for n in names if names.count(n) > 1})})")
        owner: dict[str, str] = {}
        defaults = [name for name, cal in self.calendars.items() if not cal.teams]
        if len(defaults) > 1:
            raise ValueError(f"only one calendar may leave out 'teams' (the default); these do: {', '.join(defaults)}")
        for name, cal in self.calendars.items():
            for team in cal.teams:
                if team in owner:
                    raise ValueError(f"team {team!r} is in two calendars: {owner[team]} and {name}")
                owner[team] = name
        for policy in self.policies:
            if not policy.business_hours or defaults:
                continue
            if not policy.teams:
                raise ValueError(f"policy {policy.name!r} counts business hours for every team, but there is no "
                                 "default calendar (a calendar without 'teams')")
            missing = [t for t in policy.teams if t not in owner]
            if missing:
                raise ValueError(f"policy {policy.name!r} counts business hours, but team(s) {', '.join(missing)} "
                                 "have no calendar (list them under a calendar's teams, or add a default calendar)")
        return self

    def to_policies(self) -> tuple[SlaPolicy, ...]:
        """The configured policies, in the order ``select_policy`` tries them."""
        return tuple(p.to_policy() for p in self.policies)

    def to_calendars(self) -> TeamCalendars:
        """Each listed team's calendar, plus the default one for the others (if any)."""
        built = {name: cal.to_calendar() for name, cal in self.calendars.items()}
        by_team = {team: built[name] for name, cal in self.calendars.items() for team in cal.teams}
        default = next((built[name] for name, cal in self.calendars.items() if not cal.teams), None)
        return TeamCalendars(by_team=by_team, default=default)

    def team_calendars(self, team_ids: Iterable[str]) -> dict[str, BusinessCalendar]:
        """``{team_id: calendar}`` for the given teams (the default one filling in); 24/7 teams left out."""
        calendars = self.to_calendars()
        found = {team: calendars.for_team(team) for team in {*team_ids, *calendars.by_team}}
        return {team: cal for team, cal in found.items() if cal is not None}

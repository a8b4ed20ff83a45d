"""Business calendars: a team's time zone, weekly working hours and holidays; SLA time that pauses.

``BusinessCalendar.add_business_seconds(start, s)`` answers "when will ``s`` seconds of working
time have passed since ``start``?" — the clock stops outside the working hours, at weekends and
on public holidays (from the maintained ``holidays`` package, per country and subdivision) and
on extra closed dates. A start outside hours begins counting at the next opening.

Working hours are wall-clock times in the team's zone; their length in real seconds comes from
``zoneinfo``, so a span that straddles a DST change is one hour shorter (spring) or longer
(autumn) than it looks. A deadline that uses up the last second of a day's hours falls due at
closing time, not at the next opening. All datetimes must be timezone-aware.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_data

__all__ = ["Interval", "BusinessCalendar", "TeamCalendars", "require_aware"]

Interval: TypeAlias = tuple[time, time]
"""Working hours ``(opens, closes)`` on one weekday; ``closes == time(0)`` means midnight (24:00)."""

_DAY: Final = timedelta(days=1)
_MAX_SEARCH_DAYS: Final = 3 * 366  # three years without one open minute is a configuration error
_Span: TypeAlias = tuple[timedelta, timedelta]  # offsets from local midnight, wall clock


def require_aware(value: datetime, what: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a timezone-aware datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime (got naive {value.isoformat()})")


def _offset(t: time, what: str) -> timedelta:
    if t.tzinfo is not None:
        raise ValueError(f"{what}: working hours are wall-clock times in the calendar's zone, without tzinfo")
    return timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)


def _normalize(hours: Mapping[int, tuple[Interval, ...]]) -> tuple[tuple[_Span, ...], ...]:
    week: list[list[_Span]] = [[] for _ in range(7)]
    for day, intervals in hours.items():
        if not isinstance(day, int) or not 0 <= day <= 6:
            raise ValueError(f"working hours: weekday must be 0 (Monday) to 6 (Sunday), got {day!r}")
        for opens, closes in intervals:
            what = f"working hours on weekday {day} ({opens.isoformat()}-{closes.isoformat()})"
            start, end = _offset(opens, what), _offset(closes, what)
            if closes == time(0):
                end = _DAY
            if end <= start:
                raise ValueError(f"{what}: closing time must be after opening time")
            week[day].append((start, end))
    spans: list[tuple[_Span, ...]] = []
    for day, day_spans in enumerate(week):
        merged: list[_Span] = []
        for start, end in sorted(day_spans):
            if merged and start < merged[-1][1]:
                raise ValueError(f"working hours on weekday {day} overlap")
            if merged and start == merged[-1][1]:  # 09-12 and 12-14 are one span, 09-14
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        spans.append(tuple(merged))
    if not any(spans):
        raise ValueError("a business calendar needs working hours on at least one weekday")
    return tuple(spans)


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """A team's working time: IANA ``timezone``, ``hours`` per weekday (0 = Monday), holidays.

    ``holidays_country`` / ``holidays_subdiv`` name a country (ISO 3166-1 alpha-2, e.g. ``ES``)
    and optionally a subdivision (e.g. ``MD`` for Madrid) known to the ``holidays`` package;
    observed days (a Saturday holiday moved to Friday, as in the US) count as holidays.
    ``closed_dates`` adds the company's own closures. Holiday lookups are cached per year.
    """

    timezone: str
    hours: Mapping[int, tuple[Interval, ...]] = field(hash=False)
    holidays_country: str | None = None
    holidays_subdiv: str | None = None
    closed_dates: frozenset[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _spans: tuple[tuple[_Span, ...], ...] = field(init=False, repr=False, compare=False, hash=False)
    _holidays: dict[int, frozenset[date]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r} (use an IANA name such as Europe/Madrid)") from None
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "hours", {day: tuple(ivs) for day, ivs in self.hours.items()})
        object.__setattr__(self, "_spans", _normalize(self.hours))
        object.__setattr__(self, "closed_dates", frozenset(self.closed_dates))
        object.__setattr__(self, "_holidays", {})
        if self.holidays_subdiv is not None and self.holidays_country is None:
            raise ValueError("holidays_subdiv needs holidays_country")
        if self.holidays_country is not None:
            try:  # years=() loads nothing: this only checks the country and subdivision exist
                holiday_data.country_holidays(self.holidays_country, subdiv=self.holidays_subdiv, years=())
            except NotImplementedError as exc:
                raise ValueError(f"holidays: {exc}") from None

    # --- queries ------------------------------------------------------------------------

    def is_holiday(self, day: date) -> bool:
        """Whether ``day`` (a date in the calendar's zone) is a public holiday or a closed date."""
        return day in self.closed_dates or day in self._holidays_of(day.year)

    def is_open(self, at: datetime) -> bool:
        """Whether the team is working at ``at``."""
        require_aware(at, "at")
        instant = at.astimezone(UTC)
        day = instant.astimezone(self._zone).date()
        return any(opens <= instant < closes for opens, closes in self._day(day))

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant at which ``seconds`` of working time have passed since ``start``.

        Returned in ``start``'s time zone. ``seconds=0`` from outside the hours gives the next
        opening.
        """
        require_aware(start, "start")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite number, 0 or more (got {seconds!r})")
        remaining = timedelta(seconds=seconds)
        cursor = start.astimezone(UTC)
        day = cursor.astimezone(self._zone).date()
        for _ in range(_MAX_SEARCH_DAYS):
            for opens, closes in self._day(day):
                if closes <= cursor:
                    continue
                begin = max(opens, cursor)
                available = closes - begin
                if remaining <= available:
                    return (begin + remaining).astimezone(start.tzinfo)
                remaining -= available
            day += _DAY
        raise ValueError(f"the calendar has no working time in the {_MAX_SEARCH_DAYS} days after {start.isoformat()}")

    def business_seconds_between(self, a: datetime, b: datetime) -> float:
        """Working seconds in ``[a, b)``; negative when ``b`` is before ``a``."""
        require_aware(a, "a")
        require_aware(b, "b")
        if b < a:
            return -self.business_seconds_between(b, a)
        lo, hi = a.astimezone(UTC), b.astimezone(UTC)
        day, last = lo.astimezone(self._zone).date(), hi.astimezone(self._zone).date()
        total = timedelta(0)
        while day <= last:
            for opens, closes in self._day(day):
                overlap = min(closes, hi) - max(opens, lo)
                if overlap > timedelta(0):
                    total += overlap
            day += _DAY
        return total.total_seconds()

    # --- internals ----------------------------------------------------------------------

    def _holidays_of(self, year: int) -> frozenset[date]:
        cached = self._holidays.get(year)
        if cached is None:
            if self.holidays_country is None:
                cached = frozenset()
            else:
                found = holiday_data.country_holidays(self.holidays_country, subdiv=self.holidays_subdiv, years=year)
                cached = frozenset(found.keys())
            self._holidays[year] = cached
        return cached

    def _day(self, day: date) -> list[tuple[datetime, datetime]]:
        """``day``'s working spans as UTC instants (real time, DST applied)."""
        if self.is_holiday(day):
            return []
        midnight = datetime.combine(day, time())
        spans = []
        for start, end in self._spans[day.weekday()]:
            opens, closes = self._instant(midnight + start), self._instant(midnight + end)
            if closes > opens:
                spans.append((opens, closes))
        return spans

    def _instant(self, wall: datetime) -> datetime:
        """The instant of a wall-clock time in the calendar's zone.

        A wall time repeated in autumn is its first occurrence (fold=0). One skipped in spring
        (02:30 on a day the clocks jump from 02:00 to 03:00) is the instant of the jump: hours that
        open or close inside the gap open or close when the clocks jump, as the rep's wall clock
        reads them. PEP 495's fold=0 alone would put it an hour *after* the jump (03:30).
        """
        first = wall.replace(tzinfo=self._zone).astimezone(UTC)
        second = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        if second >= first:
            return first  # an ordinary or a repeated wall time
        # In a gap: the offset changes somewhere in (second, first]; find that instant to the second.
        after = first.astimezone(self._zone).utcoffset()
        lo, hi = 0, int((first - second).total_seconds())
        while lo < hi:
            mid = (lo + hi) // 2
            if (second + timedelta(seconds=mid)).astimezone(self._zone).utcoffset() == after:
                hi = mid
            else:
                lo = mid + 1
        return second + timedelta(seconds=lo)


@dataclass(frozen=True, slots=True)
class TeamCalendars:
    """Which calendar each team works by; ``default`` for teams not listed (``None``: 24/7)."""

    by_team: Mapping[str, BusinessCalendar] = field(default_factory=dict, hash=False)
    default: BusinessCalendar | None = None

    def for_team(self, team_id: str) -> BusinessCalendar | None:
        return self.by_team.get(team_id, self.default)

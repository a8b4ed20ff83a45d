"""Business calendars: hours, weekends, real public holidays, DST, starts outside hours, inverses."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sla.calendar as calendar_module
from sla.calendar import BusinessCalendar, TeamCalendars

MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")
SPLIT_DAY = ((time(9), time(14)), (time(15), time(18)))  # 8 working hours, lunch 14-15
WEEKDAYS = {day: SPLIT_DAY for day in range(5)}


def madrid(*args: int) -> datetime:
    return datetime(*args, tzinfo=MADRID)  # type: ignore[misc]


@pytest.fixture(scope="module")
def es() -> BusinessCalendar:
    """A Madrid sales team: Mon-Fri 09-14 and 15-18, Spanish and Community of Madrid holidays."""
    return BusinessCalendar("Europe/Madrid", WEEKDAYS, "ES", "MD")


@pytest.fixture(scope="module")
def us() -> BusinessCalendar:
    return BusinessCalendar("America/New_York", {d: ((time(9), time(17)),) for d in range(5)}, "US")


ALWAYS = BusinessCalendar("Europe/Madrid", {d: ((time(0), time(0)),) for d in range(7)})  # 24/7, 00:00-24:00


# --- adding business time within and across days -------------------------------------------

@pytest.mark.parametrize(("start", "seconds", "expected"), [
    (madrid(2026, 1, 5, 10, 0), 300, madrid(2026, 1, 5, 10, 5)),            # plain, inside hours
    (madrid(2026, 1, 5, 13, 58), 300, madrid(2026, 1, 5, 15, 3)),           # paused over lunch
    (madrid(2026, 1, 5, 17, 58), 120, madrid(2026, 1, 5, 18, 0)),           # uses the last second: at closing
    (madrid(2026, 1, 5, 17, 58), 121, madrid(2026, 1, 7, 9, 0, 1)),         # Tue 6 Jan is Epiphany
    (madrid(2026, 1, 2, 17, 58), 300, madrid(2026, 1, 5, 9, 3)),            # Friday -> Monday (weekend)
    (madrid(2026, 1, 2, 17, 0), 9 * 3600, madrid(2026, 1, 5, 18, 0)),        # Fri 1 h + Mon 8 h: Monday close
    (madrid(2026, 1, 2, 17, 0), 9 * 3600 + 60, madrid(2026, 1, 7, 9, 1)),    # weekend AND holiday
    (madrid(2026, 1, 5, 9, 0), 0, madrid(2026, 1, 5, 9, 0)),
])
def test_add_business_seconds(es: BusinessCalendar, start: datetime, seconds: float, expected: datetime) -> None:
    assert es.add_business_seconds(start, seconds) == expected
    assert es.business_seconds_between(start, expected) == seconds


@pytest.mark.parametrize(("start", "expected"), [
    (madrid(2026, 1, 5, 7, 30), madrid(2026, 1, 5, 9, 5)),     # before opening
    (madrid(2026, 1, 5, 14, 30), madrid(2026, 1, 5, 15, 5)),   # at lunch
    (madrid(2026, 1, 5, 18, 0), madrid(2026, 1, 7, 9, 5)),     # exactly at closing, holiday next
    (madrid(2026, 1, 5, 23, 59), madrid(2026, 1, 7, 9, 5)),    # at night, holiday next
    (madrid(2026, 1, 3, 11, 0), madrid(2026, 1, 5, 9, 5)),     # Saturday
    (madrid(2026, 1, 6, 11, 0), madrid(2026, 1, 7, 9, 5)),     # on the holiday itself
    (madrid(2026, 1, 1, 11, 0), madrid(2026, 1, 2, 9, 5)),     # New Year's Day
])
def test_a_start_outside_hours_counts_from_the_next_opening(
        es: BusinessCalendar, start: datetime, expected: datetime) -> None:
    assert es.add_business_seconds(start, 300) == expected
    assert es.add_business_seconds(start, 0) == expected - timedelta(minutes=5)


def test_us_observed_independence_day_is_a_holiday(us: BusinessCalendar) -> None:
    # 4 July 2026 is a Saturday: the holiday is observed on Friday 3 July.
    assert us.is_holiday(date(2026, 7, 3))
    thursday_close = datetime(2026, 7, 2, 16, 55, tzinfo=NEW_YORK)
    assert us.add_business_seconds(thursday_close, 600) == datetime(2026, 7, 6, 9, 5, tzinfo=NEW_YORK)


def test_result_keeps_the_start_time_zone(es: BusinessCalendar) -> None:
    start = datetime(2026, 1, 2, 16, 58, tzinfo=UTC)  # 17:58 in Madrid
    due = es.add_business_seconds(start, 300)
    assert due.tzinfo is UTC
    assert due == madrid(2026, 1, 5, 9, 3)


def test_between_is_antisymmetric_and_skips_closed_time(es: BusinessCalendar) -> None:
    a, b = madrid(2026, 1, 2, 17, 0), madrid(2026, 1, 7, 10, 0)
    assert es.business_seconds_between(a, b) == 3600 + 8 * 3600 + 3600  # Fri 1h, Mon 8h, Wed 1h
    assert es.business_seconds_between(b, a) == -es.business_seconds_between(a, b)
    assert es.business_seconds_between(madrid(2026, 1, 3, 8), madrid(2026, 1, 4, 20)) == 0


@pytest.mark.parametrize(("at", "open_"), [
    (madrid(2026, 1, 5, 8, 59, 59), False), (madrid(2026, 1, 5, 9, 0), True), (madrid(2026, 1, 5, 13, 59), True),
    (madrid(2026, 1, 5, 14, 0), False), (madrid(2026, 1, 5, 18, 0), False), (madrid(2026, 1, 6, 10, 0), False),
    (madrid(2026, 1, 10, 10, 0), False), (datetime(2026, 1, 7, 8, 30, tzinfo=UTC), True),
])
def test_is_open(es: BusinessCalendar, at: datetime, open_: bool) -> None:
    assert es.is_open(at) is open_


def test_closed_dates_add_to_public_holidays() -> None:
    cal = BusinessCalendar("Europe/Madrid", WEEKDAYS, "ES", closed_dates=frozenset({date(2026, 12, 24)}))
    assert cal.is_holiday(date(2026, 12, 24)) and cal.is_holiday(date(2026, 12, 25))
    assert cal.add_business_seconds(madrid(2026, 12, 23, 17, 59), 120) == madrid(2026, 12, 28, 9, 1)


def test_subdivision_holidays_apply() -> None:
    # Maundy Thursday (2 April 2026) is a holiday in the Community of Madrid, not nationwide.
    national = BusinessCalendar("Europe/Madrid", WEEKDAYS, "ES")
    madrid_team = BusinessCalendar("Europe/Madrid", WEEKDAYS, "ES", "MD")
    assert not national.is_holiday(date(2026, 4, 2))
    assert madrid_team.is_holiday(date(2026, 4, 2)) and madrid_team.is_holiday(date(2026, 4, 3))
    wednesday = madrid(2026, 4, 1, 17, 59)
    assert national.add_business_seconds(wednesday, 120) == madrid(2026, 4, 2, 9, 1)
    assert madrid_team.add_business_seconds(wednesday, 120) == madrid(2026, 4, 6, 9, 1)  # Thu, Fri, weekend


def test_holidays_are_looked_up_once_per_year(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = calendar_module.holiday_data.country_holidays

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("years"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(calendar_module.holiday_data, "country_holidays", counting)
    cal = BusinessCalendar("Europe/Madrid", WEEKDAYS, "ES")
    for _ in range(3):
        cal.add_business_seconds(madrid(2026, 12, 30, 10), 5 * 8 * 3600)  # into 2027
    assert calls == [(), 2026, 2027]


# --- DST: Europe/Madrid springs forward 2026-03-29 02:00 -> 03:00, falls back 2026-10-25 03:00 -> 02:00

def test_dst_spring_forward_counts_real_seconds() -> None:
    before = madrid(2026, 3, 29, 1, 30)  # CET
    after = ALWAYS.add_business_seconds(before, 3600)
    assert after == madrid(2026, 3, 29, 3, 30)  # one real hour later is 03:30 CEST
    assert after.utcoffset() == timedelta(hours=2)
    assert ALWAYS.business_seconds_between(madrid(2026, 3, 29), madrid(2026, 3, 30)) == 23 * 3600


def test_dst_fall_back_counts_the_repeated_hour() -> None:
    start = madrid(2026, 10, 25, 1, 30)  # CEST
    after = ALWAYS.add_business_seconds(start, 2 * 3600)
    assert after.astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, second time round
    assert after.utcoffset() == timedelta(hours=1)
    assert ALWAYS.business_seconds_between(madrid(2026, 10, 25), madrid(2026, 10, 26)) == 25 * 3600


@pytest.mark.parametrize(("day", "real_hours"), [(date(2026, 3, 29), 2), (date(2026, 10, 25), 4), (date(2026, 4, 5), 3)])
def test_hours_spanning_the_change_are_shorter_or_longer(day: date, real_hours: int) -> None:
    night_shift = BusinessCalendar("Europe/Madrid", {6: ((time(1), time(4)),)})  # Sundays 01:00-04:00
    start = datetime.combine(day, time(0), tzinfo=MADRID)
    assert night_shift.business_seconds_between(start, start + timedelta(days=1)) == real_hours * 3600


@pytest.mark.parametrize(("hours", "wall", "is_open"), [
    ((time(1), time(2, 30)), (3, 10), False),  # closes at the jump: 03:10 on the clock is after 02:30
    ((time(1), time(2, 30)), (1, 50), True),
    ((time(2, 30), time(4)), (3, 0, 30), True),  # opens at the jump (03:00), not at 03:30
    ((time(2, 15), time(2, 45)), (3, 15), False),  # wholly inside the gap: never open that day
])
def test_hours_that_open_or_close_inside_the_spring_gap_do_so_at_the_jump(
        hours: tuple[time, time], wall: tuple[int, ...], is_open: bool) -> None:
    sunday = BusinessCalendar("Europe/Madrid", {6: (hours,)})  # 2026-03-29: 02:00 -> 03:00
    assert sunday.is_open(madrid(2026, 3, 29, *wall)) is is_open


def test_office_hours_across_a_dst_weekend(es: BusinessCalendar) -> None:
    friday = madrid(2026, 3, 27, 17, 0)  # CET
    due = es.add_business_seconds(friday, 2 * 3600)
    assert due == madrid(2026, 3, 30, 10, 0) and due.utcoffset() == timedelta(hours=2)
    assert es.business_seconds_between(friday, due) == 7200


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"hours": {}}, "at least one weekday"),
    ({"hours": {7: ((time(9), time(17)),)}}, "weekday must be 0"),
    ({"hours": {0: ((time(17), time(9)),)}}, "closing time must be after"),
    ({"hours": {0: ((time(9), time(13)), (time(12), time(17)))}}, "overlap"),
    ({"hours": {0: ((time(9, tzinfo=UTC), time(17)),)}}, "without tzinfo"),
    ({"holidays_country": "XX"}, "not available"),
    ({"holidays_country": "ES", "holidays_subdiv": "ZZ"}, "subdivision"),
    ({"holidays_subdiv": "MD"}, "needs holidays_country"),
])
def test_invalid_calendars_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"timezone": "Europe/Madrid", "hours": WEEKDAYS, **kwargs}
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(**args)  # type: ignore[arg-type]


def test_naive_datetimes_are_refused(es: BusinessCalendar) -> None:
    naive = datetime(2026, 1, 5, 10, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        es.add_business_seconds(naive, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        es.business_seconds_between(naive, madrid(2026, 1, 5, 11))
    with pytest.raises(ValueError, match="timezone-aware"):
        es.is_open(naive)


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_bad_durations_are_refused(es: BusinessCalendar, seconds: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        es.add_business_seconds(madrid(2026, 1, 5, 10), seconds)


def test_touching_spans_merge_and_24_00_closes_the_day() -> None:
    cal = BusinessCalendar("UTC", {0: ((time(12), time(0)), (time(9), time(12)))})
    monday = datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert cal.add_business_seconds(monday, 15 * 3600) == datetime(2026, 1, 6, 0, tzinfo=UTC)
    assert cal.add_business_seconds(monday, 15 * 3600 + 1) == datetime(2026, 1, 12, 9, 0, 1, tzinfo=UTC)


def test_calendars_compare_and_hash_by_value() -> None:
    a = BusinessCalendar("Europe/Madrid", WEEKDAYS, "ES")
    b = BusinessCalendar("Europe/Madrid", dict(WEEKDAYS), "ES")
    assert a == b and hash(a) == hash(b)


def test_team_calendars_fall_back_to_the_default(es: BusinessCalendar) -> None:
    teams = TeamCalendars(by_team={"emea": es}, default=ALWAYS)
    assert teams.for_team("emea") is es and teams.for_team("apac") is ALWAYS
    assert TeamCalendars().for_team("emea") is None


# --- properties ------------------------------------------------------------------------------

ZONES = st.sampled_from(["Europe/Madrid", "America/New_York", "Asia/Kolkata", "UTC"])
starts = st.datetimes(min_value=datetime(2025, 12, 20), max_value=datetime(2026, 12, 31),
                      timezones=st.sampled_from([MADRID, NEW_YORK, UTC]))
durations = st.floats(min_value=0, max_value=3 * 7 * 8 * 3600, allow_nan=False)
_cache: dict[str, BusinessCalendar] = {}


def _calendar(zone: str) -> BusinessCalendar:
    if zone not in _cache:
        country = {"Europe/Madrid": "ES", "America/New_York": "US", "Asia/Kolkata": None, "UTC": None}[zone]
        hours = WEEKDAYS if zone != "UTC" else {0: ((time(1), time(3)),), 5: ((time(22), time(0)),)}
        _cache[zone] = BusinessCalendar(zone, hours, country)
    return _cache[zone]


@settings(max_examples=150, deadline=None)
@given(zone=ZONES, start=starts, seconds=durations)
def test_between_undoes_add(zone: str, start: datetime, seconds: float) -> None:
    cal = _calendar(zone)
    due = cal.add_business_seconds(start, seconds)
    assert due >= start
    assert cal.business_seconds_between(start, due) == pytest.approx(seconds, abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(zone=ZONES, a=starts, b=starts)
def test_add_undoes_between_up_to_closed_time(zone: str, a: datetime, b: datetime) -> None:
    cal = _calendar(zone)
    a, b = min(a, b), max(a, b)
    seconds = cal.business_seconds_between(a, b)
    back = cal.add_business_seconds(a, seconds)
    assert back >= a
    if seconds > 0:  # (0 from a closed start means "the next opening", which may be after b)
        assert back <= b
        assert cal.business_seconds_between(back, b) == 0  # only closed time lies between
        if cal.business_seconds_between(b - timedelta(microseconds=1), b) > 0:  # b ends working time
            assert back == b


@settings(max_examples=100, deadline=None)
@given(zone=ZONES, start=starts, s1=durations, s2=durations)
def test_add_is_monotonic(zone: str, start: datetime, s1: float, s2: float) -> None:
    cal = _calendar(zone)
    lo, hi = sorted((s1, s2))
    assert cal.add_business_seconds(start, lo) <= cal.add_business_seconds(start, hi)

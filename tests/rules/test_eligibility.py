"""Eligibility filters one by one: the reason each gives, working hours, holidays and cap resets."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.commands import RepProfile, RouteLead
from rules.eligibility import eligibility, lead_reasons, parse_working_hours, rep_reasons
from rules.roster import RepState
from tests.rules._sim import T0  # Monday 2026-01-05 09:00 UTC

NINE_TO_FIVE = {"mon-fri": ("09:00-17:00",)}


def rep(**profile: Any) -> RepState:
    return RepState(profile=RepProfile(rep_id="a", team_id="t", **profile), presence="available")


def lead(**fields: Any) -> RouteLead:
    return RouteLead(team_id="t", lead_id="l1", route_id="l1:1:1", requested_at=T0, **fields)


def assign(state: RepState, at: datetime, n: int = 1) -> RepState:
    for _ in range(n):
        state = state.with_lead(at)
    return state


# --- working hours: the format -------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "parsed"),
    [
        ({}, {}),
        ({"mon": ["09:00-17:00"]}, {0: ((time(9), time(17)),)}),
        ({"mon-wed": ["09:00-12:00", "13:00-17:30"]},
         {d: ((time(9), time(12)), (time(13), time(17, 30))) for d in (0, 1, 2)}),
        ({"fri-mon": ["20:00-24:00"]}, {d: ((time(20), time(0)),) for d in (4, 5, 6, 0)}),
        ({"Sat": ["00:00-24:00"]}, {5: ((time(0), time(0)),)}),
    ],
)
def test_parse_working_hours(hours: dict[str, list[str]], parsed: dict[int, Any]) -> None:
    assert parse_working_hours(hours) == parsed


@pytest.mark.parametrize(
    ("hours", "problem"),
    [
        ({"monday": ["09:00-17:00"]}, "use a weekday"),
        ({"mon-fri-sat": ["09:00-17:00"]}, "use a weekday"),
        ({"mon": ["9-17"]}, "is not HH:MM-HH:MM"),
        ({"mon": ["17:00-09:00"]}, "closes before it opens"),
        ({"mon": ["09:00-25:00"]}, "is not a time of day"),
        ({"mon": "09:00-17:00"}, "give a list of spans"),
        ({"mon": []}, "no spans given"),
        ({"mon-fri": ["09:00-17:00"], "fri": ["16:00-18:00"]}, "'fri' '16:00-18:00' overlaps 'mon-fri' '09:00-17:00' on fri"),
        ({"mon": ["09:00-12:00", "11:00-24:00"]}, "overlaps 'mon' '09:00-12:00' on mon"),
    ],
)
def test_parse_working_hours_errors(hours: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_working_hours(hours)


# --- working hours and holidays, in the rep's zone ------------------------------------------


@pytest.mark.parametrize(
    ("zone", "at", "open_"),
    [
        ("UTC", T0, True),                                        # Mon 09:00
        ("UTC", T0 - timedelta(minutes=1), False),                # Mon 08:59
        ("UTC", T0 + timedelta(hours=8), False),                  # Mon 17:00: closed
        ("America/New_York", T0, False),                          # Mon 04:00 in New York
        ("America/New_York", T0 + timedelta(hours=5), True),      # Mon 09:00 in New York
        ("Asia/Tokyo", T0, False),                                # Mon 18:00 in Tokyo
        ("Asia/Tokyo", T0 - timedelta(hours=8), True),            # Mon 10:00 in Tokyo
        ("UTC", T0 + timedelta(days=5), False),                   # Saturday
    ],
)
def test_working_hours_in_the_reps_zone(zone: str, at: datetime, open_: bool) -> None:
    reasons = rep_reasons(rep(timezone=zone, working_hours=NINE_TO_FIVE), at)
    assert (reasons == ()) is open_
    if not open_:
        assert reasons[0].startswith("outside working hours (") and zone in reasons[0]


def test_no_working_hours_means_always_on() -> None:
    for hours in range(0, 24 * 7, 5):
        assert rep_reasons(rep(timezone="Asia/Tokyo"), T0 + timedelta(hours=hours)) == ()


def test_holidays_in_the_reps_country() -> None:
    epiphany = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)  # a public holiday in Spain, not in the UK
    spain = rep(timezone="Europe/Madrid", working_hours=NINE_TO_FIVE, holidays_country="ES")
    assert rep_reasons(spain, epiphany) == ("on holiday (2026-01-06, ES)",)
    assert rep_reasons(replace(spain, profile=replace(spain.profile, holidays_country="GB")), epiphany) == ()
    # Holidays without hours: on every day but holidays.
    always = rep(timezone="Europe/Madrid", holidays_country="ES")
    assert rep_reasons(always, epiphany) == ("on holiday (2026-01-06, ES)",)
    assert rep_reasons(always, epiphany + timedelta(days=1, hours=12)) == ()


# --- skills, language, territory, exclusions ----------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "asks", "reasons"),
    [
        ({}, {}, ()),
        ({"skills": ("enterprise",)}, {"required_skills": ("Enterprise",)}, ()),
        ({"skills": ("enterprise",)}, {"required_skills": ("enterprise", "fintech")}, ("missing skills: fintech",)),
        ({}, {"required_skills": ("fintech",)}, ("missing skills: fintech",)),
        ({"languages": ("es", "en")}, {"language": "es-MX"}, ()),
        ({"languages": ("en",)}, {"language": "es"}, ("does not speak es",)),
        ({}, {"language": "es"}, ()),  # a rep who lists no languages is not restricted
        ({"territories": ("ES", "PT")}, {"country": "es"}, ()),
        ({"territories": ("US-CA",)}, {"country": "US", "region": "CA"}, ()),
        ({"territories": ("US-CA",)}, {"country": "US", "region": "NY"}, ("territory US-NY not covered",)),
        ({"territories": ("us-ca",)}, {"country": "US", "region": "US-CA"}, ()),  # as route_command sends it
        ({"territories": ("US",)}, {"country": "US", "region": "US-CA"}, ()),
        # A territory is a country or an ISO 3166-2 code: CA is Canada, not the US state.
        ({"territories": ("CA",)}, {"country": "US", "region": "CA"}, ("territory US-CA not covered",)),
        ({"territories": ("FR",)}, {"country": "DE"}, ("territory DE not covered",)),
        ({"territories": ("FR",)}, {}, ()),   # a lead of unknown country asks for no territory
        ({}, {"country": "DE"}, ()),          # empty territories: anywhere
        ({}, {"excluded_reps": ("a",)}, ("excluded for this lead",)),
        ({"skills": ("x",), "languages": ("en",), "territories": ("FR",)},
         {"required_skills": ("y",), "language": "de", "country": "DE", "excluded_reps": ("a",)},
         ("missing skills: y", "does not speak de", "territory DE not covered", "excluded for this lead")),
    ],
)
def test_lead_requirements(profile: dict[str, Any], asks: dict[str, Any], reasons: tuple[str, ...]) -> None:
    assert lead_reasons(rep(**profile), lead(**asks)) == reasons
    assert eligibility(rep(**profile), now=T0, lead=lead(**asks)) == reasons


def test_rep_filters_come_before_lead_filters() -> None:
    state = replace(rep(capacity=1, skills=()), presence="busy")
    state = assign(state, T0)
    assert eligibility(state, now=T0, lead=lead(required_skills=("x",)), excluded=("a",)) == (
        "presence is busy", "at capacity (1/1 open)", "missing skills: x", "excluded for this lead")


# --- daily and weekly caps, reset in the rep's zone -----------------------------------------------


def test_daily_cap_resets_at_local_midnight() -> None:
    tokyo = rep(timezone="Asia/Tokyo", daily_cap=2, capacity=100)
    # 09:00 UTC Monday is 18:00 Monday in Tokyo; local midnight comes at 15:00 UTC.
    capped = assign(tokyo, T0, 2)
    assert rep_reasons(capped, T0 + timedelta(hours=5)) == ("daily cap reached (2/2 today)",)
    assert rep_reasons(capped, T0 + timedelta(hours=6)) == ()  # 00:00 Tuesday in Tokyo
    again = assign(capped, T0 + timedelta(hours=6))
    assert (again.day, again.day_count) == ("2026-01-06", 1)
    # The same UTC instants for a UTC rep are one day: the cap still holds.
    utc = assign(rep(daily_cap=2, capacity=100), T0, 2)
    assert rep_reasons(utc, T0 + timedelta(hours=6)) == ("daily cap reached (2/2 today)",)


def test_weekly_cap_resets_on_the_local_monday() -> None:
    ny = rep(timezone="America/New_York", weekly_cap=3, capacity=100)
    sunday_evening = datetime(2026, 1, 11, 23, 0, tzinfo=UTC)  # Sunday 18:00 in New York
    capped = assign(assign(ny, T0 + timedelta(hours=5)), sunday_evening, 2)
    assert capped.week_count == 3
    assert rep_reasons(capped, sunday_evening + timedelta(hours=5)) == ("weekly cap reached (3/3 this week)",)
    monday = datetime(2026, 1, 12, 5, 0, tzinfo=UTC)  # 00:00 Monday in New York
    assert rep_reasons(capped, monday) == ()
    assert capped.assigned_on(monday) == (0, 0)


def test_caps_count_assignments_not_open_leads() -> None:
    state = assign(rep(daily_cap=2, capacity=100), T0, 2)
    released = state.without_lead()
    assert released.load == 1
    assert rep_reasons(released, T0) == ("daily cap reached (2/2 today)",)


def test_a_returned_offer_leaves_the_caps_of_its_own_day_and_week() -> None:
    state = assign(rep(daily_cap=2, weekly_cap=5, capacity=100), T0, 2)
    returned = state.without_lead(returned_from=T0)  # an offer declined, lapsed or never received
    assert (returned.load, returned.day_count, returned.week_count) == (1, 1, 1)
    assert rep_reasons(returned, T0) == ()
    # Returned the next day: yesterday's count is gone anyway, today's stays as it is.
    next_day = assign(state, T0 + timedelta(days=1))
    late = next_day.without_lead(returned_from=T0)
    assert (late.day, late.day_count) == ("2026-01-06", 1)
    assert late.week_count == 2  # same ISO week: the returned assignment leaves it
    # Never below zero, whatever order releases come in.
    assert rep(daily_cap=2).without_lead(returned_from=T0).day_count == 0


KATHMANDU = ZoneInfo("Asia/Kathmandu")


def test_a_late_command_across_midnight_keeps_both_days_counts() -> None:
    # With several producers, a command stamped Sunday 23:59:59 may be read after Monday 00:01's.
    state = rep(timezone="Asia/Kathmandu", daily_cap=3, weekly_cap=5, capacity=100)
    for minute in range(3):
        state = state.with_lead(datetime(2026, 1, 11, 23, 50 + minute, tzinfo=KATHMANDU))
    state = state.with_lead(datetime(2026, 1, 12, 0, 1, tzinfo=KATHMANDU))  # Monday's first
    late = datetime(2026, 1, 11, 23, 59, 59, tzinfo=KATHMANDU)
    assert state.assigned_on(late) == (3, 5)  # Sunday's counts are gone: taken as full, not as 0
    assert rep_reasons(state, late) == (
        "daily cap taken as reached (the request is of an earlier day than the rep's latest lead: "
        "that day's count is no longer kept)",
        "weekly cap taken as reached (the request is of an earlier week than the rep's latest lead: "
        "that week's count is no longer kept)")
    assert state.assigned_on(datetime(2026, 1, 12, 0, 5, tzinfo=KATHMANDU)) == (1, 1)
    # A late lead (taken before the crash, or counted late) leaves Monday's counts as they are.
    later = state.with_lead(late)
    assert (later.day, later.day_count, later.week, later.week_count) == ("2026-01-12", 1, "2026-W03", 1)
    assert (later.load, later.last_assigned_at) == (5, datetime(2026, 1, 12, 0, 1, tzinfo=KATHMANDU))
    # The kept day itself is judged by its count; without caps an earlier day counts as 0.
    assert state.assigned_on(datetime(2026, 1, 12, 0, 0, 30, tzinfo=KATHMANDU)) == (1, 1)
    assert rep(timezone="Asia/Kathmandu").with_lead(T0 + timedelta(days=1)).assigned_on(T0) == (0, 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-3 * 3600, max_value=3 * 3600), min_size=1, max_size=40),
       st.integers(min_value=0, max_value=4), st.integers(min_value=0, max_value=8))
def test_caps_hold_whatever_order_the_commands_are_read_in(offsets: list[int], daily: int, weekly: int) -> None:
    """Commands read in any order around a local midnight that ends a week: no day or week goes over its cap."""
    midnight = datetime(2026, 1, 12, tzinfo=KATHMANDU)  # Sunday -> Monday: a new day and a new ISO week
    state = rep(timezone="Asia/Kathmandu", daily_cap=daily, weekly_cap=weekly, capacity=1000)
    taken: list[datetime] = []
    for offset in offsets:
        at = midnight + timedelta(seconds=offset)
        if not rep_reasons(state, at):
            state = state.with_lead(at)
            taken.append(at)
    days = Counter(at.astimezone(KATHMANDU).date() for at in taken)
    weeks = Counter(at.astimezone(KATHMANDU).isocalendar()[:2] for at in taken)
    assert max(days.values(), default=0) <= daily and max(weeks.values(), default=0) <= weekly
    in_order = sorted(offsets) == offsets
    if in_order:  # read in order, nothing is lost: each day takes what its caps allow
        sunday = sum(1 for o in offsets if o < 0)
        assert days[midnight.date() - timedelta(days=1)] == min(sunday, daily, weekly)


def test_a_new_time_zone_carries_today_s_counts_over() -> None:
    tokyo = assign(rep(timezone="Asia/Tokyo", daily_cap=2, weekly_cap=5, capacity=100), T0, 2)  # Mon 18:00 Tokyo
    assert tokyo.day == "2026-01-05"
    moved = replace(tokyo, profile=replace(tokyo.profile, timezone="America/Los_Angeles"))
    moved = moved.with_timezone_of(tokyo.profile, T0 + timedelta(hours=1))  # Mon 02:00 in Los Angeles
    assert (moved.day, moved.day_count, moved.week_count) == ("2026-01-05", 2, 2)
    # Without it, Tokyo's Tuesday would be "later" than Los Angeles's Monday all Monday long.
    tuesday_tokyo = assign(tokyo, T0 + timedelta(hours=16))  # 10:00 Tuesday in Tokyo, 17:00 Monday in LA
    la = replace(tuesday_tokyo, profile=replace(tokyo.profile, timezone="America/Los_Angeles"))
    assert rep_reasons(la.with_timezone_of(tokyo.profile, T0 + timedelta(hours=17)), T0 + timedelta(hours=17)) == ()
    # A day already over in the old zone is not carried.
    stale = replace(tokyo, profile=replace(tokyo.profile, timezone="Europe/Paris"))
    assert stale.with_timezone_of(tokyo.profile, T0 + timedelta(days=1)).day_count == 0


def test_hours_stored_before_they_were_checked_make_the_rep_ineligible_not_the_team_fail() -> None:
    overlapping = rep(working_hours={"mon-fri": ["09:00-17:00"], "fri": ["16:00-18:00"]}, capacity=5)
    (reason,) = rep_reasons(overlapping, T0)
    assert reason.startswith("working hours cannot be read (working_hours 'mon-fri' '09:00-17:00' overlaps")
    assert reason.endswith("fix them with PUT /v1/reps/a")
    # Touching spans are fine: 09-12 and 12-17 are one working day.
    assert rep_reasons(rep(working_hours={"mon": ["09:00-12:00", "12:00-17:00"]}), T0) == ()

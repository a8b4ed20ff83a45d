"""A team calendar's ``hours`` and a rep's ``working_hours`` read weekday keys alike: ``fri-mon``
wraps over the weekend in both (a calendar refused it while a rep's hours accepted it)."""
from __future__ import annotations

import pytest

from rules.eligibility import parse_working_hours
from sla.config import CalendarConfig


@pytest.mark.parametrize("days", ["mon-fri", "fri-mon", "sun-tue", "sat", "sat-sun", "tue-mon", "wed-wed"])
def test_the_calendar_and_a_reps_hours_cover_the_same_days(days: str) -> None:
    calendar = CalendarConfig.model_validate({"timezone": "Europe/Madrid", "hours": {days: ["09:00-17:00"]}})
    rep = parse_working_hours({days: ["09:00-17:00"]})
    assert sorted(calendar.to_calendar().hours) == sorted(rep)


def test_a_weekend_shift_is_open_friday_to_monday() -> None:
    calendar = CalendarConfig.model_validate({"timezone": "UTC", "hours": {"fri-mon": ["09:00-17:00"]}})
    assert sorted(calendar.to_calendar().hours) == [0, 4, 5, 6]

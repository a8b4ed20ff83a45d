"""The escalation ladder: due times of every step, wall clock and business time, what comes next."""
from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from sla.calendar import BusinessCalendar
from sla.clock import FakeClock
from sla.ladder import BREACH_STEP, Deadline, next_due, overdue, plan_deadlines, step_id, timer_key
from sla.policy import DEFAULT_POLICY, EscalationStep, SlaPolicy

MADRID = ZoneInfo("Europe/Madrid")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=MADRID)  # Monday 09:00, Ana gets the lead
OFFICE = BusinessCalendar("Europe/Madrid", {d: ((time(9), time(14)), (time(15), time(18))) for d in range(5)},
                          "ES", "MD")
BUSINESS = SlaPolicy("office", 300, DEFAULT_POLICY.steps, business_hours=True)


def at(hh: int, mm: int, day: int = 5, month: int = 1) -> datetime:
    return datetime(2026, month, day, hh, mm, tzinfo=MADRID)


def test_the_default_ladder_on_the_wall_clock() -> None:
    plan = plan_deadlines(DEFAULT_POLICY, None, T0)
    assert plan == (
        Deadline(0, "breach", at(9, 5)),
        Deadline(1, "remind", at(9, 5)),
        Deadline(2, "reassign", at(9, 7)),
        Deadline(3, "alert_manager", at(9, 10)),
        Deadline(4, "release_to_pool", at(9, 15)),
    )
    assert plan[0].step == BREACH_STEP


@pytest.mark.parametrize(("assigned", "expected"), [
    # Monday 13:58: lunch pauses the clock.
    (at(13, 58), [at(15, 3), at(15, 3), at(15, 5), at(15, 8), at(15, 13)]),
    # Friday 17:58: two minutes on Friday, the rest on Monday.
    (at(17, 58, day=2), [at(9, 3), at(9, 3), at(9, 5), at(9, 8), at(9, 13)]),
    # Monday 17:58: Tuesday 6 January is Epiphany, so Wednesday.
    (at(17, 58), [at(9, 3, 7), at(9, 3, 7), at(9, 5, 7), at(9, 8, 7), at(9, 13, 7)]),
    # Saturday: nothing counts until Monday's opening.
    (at(11, 0, day=3), [at(9, 5), at(9, 5), at(9, 7), at(9, 10), at(9, 15)]),
    # Straddling the closing bell: the alert uses the last second (18:00), the release waits for Wednesday.
    (at(17, 50), [at(17, 55), at(17, 55), at(17, 57), at(18, 0), at(9, 5, 7)]),
])
def test_business_hours_ladder(assigned: datetime, expected: list[datetime]) -> None:
    plan = plan_deadlines(BUSINESS, OFFICE, assigned)
    assert [d.due_at for d in plan] == expected
    assert [d.kind for d in plan] == ["breach", "remind", "reassign", "alert_manager", "release_to_pool"]
    for deadline, seconds in zip(plan, (300, 300, 420, 600, 900)):  # business seconds from the assignment
        assert OFFICE.business_seconds_between(assigned, deadline.due_at) == seconds


def test_business_hours_across_a_dst_weekend() -> None:
    # Friday 27 March 17:58 CET; Madrid moves to CEST on Sunday 29 March.
    plan = plan_deadlines(BUSINESS, OFFICE, at(17, 58, day=27, month=3))
    assert plan[0].due_at == at(9, 3, day=30, month=3)
    assert plan[0].due_at.utcoffset() == timedelta(hours=2)


def test_the_calendar_is_used_only_when_the_policy_says_so() -> None:
    friday = at(17, 58, day=2)
    wall = plan_deadlines(DEFAULT_POLICY, OFFICE, friday)
    assert wall[0].due_at == friday + timedelta(minutes=5)
    no_calendar = plan_deadlines(BUSINESS, None, friday)
    assert no_calendar[0].due_at == friday + timedelta(minutes=5)  # no calendar for the team: 24/7


def test_a_policy_without_steps_only_breaches() -> None:
    plan = plan_deadlines(SlaPolicy("p", 60, ()), None, T0)
    assert plan == (Deadline(0, "breach", T0 + timedelta(seconds=60)),)


def test_naive_assignment_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_deadlines(DEFAULT_POLICY, None, datetime(2026, 1, 5, 9, 0))


def test_every_step_in_turn_with_a_fake_clock() -> None:
    """Drive the ladder as the lead agent does: apply whatever is due, mark it done, ask for the next."""
    clock = FakeClock(T0.astimezone(UTC))
    plan = plan_deadlines(DEFAULT_POLICY, None, clock.now())
    done: frozenset[int] = frozenset()
    fired: list[tuple[int, str, float]] = []
    while (upcoming := next_due(plan, done)) is not None:
        clock.advance((upcoming.due_at - clock.now()).total_seconds())
        for deadline in overdue(plan, done, clock.now()):
            fired.append((deadline.step, deadline.kind, (clock.now() - T0).total_seconds()))
            done |= {deadline.step}
    assert fired == [(0, "breach", 300), (1, "remind", 300), (2, "reassign", 420),
                     (3, "alert_manager", 600), (4, "release_to_pool", 900)]
    assert overdue(plan, done, clock.now() + timedelta(days=1)) == ()


@pytest.mark.parametrize("done", [frozenset(), frozenset({0}), frozenset({0, 1}), frozenset({0, 1, 2}),
                                  frozenset({0, 1, 2, 3}), frozenset({0, 1, 2, 3, 4})])
def test_next_due_is_the_first_step_not_done(done: frozenset[int]) -> None:
    plan = plan_deadlines(DEFAULT_POLICY, None, T0)
    upcoming = next_due(plan, done)
    remaining = [d for d in plan if d.step not in done]
    assert upcoming == (remaining[0] if remaining else None)


def test_step_ids_do_not_depend_on_what_fired() -> None:
    plan = plan_deadlines(DEFAULT_POLICY, None, T0)
    # A replayed step (already done) or an out-of-order one never renumbers the others.
    assert next_due(plan, frozenset({1})) == plan[0]
    assert next_due(plan, frozenset({0, 2})) == plan[1]
    assert next_due(reversed(plan), frozenset({0})) == plan[1]  # ties go to the lower step


def test_overdue_after_an_outage_lists_every_missed_step_in_order() -> None:
    plan = plan_deadlines(DEFAULT_POLICY, None, T0)
    assert [d.step for d in overdue(plan, frozenset(), at(9, 11))] == [0, 1, 2, 3]
    assert [d.step for d in overdue(plan, frozenset({0, 1}), at(9, 11))] == [2, 3]
    assert overdue(plan, frozenset(), at(9, 4)) == ()
    with pytest.raises(ValueError, match="timezone-aware"):
        overdue(plan, frozenset(), datetime(2026, 1, 5, 9, 11))


def test_ids_for_timers_and_idempotency() -> None:
    assert timer_key("ld_0123456789abcdef01234567", 1) == "ld_0123456789abcdef01234567:1"
    assert step_id("ld_x", 2, 3) == "ld_x:2:sla:3"
    assert len({step_id("ld_x", c, s) for c in (1, 2) for s in range(5)}) == 10


def test_two_reminders_before_the_deadline_offsets() -> None:
    policy = SlaPolicy("nudgy", 600, (EscalationStep("remind", 0), EscalationStep("remind", 60),
                                      EscalationStep("reassign", 60)))
    plan = plan_deadlines(policy, None, T0)
    assert [(d.step, d.kind, d.due_at) for d in plan] == [
        (0, "breach", at(9, 10)), (1, "remind", at(9, 10)), (2, "remind", at(9, 11)), (3, "reassign", at(9, 11))]

"""The lead's SLA ladder, pure: planned at assignment, each step once, stopped by first contact."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from rules import lead
import pytest

from rules.commands import DispositionLead, LeadQueued, Notify, RecordActivity, ReleaseLead, RouteLead, SlaDue
from rules.lead import LeadPolicy, LeadState, next_timer
from rules.lead_state import Endpoint
from sla.policy import EscalationStep, SlaPolicy
from streams.config import parse_config
from tests.rules._sim import T0
from tests.rules.test_lead import LEAD_ID, assigned, capture, decision

FAST = SlaPolicy(name="fast", first_contact_s=60, steps=(
    EscalationStep("remind", 0), EscalationStep("reassign", 60), EscalationStep("alert_manager", 120),
    EscalationStep("release_to_pool", 180)))
MANAGER = Endpoint(url="https://hooks.example/manager", secret="whsec_m")
POLICY = LeadPolicy(default_team="inbound", sla_policies=(FAST,), managers={"inbound": MANAGER},
                    overflow_teams={"inbound": "overflow"})
ASSIGNED_AT = T0 + timedelta(seconds=5)


def start() -> LeadState:
    state = lead.apply(None, capture(), T0, POLICY).state
    state = lead.apply(state, assigned(), ASSIGNED_AT, POLICY).state
    assert state is not None
    return state


def due(state: LeadState, step: int, *, late_s: float = 0.0) -> tuple[LeadState, list[object]]:
    assert state.sla is not None
    deadline = next(d for d in state.sla.deadlines if d.step == step)
    now = deadline.due_at + timedelta(seconds=late_s)
    transition = lead.apply(state, SlaDue(lead_id=LEAD_ID, cycle=state.cycle, step=step, due_at=deadline.due_at),
                            now, POLICY)
    assert transition.state is not None
    return transition.state, [m.value for m in transition.outgoing]


def test_the_cycle_plans_the_ladder_of_the_selected_policy_from_its_capture() -> None:
    state = start()
    assert state.sla is not None and state.sla.policy == "fast"
    assert [(d.step, d.kind, (d.due_at - T0).total_seconds()) for d in state.sla.deadlines] == [
        (0, "breach", 60), (1, "remind", 60), (2, "reassign", 120), (3, "alert_manager", 180),
        (4, "release_to_pool", 240)]
    assert state.sla_deadline == T0 + timedelta(seconds=60)
    timer = next_timer(state)
    assert timer is not None and (timer.step, timer.due_at) == (0, state.sla_deadline)


def test_each_step_fires_once_and_replays_change_nothing() -> None:
    state = start()
    state, out = due(state, 0)
    assert state.sla is not None and state.sla.breached_at is not None
    assert [e["type"] for e in out if isinstance(e, dict)] == ["lead.sla_breached"]
    again, out = due(state, 0)
    assert again == state and out == []
    state, out = due(state, 1)
    (reminder,) = [m for m in out if isinstance(m, Notify)]
    assert reminder.event_type == "lead.reminder" and reminder.rep_id == "rep-a"
    assert due(state, 1)[1] == []


def test_a_timer_that_runs_early_does_nothing_and_comes_back() -> None:
    state = start()
    transition = lead.apply(state, SlaDue(lead_id=LEAD_ID, cycle=1, step=0, due_at=T0), ASSIGNED_AT, POLICY)
    assert transition.state == state and transition.outgoing == ()
    timer = next_timer(transition.state)
    assert timer is not None and timer.step == 0


def test_reassign_releases_the_rep_and_routes_again_without_them() -> None:
    state = start()
    for step in (0, 1):
        state, _ = due(state, step)
    state, out = due(state, 2)
    release = next(m for m in out if isinstance(m, ReleaseLead))
    route = next(m for m in out if isinstance(m, RouteLead))
    notice = next(m for m in out if isinstance(m, Notify))
    assert release.rep_id == "rep-a" and release.route_id == f"{LEAD_ID}:1:1"
    assert route.route_id == f"{LEAD_ID}:1:2" and route.excluded_reps == ("rep-a",) and route.team_id == "inbound"
    assert notice.event_type == "lead.reassigned" and notice.rep_id == "rep-a"
    assert state.routing == "routing" and state.assignment is None
    # The new rep's assignment keeps the ladder going (no fresh plan, no second breach).
    state = lead.apply(state, assigned(route_id=f"{LEAD_ID}:1:2", rep_id="rep-b"), ASSIGNED_AT, POLICY).state
    assert state is not None and state.sla is not None and state.sla.done == (0, 1, 2)
    timer = next_timer(state)
    assert timer is not None and timer.step == 3


def test_the_manager_alert_and_the_release_to_the_overflow_team() -> None:
    state = start()
    for step in (0, 1, 2):
        state, _ = due(state, step)
    state = lead.apply(state, assigned(route_id=f"{LEAD_ID}:1:2", rep_id="rep-b"), ASSIGNED_AT, POLICY).state
    assert state is not None
    state, out = due(state, 3)
    (alert,) = [m for m in out if isinstance(m, Notify)]
    assert alert.url == MANAGER.url and alert.event_type == "lead.escalated" and alert.payload["data"]["step"] == 3
    state, out = due(state, 4)
    route = next(m for m in out if isinstance(m, RouteLead))
    assert route.team_id == "overflow" and route.excluded_reps == ("rep-a", "rep-b")
    assert next_timer(state) is None  # the ladder is done


def test_first_contact_stops_the_clock_and_splits_speed_to_lead() -> None:
    state = start()
    contact = RecordActivity(lead_id=LEAD_ID, activity_id="call-1", type="call", rep_id="rep-a",
                             at=ASSIGNED_AT + timedelta(seconds=30))
    transition = lead.apply(state, contact, ASSIGNED_AT + timedelta(seconds=31), POLICY)
    state = transition.state
    assert state is not None and state.contacted_at == contact.at
    assert next_timer(state) is None
    (event,) = [m.value for m in transition.outgoing]
    assert event["type"] == "lead.contacted" and event["data"]["speed_to_lead_s"] == 35.0
    assert event["data"]["within_sla"] is True
    # Deadlines that come anyway change nothing; the same activity twice is recorded once.
    assert due(state, 0)[1] == []
    assert lead.apply(state, contact, ASSIGNED_AT, POLICY).state == state


def test_a_queued_lead_escalates_to_the_manager_without_reminding_anyone() -> None:
    state = lead.apply(None, capture(), T0, POLICY).state
    assert state is not None
    for step in (0, 1, 2):
        state, out = due(state, step)
        assert not [m for m in out if isinstance(m, (Notify, ReleaseLead, RouteLead))]
    state, out = due(state, 3)
    (alert,) = [m for m in out if isinstance(m, Notify)]
    assert alert.url == MANAGER.url and alert.payload["data"]["rep_id"] is None


def test_a_note_is_not_a_contact() -> None:
    state = start()
    note = RecordActivity(lead_id=LEAD_ID, activity_id="n-1", type="note", rep_id="rep-a", at=ASSIGNED_AT)
    state = lead.apply(state, note, ASSIGNED_AT, POLICY).state
    assert state is not None and state.contacted_at is None and next_timer(state) is not None


def test_a_deadline_of_another_cycle_is_ignored() -> None:
    state = start()
    transition = lead.apply(state, SlaDue(lead_id=LEAD_ID, cycle=2, step=0, due_at=T0), T0 + timedelta(hours=1),
                            POLICY)
    assert transition.state == state and transition.outgoing == ()


def _queued(expected_wait_s: float | None) -> LeadQueued:
    return LeadQueued(lead_id=LEAD_ID, route_id=f"{LEAD_ID}:1:1", team_id="inbound", depth=7,
                      decision=decision(None), queued_at=T0 + timedelta(seconds=1), expected_wait_s=expected_wait_s)


def test_a_queue_that_will_outlast_the_deadline_warns_the_manager_once() -> None:
    state = lead.apply(None, capture(), T0, POLICY).state
    transition = lead.apply(state, _queued(expected_wait_s=600), T0, POLICY)
    kinds = [m.value["type"] if isinstance(m.value, dict) else m.value.event_type for m in transition.outgoing]
    assert kinds == ["lead.queued", "lead.sla_at_risk", "lead.escalated"]
    alert = transition.outgoing[-1].value
    assert isinstance(alert, Notify) and alert.url == MANAGER.url and alert.payload["data"]["reason"] == "at_risk"
    assert transition.state is not None and transition.state.sla is not None
    assert transition.state.sla.at_risk_at is not None


@pytest.mark.parametrize("wait", [None, 30.0])
def test_no_warning_without_an_estimate_or_when_the_wait_fits(wait: float | None) -> None:
    state = lead.apply(None, capture(), T0, POLICY).state
    transition = lead.apply(state, _queued(expected_wait_s=wait), T0, POLICY)
    assert [m.value["type"] for m in transition.outgoing] == ["lead.queued"]


def _activity(state: LeadState, *, at_s: float, rep_id: str | None = "rep-a", kind: str = "call",
              activity_id: str = "act-1", now_s: float = 600) -> tuple[LeadState, list[object]]:
    command = RecordActivity(lead_id=LEAD_ID, activity_id=activity_id, type=kind, rep_id=rep_id,  # type: ignore[arg-type]
                             at=T0 + timedelta(seconds=at_s))
    transition = lead.apply(state, command, T0 + timedelta(seconds=now_s), POLICY)
    assert transition.state is not None
    return transition.state, [m.value for m in transition.outgoing]


@pytest.mark.parametrize(("at_s", "rep_id", "why"), [
    (-1, "rep-a", "at is before the lead was captured"),
    (-217956118, "rep-a", "at is before the lead was captured"),
    (30, "nobody-at-all", "the lead is held by another rep, not nobody-at-all"),
])
def test_an_activity_the_lead_cannot_take_is_rejected_and_changes_nothing(at_s: float, rep_id: str, why: str) -> None:
    state = start()
    after, out = _activity(state, at_s=at_s, rep_id=rep_id)
    assert after == state
    (rejected,) = out
    assert isinstance(rejected, dict) and rejected["type"] == "lead.activity_rejected"
    assert rejected["data"]["why"].startswith(why)


def test_a_call_on_a_closed_lead_is_history_not_a_first_contact() -> None:
    state = lead.apply(start(), DispositionLead(lead_id=LEAD_ID, status="disqualified", reason=None, rep_id=None,
                                                at=ASSIGNED_AT), ASSIGNED_AT, POLICY).state
    assert state is not None and state.routing == "released"
    after, out = _activity(state, at_s=30, rep_id=None)
    assert after.contacted_at is None and after.sla is not None and after.sla.stopped_at is None
    (recorded,) = out
    assert isinstance(recorded, dict) and recorded["type"] == "lead.activity"
    assert recorded["data"]["counted_as_contact"] is False and "speed_to_lead_s" not in recorded["data"]
    assert after.timeline[-1].kind == "activity"


def test_within_sla_is_judged_by_when_the_contact_happened() -> None:
    state, _ = due(start(), 0)  # the breach fired
    _, out = _activity(state, at_s=50)  # ... but the call was at 50 s, before the 60 s deadline (synced late)
    (contacted,) = out
    assert isinstance(contacted, dict) and contacted["data"]["within_sla"] is True
    assert contacted["data"]["sla_breached"] is True  # the breach counted the lead as missed already
    _, out = _activity(start(), at_s=61, now_s=61)  # after the deadline, before the breach timer fired
    (contacted,) = out
    assert isinstance(contacted, dict) and contacted["data"]["within_sla"] is False
    assert contacted["data"]["sla_breached"] is False  # so this late contact is the lead's one "missed"


def test_speed_to_lead_counts_from_the_cycles_capture_not_a_later_touch() -> None:
    state = lead.apply(start(), capture("cap-2", minutes=0, first_name="Ada"), ASSIGNED_AT, POLICY).state
    assert state is not None and state.touches == 2
    state = replace(state, last_touch=replace(state.last_touch, at=T0 + timedelta(seconds=40)))
    _, out = _activity(state, at_s=30)
    (contacted,) = [v for v in out if isinstance(v, dict) and v["type"] == "lead.contacted"]
    assert contacted["data"]["speed_to_lead_s"] == 30.0


@pytest.mark.parametrize("queued_s", [60, 75])
def test_no_early_warning_once_the_deadline_has_passed(queued_s: float) -> None:
    """Queued again after the deadline (a reassign step took it from its rep): the breach already
    said it; an "at risk" alert to the manager after the fact would be noise."""
    state = lead.apply(None, capture(), T0, POLICY).state
    assert state is not None
    command = replace(_queued(expected_wait_s=600), queued_at=T0 + timedelta(seconds=queued_s))
    transition = lead.apply(state, command, command.queued_at, POLICY)
    assert [m.value["type"] for m in transition.outgoing] == ["lead.queued"]
    assert transition.state is not None and transition.state.sla is not None
    assert transition.state.sla.at_risk_at is None


def test_the_default_calendar_applies_to_teams_the_config_does_not_name() -> None:
    config = parse_config(
        "teams: [{id: emea}]\n"
        "sla:\n"
        "  policies: [{name: office, first_contact: 30m, business_hours: true}]\n"
        "  calendars:\n"
        "    office: {timezone: Europe/Berlin, hours: {mon-fri: [\"09:00-18:00\"]}}\n", "c.yaml")
    # apac: a team reached through an account or made with PUT /v1/reps, never named in the file.
    policy = replace(config.lead_policy("emea", env={}), default_team="apac")
    assert "apac" not in policy.calendars
    friday_evening = 4 * 24 * 60 + 7 * 60 + 45  # minutes from T0 to Fri 2026-01-09 17:45 in Berlin
    state = lead.apply(None, capture(minutes=friday_evening), T0 + timedelta(minutes=friday_evening), policy).state
    assert state is not None and state.team_id == "apac"
    # 15 business minutes on Friday, 15 on Monday: Mon 09:15 Berlin (08:15 UTC), not Fri 18:15.
    assert state.sla_deadline == T0 + timedelta(days=7, minutes=-45)

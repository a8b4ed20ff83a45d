"""The SLA ladder of a lead nobody holds (queued, or offered and lapsed), end to end through both
state machines: the release to the pool really moves it, and the timeline says what each step did."""
from __future__ import annotations

from typing import Any

import pytest

from rules.capture import CapturedLead, derive_lead_id
from rules.commands import CaptureLead, DispositionLead, LeadAssigned, Notify, PutRep, RepProfile, SlaDue
from rules.lead import LeadPolicy, LeadState, next_timer
from rules.lead_state import OFFER_STEP, Endpoint
from sla.policy import EscalationStep, SlaPolicy
from tests.rules._sim import Bus, events, values

TINY, POOL = "tiny", "pool"
LADDER = SlaPolicy(name="ladder", first_contact_s=60, steps=(
    EscalationStep("remind", 0), EscalationStep("reassign", 15), EscalationStep("alert_manager", 30),
    EscalationStep("release_to_pool", 45)))
MANAGER = Endpoint(url="https://hooks.test/manager", secret="whsec_manager")
POLICY = LeadPolicy(default_team=TINY, sla_policies=(LADDER,), managers={TINY: MANAGER},
                    overflow_teams={TINY: POOL})


def put_rep(bus: Bus, rep_id: str, team: str, capacity: int = 1) -> None:
    profile = RepProfile(rep_id=rep_id, team_id=team, name=rep_id.title(), capacity=capacity,
                         webhook_url=f"https://hooks.test/{rep_id}", webhook_secret=f"whsec_{rep_id}")
    bus.send("rep.commands", rep_id, PutRep(rep_id=rep_id, profile=profile, at=bus.clock.now()))


def capture(bus: Bus, i: int) -> str:
    lead_id = derive_lead_id(email=f"t{i}@example.com", phone=None, source="webform", external_id=None)
    bus.send("lead.commands", lead_id, CaptureLead(
        lead_id=lead_id, capture_id=f"cap-{i}", captured_at=bus.clock.now(),
        lead=CapturedLead(email=f"t{i}@example.com", source="webform")))
    return lead_id


def fire(bus: Bus, lead_id: str) -> tuple[int, list[Any]]:
    """Move the clock to the lead's next deadline and deliver its SlaDue, as the timer loop does."""
    timer = next_timer(bus.leads[lead_id])
    assert timer is not None
    bus.clock.advance(max(0.0, (timer.due_at - bus.clock.now()).total_seconds()))
    return timer.step, bus.send("lead.commands", lead_id, SlaDue(lead_id=lead_id, cycle=timer.cycle,
                                                                 step=timer.step, due_at=timer.due_at))


def fire_until(bus: Bus, lead_id: str, step: int) -> list[Any]:
    """Fire the lead's timers up to and including ``step``; everything sent meanwhile."""
    sent: list[Any] = []
    while True:
        fired, out = fire(bus, lead_id)
        sent += out
        if fired == step:
            return sent


def escalations(state: LeadState) -> dict[int, dict[str, Any]]:
    return {e.detail["step"]: e.detail for e in state.timeline if e.kind == "sla_escalated"}


def dispose(bus: Bus, lead_id: str) -> None:
    bus.send("lead.commands", lead_id, DispositionLead(lead_id=lead_id, status="disqualified", reason=None,
                                                       rep_id=None, at=bus.clock.now()))


@pytest.fixture
def bus() -> Bus:
    bus = Bus(policy=POLICY)
    put_rep(bus, "gus", TINY)
    put_rep(bus, "pat", POOL, capacity=5)
    return bus


def test_a_lead_taken_from_its_rep_and_queued_is_released_to_the_pool(bus: Bus) -> None:
    lead_id = capture(bus, 1)
    assert bus.leads[lead_id].assignment is not None and bus.leads[lead_id].assignment.rep_id == "gus"
    fire_until(bus, lead_id, 2)  # reassign: taken from gus, nobody else in tiny -> queued there
    assert bus.leads[lead_id].routing == "queued" and bus.team(TINY).queue_depth == 1
    sent = fire_until(bus, lead_id, 4)
    state = bus.leads[lead_id]
    assert state.team_id == POOL and state.routing == "assigned"
    assert state.assignment is not None and state.assignment.rep_id == "pat"
    # Out of tiny's queue for good: its count and its entries agree.
    assert bus.team(TINY).queue_depth == 0 and bus.teams[TINY].queue.entries == {}
    (moved,) = [e for e in events(sent, "lead.reassigned") if e["data"]["reason"] == "release_to_pool"]
    assert moved["data"]["team_id"] == POOL and moved["data"]["excluded"] == ["gus"]
    release = escalations(state)[4]
    assert release["action"] == "release_to_pool" and release["outcome"] == "moved"
    (published,) = [e for e in events(sent, "lead.escalated") if e["data"]["step"] == 4]
    assert published["data"]["outcome"] == "moved"


def test_a_lead_queued_from_the_start_is_released_and_never_assigned_in_its_old_team(bus: Bus) -> None:
    first = capture(bus, 1)   # gus (capacity 1) takes it
    second = capture(bus, 2)  # nobody free: queued in tiny
    assert bus.leads[second].routing == "queued"
    fire_until(bus, second, 4)
    state = bus.leads[second]
    assert state.team_id == POOL and state.routing == "assigned"
    assert bus.team(TINY).queue_depth == 0 and bus.teams[TINY].queue.entries == {}
    # gus frees up later: the released lead is not assigned to him as well.
    dispose(bus, first)
    assert [a for a in values(bus.sent, "lead.commands", LeadAssigned)
            if a.lead_id == second and a.team_id == TINY] == []
    assert bus.team(TINY).reps["gus"].load == 0


def test_a_lead_every_rep_let_lapse_is_released_to_the_pool() -> None:
    bus = Bus(policy=LeadPolicy(default_team=TINY, sla_policies=(LADDER,), managers={TINY: MANAGER},
                                overflow_teams={TINY: POOL}, offer_timeouts={TINY: 10.0}))
    for rep_id in ("gus", "hal"):
        put_rep(bus, rep_id, TINY)
    put_rep(bus, "pat", POOL, capacity=5)
    lead_id = capture(bus, 1)
    while bus.leads[lead_id].routing == "offered":
        fire(bus, lead_id)  # nobody answers: each offer lapses
    state = bus.leads[lead_id]
    assert state.routing == "queued" and set(state.declined_by) == {"gus", "hal"}
    # Every rep is free and available, yet none may take it: only the ladder moves it on.
    assert all(rep.load == 0 and rep.presence == "available" for rep in bus.team(TINY).reps.values())
    fire_until(bus, lead_id, 4)
    state = bus.leads[lead_id]
    assert state.team_id == POOL and state.assignment is not None and state.assignment.rep_id == "pat"
    assert bus.team(TINY).queue_depth == 0 and bus.teams[TINY].queue.entries == {}


def test_without_an_overflow_team_a_queued_lead_stays_and_the_timeline_says_so() -> None:
    bus = Bus(policy=LeadPolicy(default_team=TINY, sla_policies=(LADDER,), managers={TINY: MANAGER}))
    put_rep(bus, "gus", TINY)
    capture(bus, 1)
    second = capture(bus, 2)
    fire_until(bus, second, 4)
    state = bus.leads[second]
    assert state.routing == "queued" and state.team_id == TINY and bus.team(TINY).queue_depth == 1
    release = escalations(state)[4]
    assert release["outcome"] == "skipped" and "no overflow team" in release["why"]


def test_the_manager_alert_on_a_waiting_lead_is_sent_and_says_so(bus: Bus) -> None:
    capture(bus, 1)
    second = capture(bus, 2)
    sent = fire_until(bus, second, 3)
    (alert,) = [n for n in values(sent, "notifications", Notify) if n.event_type == "lead.escalated"]
    assert alert.url == MANAGER.url and alert.payload["data"]["routing"] == "queued"
    assert escalations(bus.leads[second])[3]["outcome"] == "sent"


def test_queued_while_every_rep_is_idle_means_every_rep_is_excluded_and_the_pool_takes_them() -> None:
    """The audit's "queue 7, open 0, every rep available and idle" after offers lapsed: each waiting
    lead is one that every rep of the team let lapse (excluded for that lead), not a drain that
    missed a free rep; the release step empties the queue into the pool."""
    slow = SlaPolicy(name="slow", first_contact_s=3600, steps=LADDER.steps)  # offers lapse long before
    bus = Bus(policy=LeadPolicy(default_team=TINY, sla_policies=(slow,), overflow_teams={TINY: POOL},
                                offer_timeouts={TINY: 5.0}))
    reps = ("gus", "hal", "ida")
    for rep_id in reps:
        put_rep(bus, rep_id, TINY)
    put_rep(bus, "pat", POOL, capacity=10)
    leads = [capture(bus, i) for i in range(7)]
    while offered := [lead_id for lead_id in leads if bus.leads[lead_id].routing == "offered"]:
        step, _ = fire(bus, min(offered, key=lambda i: bus.leads[i].offer_expires_at or bus.clock.now()))
        assert step == OFFER_STEP  # nobody answers any offer
    team = bus.team(TINY)
    assert team.queue_depth == 7 and all(rep.load == 0 and rep.presence == "available" for rep in team.reps.values())
    for entry in bus.teams[TINY].queue.entries.values():
        assert set(entry.excluded_reps) == set(reps)
        reasons = {c.rep_id: c.reasons for c in next(
            q for q in values(bus.sent, "lead.commands") if getattr(q, "route_id", None) == entry.route_id
            and type(q).__name__ == "LeadQueued").decision.candidates}
        assert all("excluded for this lead" in " ".join(r) for r in reasons.values()), reasons
    for lead_id in leads:
        fire_until(bus, lead_id, 4)
    assert bus.team(TINY).queue_depth == 0 and bus.teams[TINY].queue.entries == {}
    assert {bus.leads[lead_id].team_id for lead_id in leads} == {POOL}


def test_a_reminder_due_while_queued_waits_and_goes_to_the_rep_who_gets_the_lead(bus: Bus) -> None:
    first = capture(bus, 1)   # gus is full with it
    second = capture(bus, 2)  # queued
    sent = fire_until(bus, second, 1)
    assert [n for n in values(sent, "notifications", Notify) if n.event_type == "lead.reminder"] == []
    remind = escalations(bus.leads[second])[1]
    assert remind["action"] == "remind" and remind["outcome"] == "deferred" and "nobody holds" in remind["why"]
    assert [e["data"]["step"] for e in events(sent, "lead.escalation_deferred")] == [1]
    assert events(sent, "lead.escalated") == []  # published once, when the step is really applied
    # While it waits, the timer skips the deferred reminder (no busy loop) and the ladder goes on.
    timer = next_timer(bus.leads[second])
    assert timer is not None and timer.step == 2
    dispose(bus, first)  # gus frees up and gets the waiting lead
    assert bus.leads[second].routing == "assigned"
    timer = next_timer(bus.leads[second])
    assert timer is not None and timer.step == 1  # the deferred reminder, due at once
    step, sent = fire(bus, second)
    (reminder,) = [n for n in values(sent, "notifications", Notify) if n.event_type == "lead.reminder"]
    assert reminder.rep_id == "gus" and reminder.payload["data"]["step"] == 1
    remind = escalations(bus.leads[second])[1]
    assert remind["outcome"] == "sent" and remind["rep_id"] == "gus" and remind["deferred_s"] > 0
    (published,) = events(sent, "lead.escalated")
    assert published["data"]["action"] == "remind" and published["data"]["outcome"] == "sent"
    state = bus.leads[second]
    assert state.sla is not None and 1 in state.sla.done and state.sla.deferred == ()
    # Once sent, never again.
    again = bus.send("lead.commands", second, SlaDue(lead_id=second, cycle=1, step=1, due_at=bus.clock.now()))
    assert values(again[1:], "notifications") == []


def test_a_deferred_reminder_fires_once_however_often_its_timer_comes(bus: Bus) -> None:
    capture(bus, 1)
    second = capture(bus, 2)
    fire_until(bus, second, 1)
    before = bus.leads[second]
    again = bus.send("lead.commands", second, SlaDue(lead_id=second, cycle=1, step=1, due_at=bus.clock.now()))
    assert again[1:] == [] and bus.leads[second].timeline == before.timeline


def test_a_reassign_step_on_a_queued_lead_says_it_did_nothing(bus: Bus) -> None:
    capture(bus, 1)
    second = capture(bus, 2)
    sent = fire_until(bus, second, 2)
    assert [v for v in values(sent, "team.commands") if v.lead_id == second] == []
    reassign = escalations(bus.leads[second])[2]
    assert reassign["outcome"] == "skipped" and "waits in tiny's queue" in reassign["why"]
    (published,) = [e for e in events(sent, "lead.escalated") if e["data"]["step"] == 2]
    assert published["data"]["outcome"] == "skipped"


def test_a_reassign_step_takes_an_open_offer_to_the_next_rep() -> None:
    bus = Bus(policy=LeadPolicy(default_team=TINY, sla_policies=(LADDER,), overflow_teams={TINY: POOL},
                                offer_timeouts={TINY: 3600.0}))  # nobody answers, and the offer outlives the SLA
    for rep_id in ("gus", "hal"):
        put_rep(bus, rep_id, TINY)
    lead_id = capture(bus, 1)
    first = bus.leads[lead_id].assignment
    assert bus.leads[lead_id].routing == "offered" and first is not None
    sent = fire_until(bus, lead_id, 2)
    state = bus.leads[lead_id]
    assert state.routing == "offered" and state.assignment is not None and state.assignment.rep_id != first.rep_id
    (told,) = [n for n in values(sent, "notifications", Notify) if n.event_type == "lead.reassigned"]
    assert told.rep_id == first.rep_id and told.payload["data"]["reason"] == "reassign"
    assert escalations(state)[2]["outcome"] == "moved" and escalations(state)[2]["from_rep"] == first.rep_id
    assert bus.team(TINY).reps[first.rep_id].load == 0

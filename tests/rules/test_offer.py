"""The offer handshake and the queue overflow, end to end through both state machines (pure)."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rules.capture import CapturedLead, derive_lead_id
from rules.commands import (
    AnswerOffer,
    CaptureLead,
    LeadAssigned,
    Notify,
    PutRep,
    ReleaseLead,
    RepProfile,
    RouteLead,
    SlaDue,
)
from rules.lead import LeadPolicy, LeadState, next_timer
from rules.lead_offer import offer_problem
from rules.lead_state import OFFER_STEP, OVERFLOW_STEP, why_excluded
from tests.rules._sim import Bus, events, values

TEAM, OVERFLOW = "inbound", "overflow"
POLICY = LeadPolicy(default_team=TEAM, offer_timeouts={TEAM: 30.0},
                    overflow_teams={TEAM: OVERFLOW}, overflow_after={TEAM: 120.0})


def put_rep(bus: Bus, rep_id: str, team: str = TEAM, capacity: int = 1) -> None:
    profile = RepProfile(rep_id=rep_id, team_id=team, name=rep_id.title(), capacity=capacity,
                         webhook_url=f"https://hooks.test/{rep_id}", webhook_secret=f"whsec_{rep_id}")
    bus.send("rep.commands", rep_id, PutRep(rep_id=rep_id, profile=profile, at=bus.clock.now()))


def capture(bus: Bus, i: int = 1) -> str:
    lead_id = derive_lead_id(email=f"p{i}@example.com", phone=None, source="webform", external_id=None)
    bus.send("lead.commands", lead_id, CaptureLead(
        lead_id=lead_id, capture_id=f"cap-{i}", captured_at=bus.clock.now(),
        lead=CapturedLead(email=f"p{i}@example.com", source="webform")))
    return lead_id


def answer(bus: Bus, lead_id: str, *, accepted: bool, rep_id: str | None = None, reason: str | None = None) -> list:
    state = bus.leads[lead_id]
    assert state.assignment is not None
    command = AnswerOffer(lead_id=lead_id, rep_id=rep_id or state.assignment.rep_id,
                          route_id=state.assignment.route_id, accepted=accepted, reason=reason, at=bus.clock.now())
    return bus.send("lead.commands", lead_id, command)


def fire_timer(bus: Bus, lead_id: str) -> list:
    """Move the clock to the lead's next deadline and deliver its SlaDue, as the timer loop does."""
    timer = next_timer(bus.leads[lead_id])
    assert timer is not None
    bus.clock.advance(max(0.0, (timer.due_at - bus.clock.now()).total_seconds()))
    return bus.send("lead.commands", lead_id, SlaDue(lead_id=lead_id, cycle=timer.cycle, step=timer.step,
                                                     due_at=timer.due_at))


@pytest.fixture
def bus() -> Bus:
    bus = Bus(policy=POLICY)
    for rep_id in ("rep-a", "rep-b", "rep-c"):
        put_rep(bus, rep_id)
    return bus


def lead(bus: Bus, lead_id: str) -> LeadState:
    return bus.leads[lead_id]


def test_an_offer_holds_the_rep_and_asks_for_an_answer(bus: Bus) -> None:
    lead_id = capture(bus)
    state = lead(bus, lead_id)
    assert state.routing == "offered" and state.assignment is not None
    rep_id = state.assignment.rep_id
    assert bus.team(TEAM).reps[rep_id].load == 1  # capacity is taken while the offer is open
    (notice,) = values(bus.sent, "notifications", Notify)
    assert notice.event_type == "lead.offered" and notice.rep_id == rep_id
    offer = notice.payload["data"]["offer"]
    offered_at = next(e.at for e in state.timeline if e.kind == "offered")
    assert offer["expires_at"] == state.offer_expires_at == offered_at + timedelta(seconds=30)
    assert offer["accept"] == f"/v1/leads/{lead_id}/accept"
    assert events(bus.sent, "lead.offered") and not events(bus.sent, "lead.assigned")
    timer = next_timer(state)
    assert timer is not None and (timer.step, timer.due_at) == (OFFER_STEP, state.offer_expires_at)


def test_accepting_makes_the_lead_assigned(bus: Bus) -> None:
    lead_id = capture(bus)
    rep_id = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    sent = answer(bus, lead_id, accepted=True)
    state = lead(bus, lead_id)
    assert state.routing == "assigned" and state.assignment.rep_id == rep_id  # type: ignore[union-attr]
    (assigned,) = events(sent, "lead.assigned")
    assert assigned["data"]["accepted"] is True and assigned["data"]["routing_seconds"] > 0
    assert values(sent, "team.commands") == []  # nothing to release, nothing re-routed
    # The offer timer is gone; the SLA timer goes on.
    timer = next_timer(state)
    assert timer is None or timer.step >= 0
    # A late timer for the old offer changes nothing.
    assert bus.send("lead.commands", lead_id, SlaDue(lead_id=lead_id, cycle=1, step=OFFER_STEP,
                                                     due_at=bus.clock.now() + timedelta(hours=1)))[1:] == []
    assert lead(bus, lead_id).routing == "assigned"


def test_a_decline_goes_to_the_next_rep_never_back_to_the_decliner(bus: Bus) -> None:
    lead_id = capture(bus)
    first = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    sent = answer(bus, lead_id, accepted=False, reason="wrong language")
    state = lead(bus, lead_id)
    assert state.routing == "offered" and state.declined_by == (first,)
    second = state.assignment.rep_id  # type: ignore[union-attr]
    assert second != first and bus.team(TEAM).reps[first].load == 0
    (reassigned,) = events(sent, "lead.reassigned")
    assert reassigned["data"]["reason"] == f"declined by {first}: wrong language"
    assert first in values(sent, "team.commands", RouteLead)[0].excluded_reps
    answer(bus, lead_id, accepted=False)
    third = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    assert third not in (first, second)
    # Everybody declined: the lead waits in the queue (the SLA ladder escalates it from there).
    answer(bus, lead_id, accepted=False)
    state = lead(bus, lead_id)
    assert state.routing == "queued" and set(state.declined_by) == {"rep-a", "rep-b", "rep-c"}
    assert all(rep.load == 0 for rep in bus.team(TEAM).reps.values())
    # The queued entry says what "excluded" means for each rep: the team does not know, the lead does.
    (queued,) = [e for e in state.timeline if e.kind == "queued"]
    assert {c["rep_id"]: c["reasons"] for c in queued.detail["decision"]["candidates"]} == {
        rep_id: ["excluded for this lead: declined the offer"] for rep_id in ("rep-a", "rep-b", "rep-c")}


def test_the_queued_entry_tells_a_lapsed_offer_from_a_declined_one(bus: Bus) -> None:
    lead_id = capture(bus)
    lapsed = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    fire_timer(bus, lead_id)
    answer(bus, lead_id, accepted=False, reason="no German")
    answer(bus, lead_id, accepted=False)
    (queued,) = [e for e in lead(bus, lead_id).timeline if e.kind == "queued"]
    reasons = {c["rep_id"]: c["reasons"] for c in queued.detail["decision"]["candidates"]}
    assert reasons[lapsed] == ["excluded for this lead: let the offer lapse"]
    assert sorted(r for rep_id, r in reasons.items() if rep_id != lapsed) == [
        ["excluded for this lead: declined the offer"]] * 2


def test_an_offer_that_lapses_goes_to_the_next_rep_and_the_first_is_told(bus: Bus) -> None:
    lead_id = capture(bus)
    first = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    sent = fire_timer(bus, lead_id)
    state = lead(bus, lead_id)
    assert state.routing == "offered" and state.assignment.rep_id != first  # type: ignore[union-attr]
    told = [n for n in values(sent, "notifications", Notify) if n.rep_id == first]
    assert [n.event_type for n in told] == ["lead.reassigned"] and told[0].payload["data"]["reason"] == "offer_expired"
    assert [e["type"] for e in values(sent, "lead.events")][:1] == ["lead.reassigned"]
    # The same expiry delivered again (a replay after a crash) changes nothing.
    before = lead(bus, lead_id)
    replay = SlaDue(lead_id=lead_id, cycle=1, step=OFFER_STEP, due_at=bus.clock.now())
    assert bus.send("lead.commands", lead_id, replay)[1:] == [] and lead(bus, lead_id) == before


def test_offers_the_rep_never_took_leave_their_caps_and_an_accepted_one_stays(bus: Bus) -> None:
    """Caps count the leads a rep took: a decline or a lapse gives the day's and week's count back."""
    lead_id = capture(bus)
    first = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    assert bus.team(TEAM).reps[first].day_count == 1  # counted while the offer is open
    (release,) = values(answer(bus, lead_id, accepted=False), "team.commands", ReleaseLead)
    assert release.returned is True
    second = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    (lapsed,) = values(fire_timer(bus, lead_id), "team.commands", ReleaseLead)
    assert lapsed.returned is True and lapsed.rep_id == second
    third = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    answer(bus, lead_id, accepted=True)
    counts = {rep_id: (rep.day_count, rep.week_count) for rep_id, rep in bus.team(TEAM).reps.items()}
    assert counts == {first: (0, 0), second: (0, 0), third: (1, 1)}


def test_an_answer_from_someone_else_or_for_an_old_offer_changes_nothing(bus: Bus) -> None:
    lead_id = capture(bus)
    holder = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    other = next(r for r in ("rep-a", "rep-b", "rep-c") if r != holder)
    assert offer_problem(lead(bus, lead_id), other) == f"the lead is offered to another rep, not {other}"
    assert offer_problem(lead(bus, lead_id), holder) is None
    before = lead(bus, lead_id)
    sent = answer(bus, lead_id, accepted=True, rep_id=other)
    # The offer is untouched; the refused answer is recorded, with why.
    assert [m.value["type"] for m in sent[1:]] == ["lead.offer_answer_rejected"]
    after = lead(bus, lead_id)
    assert (after.routing, after.assignment) == (before.routing, before.assignment)
    assert after.timeline[-1].detail["why"] == f"the offer is to {holder}, not {other}"
    answer(bus, lead_id, accepted=True)
    assert offer_problem(lead(bus, lead_id), holder) == "the lead has no open offer (it is assigned)"
    assert offer_problem(None, holder) == "no such lead"


def test_a_lead_waiting_too_long_overflows_to_the_overflow_team() -> None:
    bus = Bus(policy=POLICY)
    put_rep(bus, "rep-a")  # one rep, busy with the first lead
    put_rep(bus, "rep-z", team=OVERFLOW)
    first = capture(bus, 1)
    answer(bus, first, accepted=True)
    waiting = capture(bus, 2)
    state = lead(bus, waiting)
    assert state.routing == "queued" and state.overflow_at is not None
    timer = next_timer(state)
    assert timer is not None and timer.step == OVERFLOW_STEP
    sent = fire_timer(bus, waiting)
    state = lead(bus, waiting)
    # Out of the first team's queue, offered in the overflow team (which has no handshake).
    assert bus.team(TEAM).queue_depth == 0 and bus.teams[TEAM].queue.entries == {}
    assert state.team_id == OVERFLOW and state.routing == "assigned"
    assert state.assignment is not None and state.assignment.rep_id == "rep-z"
    (moved,) = events(sent, "lead.reassigned")
    assert moved["data"]["from_team"] == TEAM and moved["data"]["team_id"] == OVERFLOW
    assert "overflow to overflow" in moved["data"]["reason"]
    # rep-a frees up later: the withdrawn lead is not assigned to them too.
    bus.send("lead.commands", first, _dispose(bus, first))
    assert [a for a in values(bus.sent, "lead.commands", LeadAssigned) if a.lead_id == waiting and a.team_id == TEAM] == []
    assert bus.team(TEAM).reps["rep-a"].load == 0


def test_a_lead_assigned_before_its_overflow_deadline_stays() -> None:
    bus = Bus(policy=POLICY)
    put_rep(bus, "rep-a")
    first = capture(bus, 1)
    answer(bus, first, accepted=True)
    waiting = capture(bus, 2)
    bus.send("lead.commands", first, _dispose(bus, first))
    assert lead(bus, waiting).routing == "offered" and lead(bus, waiting).overflow_at is None
    stale = SlaDue(lead_id=waiting, cycle=1, step=OVERFLOW_STEP, due_at=bus.clock.now() + timedelta(hours=1))
    bus.clock.advance(3600)
    assert bus.send("lead.commands", waiting, stale)[1:] == []
    assert lead(bus, waiting).team_id == TEAM


def _dispose(bus: Bus, lead_id: str) -> object:
    from rules.commands import DispositionLead
    return DispositionLead(lead_id=lead_id, status="disqualified", reason=None, rep_id=None, at=bus.clock.now())


# --- a dead-lettered lead.offered: the rep cannot know of the offer --------------------------


def dead_letter(bus: Bus, lead_id: str, notice: Notify) -> list:
    from rules.commands import RecordDelivery

    return bus.send("lead.commands", lead_id, RecordDelivery(
        lead_id=lead_id, webhook_id=notice.webhook_id, event_type=notice.event_type, rep_id=notice.rep_id,
        delivered=False, attempts=1, status=410, error="endpoint gone (410)", at=bus.clock.now(),
        dead_lettered=True))


def test_a_dead_lettered_offer_is_withdrawn_at_once_and_the_rep_set_offline(bus: Bus) -> None:
    lead_id = capture(bus)
    (notice,) = values(bus.sent, "notifications", Notify)
    first = notice.rep_id
    assert notice.event_type == "lead.offered" and first is not None
    sent = dead_letter(bus, lead_id, notice)  # no time passes: well before the offer expires
    state = lead(bus, lead_id)
    assert state.routing == "offered" and state.assignment is not None and state.assignment.rep_id != first
    reassigned = [e for e in state.timeline if e.kind == "reassigned"][-1]
    assert (reassigned.detail["from_rep"], reassigned.detail["reason"]) == (first, "unreachable")
    assert reassigned.detail["offer_withdrawn"] is True
    (published,) = events(sent, "lead.reassigned")
    assert published["data"]["rep_set_offline"] is True and first in published["data"]["excluded"]
    rep = bus.team(TEAM).reps[first]
    assert (rep.presence, rep.load) == ("offline", 0)  # the offer's capacity is back, and no new offers
    assert (rep.day_count, rep.week_count) == (0, 0)  # an offer they never received is not in their caps
    # The next lead is never offered to the unreachable rep.
    second = capture(bus, 2)
    assert lead(bus, second).assignment is not None and lead(bus, second).assignment.rep_id != first  # type: ignore[union-attr]


def test_the_queued_entry_names_a_rep_the_lead_was_taken_from(bus: Bus) -> None:
    lead_id = capture(bus)
    (notice,) = values(bus.sent, "notifications", Notify)
    dead_letter(bus, lead_id, notice)  # taken from the unreachable rep
    answer(bus, lead_id, accepted=False)
    answer(bus, lead_id, accepted=False)
    state = lead(bus, lead_id)
    (queued,) = [e for e in state.timeline if e.kind == "queued"]
    reasons = {c["rep_id"]: c["reasons"] for c in queued.detail["decision"]["candidates"]}
    assert reasons[notice.rep_id] == ["presence is offline", "excluded for this lead: had the lead (reassigned: unreachable)"]
    # Beyond what the timeline keeps, the lead still knows who declined and who had the lead.
    forgotten = why_excluded(replace(state, timeline=()))
    assert forgotten[notice.rep_id] == "had the lead"
    assert {v for k, v in forgotten.items() if k != notice.rep_id} == {"declined the offer or let it lapse"}


def test_a_dead_lettered_offer_after_the_rep_accepted_keeps_the_lead(bus: Bus) -> None:
    """They accepted: they saw the offer somehow (a retry that got through late, another channel)."""
    lead_id = capture(bus)
    (notice,) = values(bus.sent, "notifications", Notify)
    answer(bus, lead_id, accepted=True)
    sent = dead_letter(bus, lead_id, notice)
    assert lead(bus, lead_id).routing == "assigned" and not events(sent, "lead.reassigned")


# --- two answers at once: the first to reach the lead counts, the other is recorded ----------


def answers_at_once(bus: Bus, lead_id: str, *first_then_second: bool) -> list:
    """Both answers made from the same state (both passed the API's check), then delivered."""
    from rules.commands import Outgoing

    state = bus.leads[lead_id]
    assert state.assignment is not None
    made = [Outgoing(channel="lead.commands", key=lead_id, value=AnswerOffer(
        lead_id=lead_id, rep_id=state.assignment.rep_id, route_id=state.assignment.route_id, accepted=accepted,
        reason=None if accepted else "x", at=bus.clock.now())) for accepted in first_then_second]
    return bus.put(*made)


def test_an_accept_that_loses_the_race_to_a_decline_is_recorded_not_dropped(bus: Bus) -> None:
    lead_id = capture(bus)
    zoe = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    sent = answers_at_once(bus, lead_id, False, True)  # the decline reaches the lead first
    state = lead(bus, lead_id)
    assert state.routing == "offered" and state.assignment is not None and state.assignment.rep_id != zoe
    (rejected,) = events(sent, "lead.offer_answer_rejected")
    assert (rejected["data"]["rep_id"], rejected["data"]["answer"]) == (zoe, "accept")
    why = rejected["data"]["why"]
    assert why.startswith(f"the offer to {zoe} is gone: declined by {zoe}: x")
    assert why.endswith("; the lead is being routed again now")  # its next offer was not made yet
    entry = next(e for e in state.timeline if e.kind == "offer_answer_rejected")
    assert entry.detail["why"] == why and entry.detail["answer"] == "accept"


def test_a_decline_that_loses_the_race_to_an_accept_is_recorded(bus: Bus) -> None:
    lead_id = capture(bus)
    zoe = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    sent = answers_at_once(bus, lead_id, True, False)
    state = lead(bus, lead_id)
    assert state.routing == "assigned" and state.assignment is not None and state.assignment.rep_id == zoe
    (rejected,) = events(sent, "lead.offer_answer_rejected")
    assert (rejected["data"]["answer"], rejected["data"]["why"]) == ("decline", f"{zoe} already accepted the offer")


def test_an_accept_arriving_as_the_offer_lapses_is_recorded(bus: Bus) -> None:
    lead_id = capture(bus)
    zoe = lead(bus, lead_id).assignment.rep_id  # type: ignore[union-attr]
    route_id = lead(bus, lead_id).assignment.route_id  # type: ignore[union-attr]
    fire_timer(bus, lead_id)  # the offer lapses first
    late = AnswerOffer(lead_id=lead_id, rep_id=zoe, route_id=route_id, accepted=True, at=bus.clock.now())
    sent = bus.send("lead.commands", lead_id, late)
    (rejected,) = events(sent, "lead.offer_answer_rejected")
    assert rejected["data"]["why"].startswith(f"the offer to {zoe} is gone: offer to {zoe} not accepted in time")
    # The same late answer again (a replay) is recorded once.
    assert bus.send("lead.commands", lead_id, late)[1:] == []
    # A replayed accept of an offer already accepted, and a replayed decline, change nothing.
    other = capture(bus, 2)
    answer(bus, other, accepted=True)
    before = lead(bus, other)
    assert answer(bus, other, accepted=True)[1:] == [] and lead(bus, other) == before

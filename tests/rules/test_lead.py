"""The lead state machine on its own: capture, merge, routing handshake, delivery, disposition."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rules import lead
from rules.capture import CapturedLead, attribute, derive_lead_id
from rules.commands import (
    Candidate,
    CaptureLead,
    DispositionLead,
    KeepAssignment,
    LeadAssigned,
    LeadQueued,
    Notify,
    RecordDelivery,
    ReleaseLead,
    RouteLead,
    RoutingDecision,
    WithdrawLead,
)
from rules.lead import MAX_LEAD_ATTRIBUTES, LeadPolicy, LeadState, can_disposition, webhook_id_for
from rules.routing import TeamRule
from rules.scoring import ScoringModel
from sla.policy import DEFAULT_POLICY
from tests.rules._sim import T0

POLICY = LeadPolicy(default_team="inbound")
LEAD_ID = derive_lead_id(email="ada@example.com", phone=None, source="webform", external_id=None)


def capture(capture_id: str = "cap-1", *, minutes: int = 0, **fields: object) -> CaptureLead:
    data: dict[str, object] = {"email": "ada@example.com", "source": "webform", **fields}
    return CaptureLead(lead_id=LEAD_ID, capture_id=capture_id, captured_at=T0 + timedelta(minutes=minutes),
                       lead=CapturedLead(**data))  # type: ignore[arg-type]


def decision(winner: str | None = "rep-a") -> RoutingDecision:
    return RoutingDecision(team_id="inbound", strategy="weighted_round_robin", candidates=(), winner=winner,
                           reason="weighted round robin", decided_at=T0)


def assigned(route_id: str = f"{LEAD_ID}:1:1", rep_id: str = "rep-a", *, url: str | None = "https://x.test/a",
             secret: str | None = "whsec_a") -> LeadAssigned:
    return LeadAssigned(lead_id=LEAD_ID, route_id=route_id, team_id="inbound", rep_id=rep_id, rep_name=rep_id.upper(),
                        webhook_url=url, webhook_secret=secret, decision=decision(rep_id),
                        assigned_at=T0 + timedelta(seconds=5))


def queued(route_id: str = f"{LEAD_ID}:1:1") -> LeadQueued:
    return LeadQueued(lead_id=LEAD_ID, route_id=route_id, team_id="inbound", depth=3, decision=decision(None),
                      queued_at=T0 + timedelta(seconds=5))


def dispose(status: str = "disqualified") -> DispositionLead:
    return DispositionLead(lead_id=LEAD_ID, status=status, reason="no budget", rep_id="rep-a", at=T0)


def run(*commands: object, policy: LeadPolicy = POLICY) -> tuple[LeadState | None, list[lead.Outgoing]]:
    """Apply commands in order; return the final state and the last transition's outgoing."""
    state: LeadState | None = None
    outgoing: tuple[lead.Outgoing, ...] = ()
    for command in commands:
        transition = lead.apply(state, command, T0 + timedelta(minutes=1), policy)  # type: ignore[arg-type]
        state, outgoing = transition.state, transition.outgoing
    return state, list(outgoing)


# --- capture --------------------------------------------------------------------------


def test_first_capture_opens_a_lead_and_asks_for_routing() -> None:
    state, out = run(capture())
    assert state is not None
    assert (state.cycle, state.status, state.routing, state.team_id) == (1, "new", "routing", "inbound")
    assert state.route_id == f"{LEAD_ID}:1:1"
    assert state.recent_captures == ("cap-1",)
    assert [m.channel for m in out] == ["lead.events", "lead.events", "team.commands"]
    assert [m.value["type"] for m in out[:2]] == ["lead.captured", "lead.scored"]
    assert out[2].key == "inbound"
    assert out[2].value == RouteLead(team_id="inbound", lead_id=LEAD_ID, route_id=state.route_id, requested_at=T0)


def test_capture_picks_the_team_by_the_policy_rules() -> None:
    policy = LeadPolicy(default_team="inbound", team_rules=(TeamRule(team="emea", countries=("DE",)),))
    state, out = run(capture(country="DE"), policy=policy)
    assert state is not None and state.team_id == "emea"
    assert out[-1].key == "emea"


@pytest.mark.parametrize("routing", ["routing", "queued", "assigned"])
def test_replayed_capture_changes_nothing(routing: str) -> None:
    steps: dict[str, tuple[object, ...]] = {"routing": (), "queued": (queued(),), "assigned": (assigned(),)}
    before, _ = run(capture(), *steps[routing])
    state, out = run(capture(), *steps[routing], capture())
    assert state == before
    # Only a lead still waiting for its first answer re-asks for routing (the first send may be lost).
    assert [type(m.value) for m in out] == ([RouteLead] if routing == "routing" else [])


def test_new_touch_of_an_open_lead_merges_without_rerouting() -> None:
    state, out = run(capture(company="Analytical Engines"), assigned(),
                     capture("cap-2", minutes=5, source="ads", title="CTO", company=None))
    assert state is not None
    assert (state.touches, state.cycle, state.routing) == (2, 1, "assigned")
    assert state.lead.company == "Analytical Engines"  # a sparser touch never erases
    assert state.lead.title == "CTO"
    assert state.first_touch.capture_id == "cap-1" and state.last_touch.capture_id == "cap-2"
    # The public event, and the owner is told: no RouteLead, no second assignment.
    event, told = (m.value for m in out)
    assert event["type"] == "lead.touched"
    assert isinstance(told, Notify) and told.event_type == "lead.touched" and told.rep_id == "rep-a"
    assert told.payload["data"]["touch"]["source"] == "ads" and told.payload["data"]["touches"] == 2


def test_a_touch_of_a_queued_lead_tells_nobody() -> None:
    state, out = run(capture(), queued(), capture("cap-2", minutes=5, title="CTO"))
    assert state is not None and state.touches == 2
    assert [m.value["type"] for m in out] == ["lead.touched"]


def test_capture_after_disposition_reopens_a_new_cycle() -> None:
    state, out = run(capture(), assigned(), dispose(), capture("cap-2", minutes=60))
    assert state is not None
    assert (state.cycle, state.routing, state.status, state.route_id) == (2, "routing", "new", f"{LEAD_ID}:2:1")
    # A new cycle plans a new SLA from its own capture (60 minutes later here).
    assert state.assignment is None and state.sla_deadline == T0 + timedelta(minutes=60, seconds=DEFAULT_POLICY.first_contact_s)
    assert state.first_touch.capture_id == "cap-1"
    assert [m.value["type"] if m.channel == "lead.events" else type(m.value) for m in out] == [
        "lead.reopened", "lead.scored", RouteLead]


@pytest.mark.parametrize("limit", [1, 2, 3, 32])
def test_recent_captures_stay_bounded_across_cycles(limit: int) -> None:
    policy = LeadPolicy(recent_capture_limit=limit)
    commands: list[object] = []
    for i in range(6):
        commands += [capture(f"cap-{i}", minutes=i), dispose()]
    state, _ = run(*commands, policy=policy)
    assert state is not None
    assert state.recent_captures == tuple(f"cap-{i}" for i in range(6))[-limit:]


# --- another name behind the same key ---------------------------------------------------------

PHONE = "+16502530000"
PHONE_ID = derive_lead_id(email=None, phone=PHONE, source="event_scan", external_id=None)


def by_phone(capture_id: str, minutes: int, **fields: object) -> CaptureLead:
    return CaptureLead(lead_id=PHONE_ID, capture_id=capture_id, captured_at=T0 + timedelta(minutes=minutes),
                       lead=CapturedLead(phone=PHONE, **fields))  # type: ignore[arg-type]


def test_a_touch_with_another_persons_name_does_not_rename_the_lead() -> None:
    # A second person behind the same phone (a switchboard without extension, a household line).
    state, out = run(by_phone("c1", 0, first_name="Ana", last_name="Ruiz", source="event_scan"),
                     replace(assigned(route_id=f"{PHONE_ID}:1:1"), lead_id=PHONE_ID),
                     by_phone("c2", 5, first_name="Bob", last_name="Stone", source="callback", company="Stone & Co"))
    assert state is not None
    assert (state.lead.first_name, state.lead.last_name) == ("Ana", "Ruiz")
    assert state.lead.company == "Stone & Co"  # other fields still take the newer value
    (touched,) = [e for e in state.timeline if e.kind == "touched"]
    assert touched.detail["name_as_captured"] == "Bob Stone"
    event, told = (m.value for m in out)
    assert event["type"] == "lead.touched" and event["data"]["name_as_captured"] == "Bob Stone"
    # The rep is told on the touch, beside the name the lead keeps.
    assert isinstance(told, Notify) and told.payload["data"]["touch"]["name_as_captured"] == "Bob Stone"
    assert told.payload["data"]["lead"]["first_name"] == "Ana"


def test_a_closed_lead_reopened_under_another_name_keeps_its_name() -> None:
    state, out = run(by_phone("c1", 0, first_name="Ana", last_name="Ruiz", source="event_scan"), dispose(),
                     by_phone("c2", 60, first_name="Bob", source="callback"))
    assert state is not None and state.cycle == 2 and state.lead.first_name == "Ana"
    assert out[0].value["type"] == "lead.reopened" and out[0].value["data"]["name_as_captured"] == "Bob"


@pytest.mark.parametrize(("before", "after", "kept"), [
    ({}, {"first_name": "Ana", "last_name": "Ruiz"}, ("Ana", "Ruiz")),                        # filled in
    ({"first_name": "Ana"}, {"first_name": "Ana", "last_name": "Ruiz"}, ("Ana", "Ruiz")),     # completed
    ({"first_name": "Ana", "last_name": "Ruiz"}, {"first_name": "ANA"}, ("ANA", "Ruiz")),      # the same name
    ({"first_name": "Maria"}, {"first_name": "María", "last_name": "López"}, ("María", "López")),  # accents
])
def test_the_same_name_or_a_missing_one_is_taken_without_a_flag(
        before: dict[str, str], after: dict[str, str], kept: tuple[str, str]) -> None:
    state, out = run(capture(**before), assigned(), capture("cap-2", minutes=1, title="CTO", **after))
    assert state is not None and (state.lead.first_name, state.lead.last_name) == kept
    assert not [e for e in state.timeline if "name_as_captured" in e.detail]
    assert "name_as_captured" not in out[-1].value.payload["data"]["touch"]


@pytest.mark.parametrize(("before", "after"), [
    # Review s16-b L1: the API sends first and last name, a form's full_name is split at its first space.
    ({"first_name": "Ana María", "last_name": "García"}, {"first_name": "Ana", "last_name": "María García"}),
    ({"first_name": "Ana", "last_name": "María García"}, {"first_name": "ANA  MARIA", "last_name": "garcia"}),
    ({"first_name": "Ana María García"}, {"first_name": "Ana", "last_name": "María García"}),
])
def test_the_same_full_name_split_otherwise_is_the_same_name(before: dict[str, str], after: dict[str, str]) -> None:
    state, out = run(capture(**before), assigned(), capture("cap-2", minutes=1, title="CTO", channel="form", **after))
    assert state is not None
    assert (state.lead.first_name, state.lead.last_name) == (before["first_name"], before.get("last_name"))
    assert not [e for e in state.timeline if "name_as_captured" in e.detail]
    assert "name_as_captured" not in out[-1].value.payload["data"]["touch"]


def test_another_full_name_split_otherwise_is_still_another_name() -> None:
    state, out = run(capture(first_name="Ana María", last_name="García"), assigned(),
                     capture("cap-2", minutes=1, title="CTO", first_name="Ana", last_name="María Ruiz"))
    assert state is not None and (state.lead.first_name, state.lead.last_name) == ("Ana María", "García")
    assert out[-1].value.payload["data"]["touch"]["name_as_captured"] == "Ana María Ruiz"


# --- resubmissions -------------------------------------------------------------------------


def test_an_identical_resubmission_within_minutes_adds_no_repeat_touch_points() -> None:
    # A double-submitted form (the same content, seconds apart) is not a buying signal.
    one, _ = run(capture(first_name="Dee", channel="form"))
    four, _ = run(*(capture(f"cap-{i}", first_name="Dee", channel="form") for i in range(4)))
    assert one is not None and four is not None and one.score is not None and four.score is not None
    assert (four.touches, four.score.value, four.score.tier) == (1, one.score.value, one.score.tier)


def test_a_resubmission_tells_the_owner_nothing_and_shows_once_on_the_timeline() -> None:
    state, out = run(capture(), assigned(), *(capture(f"cap-{i}", minutes=i) for i in range(2, 5)))
    assert state is not None and out == []  # no lead.touched event, no webhook, no score
    assert (state.touches, state.last_touch.capture_id) == (1, "cap-1")
    entry = state.timeline[-1]
    assert (entry.kind, entry.detail["count"], entry.detail["of"]) == ("resubmitted", 3, "cap-1")
    assert entry.detail["last_captured_at"] == T0 + timedelta(minutes=4)
    assert [e.kind for e in state.timeline].count("resubmitted") == 1
    # Its capture id is known: a replay of it is one, not a second resubmission.
    again, out = run(capture(), assigned(), *(capture(f"cap-{i}", minutes=i) for i in range(2, 5)), capture("cap-3"))
    assert again == state and out == []


@pytest.mark.parametrize(("minutes", "changed"), [
    (11, {}),                              # the same content, later: the person is back
    (1, {"campaign": "spring"}),           # another campaign
    (1, {"source": "ads"}),                # another source
    (1, {"message": "call me today"}),     # anything else said
])
def test_a_touch_that_is_not_a_resubmission_counts(minutes: int, changed: dict[str, object]) -> None:
    state, out = run(capture(), assigned(), capture("cap-2", minutes=minutes, **changed))
    assert state is not None and state.touches == 2
    assert [m.value["type"] if m.channel == "lead.events" else m.value.event_type for m in out
            ] == ["lead.touched", "lead.touched"]


def test_the_window_runs_from_the_last_counted_touch() -> None:
    # Resubmitted every 6 minutes: counted again once 10 minutes have passed since the last touch
    # (at 12 and 24), not pushed out for ever by the resubmissions in between (6 and 18).
    state, _ = run(capture(), *(capture(f"cap-{i}", minutes=6 * i) for i in range(1, 5)))
    assert state is not None
    assert (state.touches, state.last_touch.capture_id) == (3, "cap-4")


def test_a_resubmission_of_a_closed_lead_reopens_it() -> None:
    # Not a touch of an open lead: a rep closed it, and the person asked again.
    state, _ = run(capture(), assigned(), dispose(), capture("cap-2", minutes=1))
    assert state is not None and (state.cycle, state.routing) == (2, "routing")


# The MQL gate at 30: a "Manager" form scores 22 and is nurtured; two more touches (4 points each) cross it.
NURTURING = LeadPolicy(default_team="inbound", scoring=ScoringModel(mql_threshold=30))


def test_a_resubmission_of_a_nurtured_lead_is_no_touch() -> None:
    # Review s16-b H2: a lead the gate nurtured is released, and each identical post 1 s apart
    # reopened it (a new cycle, one more touch): the third crossed the gate and was routed.
    state: LeadState | None = None
    for i in range(3):
        post = replace(capture(f"cap-{i}", title="Manager", channel="form"), captured_at=T0 + timedelta(seconds=i))
        transition = lead.apply(state, post, T0 + timedelta(seconds=i), NURTURING)
        state = transition.state
        assert i == 0 or transition.outgoing == ()  # no lead.reopened, no score, no RouteLead
    assert state is not None and state.score is not None
    assert (state.cycle, state.touches, state.status, state.routing, state.score.value) == (
        1, 1, "nurture", "released", 22)
    entry = state.timeline[-1]
    assert (entry.kind, entry.detail["count"], entry.detail["of"]) == ("resubmitted", 2, "cap-0")


@pytest.mark.parametrize("status", ["disqualified", "nurture"])
def test_the_same_content_after_a_reps_disposition_reopens_the_lead(status: str) -> None:
    # A decision taken after the touch, even within minutes and even to nurture (unlike the gate's
    # nurture at capture): the same form again is the person asking again, so the lead reopens.
    state, out = run(capture(), assigned(), dispose(status), capture("cap-2", minutes=1))
    assert state is not None and (state.cycle, state.touches) == (2, 2)
    assert out[0].value["type"] == "lead.reopened"
    # The reopening capture is the last touch now: its double post is a resubmission of it.
    again, out = run(capture(), assigned(), dispose(status), capture("cap-2", minutes=1),
                     capture("cap-3", minutes=1))
    assert again is not None and (again.cycle, again.touches, out) == (2, 2, [])


# --- the routing handshake ----------------------------------------------------------------


def test_queued_then_assigned() -> None:
    state, out = run(capture(), queued())
    assert state is not None and state.routing == "queued"
    assert [m.value["type"] for m in out] == ["lead.queued"]
    state, out = run(capture(), queued(), assigned())
    assert state is not None and state.routing == "assigned"
    # The SLA runs from the capture (T0), not from the assignment: waiting in a queue counts.
    assert state.sla_deadline == T0 + timedelta(seconds=DEFAULT_POLICY.first_contact_s)


def test_the_queued_entry_carries_the_decision_bounded() -> None:
    """GET /v1/leads shows the timeline: a queued lead must say who could not take it and why."""
    refused = tuple(Candidate(rep_id=f"rep-{i:02d}", eligible=False, reasons=("at capacity (6/6 open)",
                                                                             "territory US not covered"))
                    for i in range(13))
    waits = LeadQueued(lead_id=LEAD_ID, route_id=f"{LEAD_ID}:1:1", team_id="inbound", depth=1,
                       decision=replace(decision(None), candidates=refused, reason="no rep is eligible"),
                       queued_at=T0 + timedelta(seconds=5), expected_wait_s=42.0)
    state, _ = run(capture(), waits)
    assert state is not None
    entry = state.timeline[-1]
    assert entry.kind == "queued" and entry.detail["why"] == "no rep is eligible"
    assert entry.detail["expected_wait_s"] == 42.0
    digest = entry.detail["decision"]
    assert digest["strategy"] == "weighted_round_robin" and digest["winner"] is None
    assert [c["rep_id"] for c in digest["candidates"]] == [f"rep-{i:02d}" for i in range(10)]
    assert digest["candidates"][0] == {"rep_id": "rep-00", "eligible": False,
                                       "reasons": ["at capacity (6/6 open)", "territory US not covered"]}
    assert digest["candidates_left_out"] == 3
    # A smaller team is listed whole.
    small, _ = run(capture(), waits, policy=LeadPolicy(default_team="inbound", timeline_candidates=20))
    assert small is not None
    assert len(small.timeline[-1].detail["decision"]["candidates"]) == 13
    assert small.timeline[-1].detail["decision"]["candidates_left_out"] == 0


def test_a_repeated_queued_is_ignored() -> None:
    before, _ = run(capture(), queued())
    state, out = run(capture(), queued(), queued())
    assert state == before and out == []


@pytest.mark.parametrize(
    ("history", "late"),
    [
        ((capture(), assigned()), queued(route_id="other:1:1")),                     # another route
        ((capture(), assigned(), dispose()), queued()),                              # closed since
        ((capture(), assigned(), dispose(), capture("cap-2")), queued()),            # an earlier cycle's route
    ],
    ids=["another route", "closed", "earlier cycle"],
)
def test_a_stale_queued_is_withdrawn(history: tuple[object, ...], late: LeadQueued) -> None:
    """A team that queued a route the lead has left (a replay after a crash) is told to drop it."""
    before, _ = run(*history)
    state, out = run(*history, late)
    assert state == before
    assert [m.value for m in out] == [WithdrawLead(team_id="inbound", lead_id=LEAD_ID, route_id=late.route_id,
                                                   reason="stale queue entry", at=T0 + timedelta(minutes=1))]
    assert [m.key for m in out] == ["inbound"]


@pytest.mark.parametrize("again", [queued(), assigned(rep_id="rep-b")], ids=["queued", "another rep"])
def test_a_route_decided_again_differently_keeps_its_rep(again: LeadQueued | LeadAssigned) -> None:
    """After a crash the team may decide a held route again, and differently (the clock moved):
    the lead stays with the rep it told, and tells the team to count the route there."""
    before, _ = run(capture(), assigned())
    state, out = run(capture(), assigned(), again)
    assert state == before
    assert [m.value for m in out] == [KeepAssignment(
        team_id="inbound", lead_id=LEAD_ID, route_id=f"{LEAD_ID}:1:1", rep_id="rep-a",
        assigned_at=T0 + timedelta(seconds=5), at=T0 + timedelta(minutes=1))]
    assert [m.key for m in out] == ["inbound"]


def test_accepted_assignment_notifies_the_rep_once_per_route() -> None:
    state, out = run(capture(), assigned())
    assert state is not None and state.assignment is not None
    (event,) = [m.value for m in out if m.channel == "lead.events"]
    (notify,) = [m.value for m in out if m.channel == "notifications"]
    assert event["type"] == "lead.assigned"
    assert isinstance(notify, Notify)
    assert notify.webhook_id == webhook_id_for(f"{LEAD_ID}:1:1", "lead.assigned") == state.assignment.webhook_id
    assert (notify.url, notify.secret, notify.rep_id) == ("https://x.test/a", "whsec_a", "rep-a")
    # A replay re-sends the very same notification (same webhook id) and nothing else.
    again, replay_out = run(capture(), assigned(), assigned())
    assert again == state
    assert [m.value for m in replay_out] == [notify]


@pytest.mark.parametrize(("url", "secret"), [(None, "s"), ("https://x.test", None), (None, None)])
def test_no_webhook_no_notification(url: str | None, secret: str | None) -> None:
    state, out = run(capture(), assigned(url=url, secret=secret))
    assert state is not None and state.routing == "assigned"
    assert [m.channel for m in out] == ["lead.events", "lead.events"]  # no Notify
    assert [m.value["type"] for m in out] == ["lead.assigned", "lead.not_notified"]


@pytest.mark.parametrize(
    ("history", "stale"),
    [
        ((capture(),), assigned(route_id="someone-else:1:1")),                   # wrong route
        ((capture(), assigned(), dispose()), assigned()),                        # already released
        ((capture(), dispose()), assigned()),                                    # closed while routing
        ((capture(), assigned(), dispose(), capture("cap-2")), assigned()),      # an earlier cycle's route
    ],
)
def test_stale_assignment_is_handed_back(history: tuple[object, ...], stale: LeadAssigned) -> None:
    before, _ = run(*history)
    state, out = run(*history, stale)
    assert state == before
    assert [(m.channel, m.key) for m in out] == [("team.commands", "inbound")]
    assert out[0].value == ReleaseLead(team_id="inbound", lead_id=LEAD_ID, route_id=stale.route_id,
                                       rep_id=stale.rep_id, reason="stale assignment", at=T0 + timedelta(minutes=1))


def test_assignment_for_an_unknown_lead_is_handed_back() -> None:
    state, out = run(assigned())
    assert state is None
    assert [type(m.value) for m in out] == [ReleaseLead]
    assert out[0].value.reason == "unknown lead"


@pytest.mark.parametrize("command", [queued(), dispose()])
def test_other_commands_for_an_unknown_lead_do_nothing(command: object) -> None:
    assert run(command) == (None, [])


# --- delivery and disposition ---------------------------------------------------------------


#: The first assignment's own ``lead.assigned`` webhook (``assigned()``'s route).
ASSIGNED_WEBHOOK = webhook_id_for(f"{LEAD_ID}:1:1", "lead.assigned")


def delivery(webhook_id: str = ASSIGNED_WEBHOOK, *, delivered: bool = True, minutes: int = 2,
             event_type: str = "lead.assigned") -> RecordDelivery:
    return RecordDelivery(lead_id=LEAD_ID, webhook_id=webhook_id, event_type=event_type, rep_id="rep-a",
                          delivered=delivered, attempts=1, status=200 if delivered else 503, error=None,
                          at=T0 + timedelta(minutes=minutes))


def test_delivery_is_recorded_once() -> None:
    state, out = run(capture(), assigned(), delivery())
    assert state is not None and state.notified_at == T0 + timedelta(minutes=2)
    assert [m.value["type"] for m in out] == ["lead.notified"]
    assert out[0].value["data"]["notify_seconds"] == 120
    again, out = run(capture(), assigned(), delivery(), delivery(minutes=3))
    assert again == state and out == []


def test_failed_then_delivered_keeps_the_first_delivery_time() -> None:
    state, _ = run(capture(), assigned(), delivery(delivered=False), delivery(minutes=4),
                   delivery("msg_2", minutes=9, event_type="lead.reminder"))
    assert state is not None and state.notified_at == T0 + timedelta(minutes=4)
    assert [e.kind for e in state.timeline][-3:] == ["notification_failed", "notified", "notified"]


def test_only_the_reps_own_webhook_is_the_notify_sample_and_it_counts_from_the_capture() -> None:
    # A manager's at-risk alert delivered while the lead waits is not the rep being told.
    state, out = run(capture(), queued(), delivery("msg_mgr", minutes=1, event_type="lead.escalated"))
    assert state is not None and state.notified_at is None
    assert "notify_seconds" not in out[0].value["data"]
    # The same person captured again 3 minutes in does not restart the clock: 6 min from capture.
    state, out = run(capture(), capture("cap-2", minutes=3), assigned(), delivery(minutes=6))
    assert state is not None and state.notified_at == T0 + timedelta(minutes=6)
    assert out[0].value["data"]["notify_seconds"] == 360
    # A reminder delivered later adds no second sample.
    _, out = run(capture(), assigned(), delivery(), delivery("msg_r", minutes=8, event_type="lead.reminder"))
    assert out[0].value["type"] == "lead.notified" and "notify_seconds" not in out[0].value["data"]


def test_only_the_cycles_first_assignment_is_a_routing_sample_from_the_capture() -> None:
    state, out = run(capture(), capture("cap-2", minutes=0), assigned())
    (published,) = [m.value for m in out if m.channel == "lead.events"]
    assert published["type"] == "lead.assigned" and published["data"]["routing_seconds"] == 60  # now - capture
    assert state is not None and state.routed_at == T0 + timedelta(minutes=1)
    # Its webhook is dead-lettered and the lead goes to another rep: not another routing sample.
    dead = replace(delivery(delivered=False), dead_lettered=True, status=410)
    moved = lead.apply(state, dead, T0 + timedelta(minutes=3), POLICY).state
    assert moved is not None and moved.routing == "routing" and moved.route_id == f"{LEAD_ID}:1:2"
    again = lead.apply(moved, assigned(moved.route_id, "rep-b"), T0 + timedelta(minutes=4), POLICY)
    (event,) = [m.value for m in again.outgoing if m.channel == "lead.events"]
    assert event["type"] == "lead.assigned" and "routing_seconds" not in event["data"]
    assert again.state is not None and again.state.routed_at == T0 + timedelta(minutes=1)


def test_disposition_of_an_assigned_lead_releases_the_rep() -> None:
    state, out = run(capture(), assigned(), dispose())
    assert state is not None and (state.routing, state.status) == ("released", "disqualified")
    assert [m.channel for m in out] == ["lead.events", "team.commands"]
    assert out[1].value == ReleaseLead(team_id="inbound", lead_id=LEAD_ID, route_id=f"{LEAD_ID}:1:1",
                                       rep_id="rep-a", reason="disposition: disqualified",
                                       at=T0 + timedelta(minutes=1))


def test_disposition_before_assignment_has_nothing_to_release() -> None:
    state, out = run(capture(), dispose())
    assert state is not None and state.routing == "released"
    assert [m.channel for m in out] == ["lead.events"]


def test_disposition_of_a_queued_lead_takes_it_out_of_the_queue() -> None:
    state, out = run(capture(), queued(), dispose())
    assert state is not None and state.routing == "released"
    assert [m.channel for m in out] == ["lead.events", "team.commands"]
    withdraw = out[1].value
    assert isinstance(withdraw, WithdrawLead) and withdraw.route_id == state.route_id


def test_disposition_of_a_closed_lead_is_ignored() -> None:
    before, _ = run(capture(), assigned(), dispose())
    state, out = run(capture(), assigned(), dispose(), dispose("nurture"))
    assert state == before and out == []


def test_can_disposition() -> None:
    assert can_disposition(None) == "no such lead"
    assert can_disposition(run(capture())[0]) is None
    assert can_disposition(run(capture(), assigned())[0]) is None
    assert can_disposition(run(capture(), dispose("nurture"))[0]) == "the lead is already closed (nurture)"


def test_timeline_is_bounded() -> None:
    policy = LeadPolicy(timeline_limit=4)
    # Each touch outside the last one's resubmission window, so each is a touch of its own.
    state, _ = run(capture(), *(capture(f"cap-{i}", minutes=11 * (i + 1)) for i in range(10)), policy=policy)
    assert state is not None and len(state.timeline) == 4


def test_webhook_id_is_stable_and_safe() -> None:
    a = webhook_id_for("r:1:1", "lead.assigned")
    assert a == webhook_id_for("r:1:1", "lead.assigned")
    assert a != webhook_id_for("r:1:2", "lead.assigned") != webhook_id_for("r:1:1", "lead.reminder")
    assert a.startswith("msg_") and "." not in a and "r:1:1" not in a


# --- phone extensions -----------------------------------------------------------------------


def test_the_rep_is_shown_the_phone_extension() -> None:
    state, out = run(capture(phone="+16502530000", phone_extension="123"), assigned())
    assert state is not None
    (notify,) = [m.value for m in out if m.channel == "notifications"]
    shown = notify.payload["data"]["lead"]
    assert (shown["phone"], shown["phone_extension"]) == ("+16502530000", "123")


def test_a_newer_phone_brings_its_own_extension() -> None:
    state, _ = run(capture(phone="+16502530000", phone_extension="123"),
                   capture("cap-2", minutes=1, phone="+16502530001"))
    assert state is not None
    assert (state.lead.phone, state.lead.phone_extension) == ("+16502530001", None)
    state, _ = run(capture(phone="+16502530000", phone_extension="123"), capture("cap-2", minutes=1, company="Acme"))
    assert state is not None
    assert (state.lead.phone, state.lead.phone_extension) == ("+16502530000", "123")  # a touch without a phone


def test_a_lead_keeps_at_most_100_attributes_the_most_recently_given() -> None:
    # One person captured again and again with new attributes grew a lead past Kafka's 1 MB limit.
    first = {f"first{i}": "x" * 200 for i in range(50)}
    second = {f"second{i}": "y" * 200 for i in range(50)}
    third = {f"third{i}": "z" * 200 for i in range(49)} | {"first0": "given again"}
    state, _ = run(capture(attributes=first), capture("cap-2", minutes=20, attributes=second),
                   capture("cap-3", minutes=40, attributes=third))
    assert state is not None
    kept = state.lead.attributes
    assert len(kept) == MAX_LEAD_ATTRIBUTES == 100
    assert kept["first0"] == "given again"  # given again: kept, with its newest value
    assert not any(name.startswith("first") and name != "first0" for name in kept)  # given longest ago
    assert set(second) <= set(kept) and set(third) <= set(kept)


def test_attributes_under_the_bound_merge_as_before() -> None:
    state, _ = run(capture(attributes={"plan": "team", "seats": "5"}),
                   capture("cap-2", minutes=20, attributes={"seats": "8", "region": "emea"}))
    assert state is not None
    assert list(state.lead.attributes.items()) == [("plan", "team"), ("seats", "8"), ("region", "emea")]


def test_a_value_given_under_another_spelling_replaces_the_older_one() -> None:
    # Review s17-d: the older spelling stayed first and lookups read it, so the oldest value won.
    state, _ = run(capture(attributes={"Industry": "Retail", "Tier": "bronze"}),
                   capture("cap-2", minutes=20, attributes={"INDUSTRY": "Software", "tier ": "silver"}),
                   capture("cap-3", minutes=40, attributes={"Industry": "Finance", "TIER": "  "}))
    assert state is not None
    assert state.lead.attributes == {"tier ": "silver", "Industry": "Finance", "TIER": "  "}
    assert attribute(state.lead.attributes, "industry") == "Finance"
    assert attribute(state.lead.attributes, "tier") == "silver"  # a blank value replaces nothing

"""The lead through scoring, the MQL gate, qualification, conversion and CRM outcomes (pure)."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from rules import lead
from rules.commands import (
    DeferCommand,
    Notify,
    RecordActivity,
    RecordCrmEvent,
    RecordCrmSync,
    RecordQualification,
    ReleaseLead,
    ReturnToRouting,
    RouteLead,
    UpsertOpportunity,
)
from rules.lead import LeadPolicy, LeadState
from rules.lead_crm import can_qualify, can_take_crm_event, qualifier_problem
from rules.lead_state import Endpoint
from rules.opportunity import opportunity_id_for
from rules.outcomes import RecordOutcome
from rules.scoring import ScoringModel
from tests.rules._sim import T0
from tests.rules.test_lead import LEAD_ID, assigned, capture

AE = Endpoint(url="https://ae.example/hooks", secret="whsec_ae")
GATED = LeadPolicy(default_team="inbound", scoring=ScoringModel(mql_threshold=40), account_executives={"*": AE})
OPP = opportunity_id_for(LEAD_ID, 1)
BANT_SQL = {"budget": "approved", "authority": "decision_maker", "need": "leads wait days", "timeline": "this_quarter"}


def step(state: LeadState | None, command: object, policy: LeadPolicy = GATED,
         minutes: int = 1) -> tuple[LeadState, list[Any]]:
    t = lead.apply(state, command, T0 + timedelta(minutes=minutes), policy)  # type: ignore[arg-type]
    assert t.state is not None
    return t.state, list(t.outgoing)


def types(out: list[Any]) -> list[str]:
    return [m.value["type"] if m.channel == "lead.events" else type(m.value).__name__ for m in out]


def hot_lead() -> Any:
    return capture(title="VP Sales", message="demo please", attributes={"employees": "300", "industry": "software"})


def qualify(answers: dict[str, Any], qid: str = "q1", framework: str = "BANT") -> RecordQualification:
    return RecordQualification(lead_id=LEAD_ID, qualification_id=qid, framework=framework, answers=answers,
                               rep_id="rep-a", at=T0 + timedelta(minutes=10))


def crm_event(kind: str, eid: str = "e1", **fields: Any) -> RecordCrmEvent:
    return RecordCrmEvent(lead_id=LEAD_ID, event_id=eid, kind=kind, at=T0 + timedelta(days=3),  # type: ignore[arg-type]
                          **fields)


def converted() -> tuple[LeadState, list[Any]]:
    state, _ = step(None, hot_lead())
    state, _ = step(state, assigned())
    return step(state, qualify(BANT_SQL))


# --- capture: scored, then an MQL routed or a lead nurtured ------------------------------------


def test_a_lead_over_the_threshold_is_an_mql_routed_by_its_tier() -> None:
    state, out = step(None, hot_lead())
    assert types(out) == ["lead.captured", "lead.scored", "lead.mql", "RouteLead"]
    assert state.status == "mql" and state.score is not None and state.score.tier == "B"
    assert out[-1].value.priority == 1  # tier B's queue lane
    assert out[1].value["data"]["reasons"][0] == "+22 seniority vp"
    assert [e.kind for e in state.timeline] == ["captured", "mql"]
    assert state.timeline[0].detail["score"] == state.score.value


def test_a_lead_below_the_threshold_goes_to_nurture_not_to_an_sdr() -> None:
    state, out = step(None, capture(email="kid@gmail.com", title="Student"))
    assert types(out) == ["lead.captured", "lead.scored", "lead.nurture"]
    assert (state.status, state.routing, state.sla_deadline) == ("nurture", "released", None)
    assert lead.next_timer(state) is None
    assert out[-1].value["data"]["why"].startswith("score 0 below the MQL threshold 40")


def test_a_hot_source_is_an_mql_whatever_its_score() -> None:
    state, out = step(None, capture(email="kid@gmail.com", title="Student", source="demo-request"))
    assert state.status == "mql" and out[2].value["data"]["why"] == "hot source demo-request"


def test_without_a_threshold_every_lead_is_routed_and_stays_new() -> None:
    state, out = step(None, capture(email="kid@gmail.com", title="Student"), LeadPolicy(default_team="inbound"))
    assert types(out) == ["lead.captured", "lead.scored", "RouteLead"] and state.status == "new"


def test_the_first_contact_makes_an_mql_working() -> None:
    state, _ = step(None, hot_lead())
    state, _ = step(state, assigned())
    state, out = step(state, RecordActivity(lead_id=LEAD_ID, activity_id="a1", type="call", rep_id="rep-a",
                                            at=T0 + timedelta(minutes=2)))
    assert state.status == "working" and types(out) == ["lead.contacted"]


def test_the_sdr_webhook_carries_the_score() -> None:
    _, out = step(step(None, hot_lead())[0], assigned())
    (notify,) = [m.value for m in out if isinstance(m.value, Notify)]
    assert notify.payload["data"]["score"]["tier"] == "B"
    assert notify.payload["data"]["score"]["reasons"]


# --- qualification and conversion ------------------------------------------------------------


def test_answers_from_a_rep_who_does_not_hold_the_lead_are_refused() -> None:
    """The lead checks too (the rep may have lost the lead since the API looked): nothing recorded."""
    state, _ = step(step(None, hot_lead())[0], assigned(rep_id="rep-eva"))
    after, out = step(state, qualify(BANT_SQL))  # answers by rep-a
    assert types(out) == ["lead.qualification_rejected"]
    assert out[0].value["data"]["why"] == "the lead is held by another rep, not rep-a"
    assert after.qualification is None and after.status == state.status
    assert qualifier_problem(state, "rep-eva") is None and qualifier_problem(state, None) is None
    queued, _ = step(None, hot_lead())
    assert qualifier_problem(queued, "rep-a") == "rep-a does not hold the lead: no rep does (it is routing)"


def test_partial_answers_are_recorded_and_do_not_convert() -> None:
    state, _ = step(step(None, hot_lead())[0], assigned())
    state, out = step(state, qualify({"budget": "approved", "need": "leads wait days"}))
    assert types(out) == ["lead.qualification"]
    assert state.qualification is not None and state.qualification.missing == ("authority", "timeline")
    assert state.status == "mql"
    # Later answers merge with the earlier ones and make it an SQL.
    state, out = step(state, qualify({"timeline": "next_quarter"}, qid="q2"))
    assert state.status == "converted" and state.qualification is not None
    assert state.qualification.answers == {"budget": "approved", "need": "leads wait days", "timeline": "next_quarter"}


def test_sql_criteria_met_convert_the_lead_into_one_opportunity() -> None:
    state, out = converted()
    assert types(out) == ["lead.qualification", "lead.sql", "ReleaseLead", "opportunity.created", "UpsertOpportunity"]
    assert (state.status, state.routing) == ("converted", "released")
    release = out[2].value
    assert isinstance(release, ReleaseLead) and release.rep_id == "rep-a" and release.reason == "converted"
    upsert = out[-1].value
    assert isinstance(upsert, UpsertOpportunity) and upsert.opportunity_id == OPP and out[-1].channel == "crm.outbox"
    payload = upsert.payload
    assert payload["qualification"]["framework"] == "BANT" and payload["qualification"]["answers"] == BANT_SQL
    assert payload["score"]["tier"] == "B" and payload["enrichment"]["seniority"] == "vp"
    assert payload["attribution"]["first_touch"]["capture_id"] == "cap-1"
    assert [e["kind"] for e in payload["timeline"]][-3:] == ["qualification", "sql", "converted"]
    assert payload["owner"]["rep_id"] == "rep-a"
    assert lead.next_timer(state) is None  # the SLA is over


def test_a_replayed_qualification_changes_nothing() -> None:
    state, _ = converted()
    again, out = step(state, qualify(BANT_SQL))
    assert again == state and out == []


def test_answers_for_a_closed_lead_or_an_unknown_framework_are_rejected() -> None:
    nurtured, _ = step(None, capture(email="kid@gmail.com", title="Student"))
    assert can_qualify(nurtured) == "the lead is nurture; answers are taken while it is mql, new, sql, working"
    state, out = step(nurtured, qualify(BANT_SQL))
    assert state == nurtured and types(out) == ["lead.qualification_rejected"]
    mql, _ = step(None, hot_lead())
    state, out = step(mql, qualify({"budget": 1}, framework="SPICED"))
    assert state == mql and out[0].value["data"]["why"] == "unknown framework 'SPICED'"


# --- the CRM's answers ---------------------------------------------------------------------------


def synced(ok: bool = True) -> RecordCrmSync:
    return RecordCrmSync(lead_id=LEAD_ID, opportunity_id=OPP, synced=ok, crm="salesforce",
                         crm_id="006000000000001" if ok else None, attempts=1 if ok else 6,
                         error=None if ok else "HTTP 503", at=T0 + timedelta(minutes=11))


def test_the_ae_is_notified_once_when_the_crm_has_it() -> None:
    state, _ = converted()
    state, out = step(state, synced())
    assert types(out) == ["opportunity.synced", "Notify"]
    notify = out[1].value
    assert notify.url == AE.url and notify.event_type == "opportunity.created" and notify.rep_id is None
    data = notify.payload["data"]
    assert data["crm"] == {"name": "salesforce", "id": "006000000000001", "status": "synced", "error": None}
    assert data["qualification"]["answers"] == BANT_SQL and data["timeline"]
    assert state.opportunity is not None and state.opportunity.crm_id == "006000000000001"
    assert step(state, synced())[1] == []  # a replayed report


def test_a_dead_lettered_opportunity_still_reaches_the_ae_flagged() -> None:
    state, _ = converted()
    state, out = step(state, synced(ok=False))
    assert types(out) == ["opportunity.sync_failed", "Notify"]
    assert out[1].value.payload["data"]["crm"]["status"] == "failed"


def test_stage_changes_then_won() -> None:
    state, _ = converted()
    state, out = step(state, crm_event("stage_changed", stage="proposal"))
    assert types(out) == ["opportunity.stage_changed"] and state.opportunity.stage == "proposal"  # type: ignore[union-attr]
    state, out = step(state, crm_event("won", eid="e2", amount=48000.0))
    assert types(out) == ["opportunity.won", "RecordOutcome"] and state.status == "won"
    won = out[1].value
    assert isinstance(won, RecordOutcome) and won.won and won.segment == "large/software" and won.rep_id == "rep-a"
    assert out[1].channel == "outcomes"
    # Closed: the same close again is rejected, replays ignored (a lost is a correction and a
    # stage change a reopen: tests/rules/test_lead_crm_corrections.py, test_lead_crm_reopen.py).
    assert step(state, crm_event("won", eid="e2"))[1] == []
    assert types(step(state, crm_event("won", eid="e3"))[1]) == ["opportunity.event_rejected"]


def test_lost_recycles_to_nurture_with_the_reason_and_routes_again_later() -> None:
    policy = replace(GATED, recycle_after_s=86400.0)
    state, _ = converted()
    state, out = step(state, crm_event("lost", reason="no budget"), policy)
    assert types(out) == ["opportunity.lost", "RecordOutcome", "DeferCommand", "lead.recycled"]
    assert state.status == "recycled" and state.opportunity.lost_reason == "no budget"  # type: ignore[union-attr]
    defer = out[2].value
    assert isinstance(defer, DeferCommand) and defer.due_at == T0 + timedelta(days=4)
    assert defer.command == ReturnToRouting(lead_id=LEAD_ID, cycle=1, at=defer.due_at)
    assert out[3].value["data"]["reason"] == "no budget"

    again, out = step(state, defer.command, policy, minutes=60 * 24 * 4)
    assert types(out) == ["lead.recycled", "lead.scored", "lead.mql", "RouteLead"]
    assert (again.cycle, again.status, again.routing, again.opportunity) == (2, "mql", "routing", None)
    assert out[-1].value.route_id == f"{LEAD_ID}:2:1"
    assert step(again, defer.command, policy)[1] == []  # once per cycle


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_the_same_content_after_a_deal_reopens_the_lead(outcome: str) -> None:
    # Not a resubmission of the touch that made the lead: the deal was won or lost since, so the
    # same form again, even within minutes, is the person asking again.
    state, _ = converted()
    state, _ = step(state, crm_event(outcome))
    assert state.routing == "released" and state.last_capture_digest is not None
    again, out = step(state, replace(hot_lead(), capture_id="cap-2", captured_at=T0 + timedelta(minutes=2)))
    assert (again.cycle, again.touches, types(out)[0]) == (2, 2, "lead.reopened")


def test_a_capture_during_an_open_deal_is_a_touch_the_ae_hears_of_and_the_deal_goes_on() -> None:
    # A new cycle handed a person in an open deal back to an SDR and dropped the opportunity, so
    # the CRM's won was refused ("the lead has no opportunity").
    state, _ = converted()
    state, _ = step(state, synced())
    webinar = replace(hot_lead(), capture_id="cap-2", captured_at=T0 + timedelta(minutes=30),
                      lead=replace(hot_lead().lead, source="webinar", campaign="q3-webinar"))
    touched, out = step(state, webinar, minutes=31)
    assert (touched.cycle, touched.status, touched.routing, touched.touches) == (1, "converted", "released", 2)
    assert touched.opportunity == state.opportunity and touched.last_touch.source == "webinar"
    assert types(out) == ["lead.touched", "Notify"]
    notify = out[1].value
    assert (notify.url, notify.event_type, notify.rep_id) == (AE.url, "lead.touched", None)
    data = notify.payload["data"]
    assert data["opportunity"] == {"opportunity_id": OPP, "crm_id": "006000000000001", "stage": "qualification",
                                   "rep_id": "rep-a"}
    assert data["touch"]["campaign"] == "q3-webinar" and data["touches"] == 2
    # The same form again a minute later is a resubmission of that touch: nobody hears twice.
    again, out = step(touched, replace(webinar, capture_id="cap-3", captured_at=T0 + timedelta(minutes=31)),
                      minutes=32)
    assert out == [] and again.touches == 2
    # The deal goes on: the CRM's won applies.
    won, out = step(again, crm_event("won", amount=1000.0))
    assert won.status == "won" and types(out) == ["opportunity.won", "RecordOutcome"]


def test_the_same_content_just_after_a_conversion_is_a_touch_on_the_deal() -> None:
    # The rep converted the lead after its last touch: the same form again is the person asking
    # again (not a resubmission), a touch on the open deal.
    state, _ = converted()
    again, out = step(state, replace(hot_lead(), capture_id="cap-2", captured_at=T0 + timedelta(minutes=2)),
                      minutes=12)
    assert (again.cycle, again.touches, again.status) == (1, 2, "converted") and types(out) == ["lead.touched", "Notify"]


def test_crm_events_need_an_open_opportunity() -> None:
    mql, _ = step(None, hot_lead())
    assert can_take_crm_event(mql, "won") == "the lead has no opportunity (it is mql)"
    assert types(step(mql, crm_event("won"))[1]) == ["opportunity.event_rejected"]


def test_conversion_of_a_queued_lead_withdraws_it_from_the_queue() -> None:
    from tests.rules.test_lead import queued

    state, _ = step(step(None, hot_lead())[0], queued())
    # Answers without a rep (the CRM, a manager): a rep answers only for a lead they hold.
    _, out = step(state, replace(qualify(BANT_SQL), rep_id=None))
    assert "WithdrawLead" in types(out) and "ReleaseLead" not in types(out)
    assert not any(isinstance(m.value, RouteLead) for m in out)


def test_a_recycled_lead_chooses_its_team_again_like_a_fresh_capture() -> None:
    """A lead the last cycle left in another team (released to the pool) is routed by the rules again."""
    from rules.team_selection import TeamRule

    policy = replace(GATED, recycle_after_s=86400.0)
    state, _ = converted()
    assert state.team_id == "inbound"  # no rule matched: the default team
    state = replace(state, team_id="pool")  # released to the pool, where a rep took it and qualified it
    state, out = step(state, crm_event("lost", reason="no budget"), policy)
    defer = next(m.value for m in out if isinstance(m.value, DeferCommand))
    again, out = step(state, defer.command, policy, minutes=60 * 24 * 4)
    route = out[-1].value
    assert isinstance(route, RouteLead) and (route.team_id, again.team_id) == ("inbound", "inbound")
    recycled = [e for e in again.timeline if e.kind == "recycled"][-1]
    assert recycled.detail["team_id"] == "inbound"
    assert recycled.detail["why"] == "no routing rule matched; default team inbound"
    published = out[0].value["data"]
    assert (published["team_id"], published["previous_team_id"]) == ("inbound", "pool")
    assert published["why_team"] == recycled.detail["why"]

    # The rules as they are now decide: a rule added since the first capture sends it there.
    ruled = replace(policy, team_rules=(TeamRule(team="software-sdrs", name="software", industries=("software",)),))
    again, out = step(state, defer.command, ruled, minutes=60 * 24 * 4)
    assert out[-1].value.team_id == again.team_id == "software-sdrs"
    assert [e for e in again.timeline if e.kind == "recycled"][-1].detail["why"].startswith(
        "routing rule #1 'software' matched: industry")

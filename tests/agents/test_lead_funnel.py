"""The funnel as /metrics and the events report count it: the marketing-ops audit's scenario.

Four people through the real lead transitions (``rules.lead.apply``): A (webinar, CEO) becomes an
MQL, an SQL and an opportunity, later won; B (webinar, intern on gmail) goes to nurture and comes
back through google_ads (a new cycle: re-engaged, nurtured again); C (google_ads, VP Sales) is an
MQL, then disqualified; D (google_ads) goes to nurture. What the lead agent observes
(``_observe``: /metrics) and what ``summarize_events`` reads from the same ``lead.events`` must
agree with the hand count: 4 people, B's return a re-engagement under its first touch (webinar).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest

from ops.metrics import Metrics
from ops.report import summarize_events, summarize_scrapes
from rules import lead
from rules.capture import CapturedLead, derive_lead_id
from rules.commands import (
    CaptureLead,
    DispositionLead,
    LeadAssigned,
    Outgoing,
    RecordCrmEvent,
    RecordQualification,
    RoutingDecision,
)
from rules.lead import LeadPolicy, LeadState
from rules.scoring import ScoringModel
from streams.agents import lead as lead_agent
from tests.rules._sim import T0

GATED = LeadPolicy(default_team="inbound", scoring=ScoringModel(mql_threshold=40))
BANT_SQL = {"budget": "approved", "authority": "decision_maker", "need": "leads wait days", "timeline": "this_quarter"}
SOURCES = ("webinar", "google_ads")


class Story:
    """Applies commands to per-person states, observing every transition like the lead agent."""

    def __init__(self) -> None:
        self.states: dict[str, LeadState | None] = {}
        self.events: list[dict[str, Any]] = []
        self.minutes = 0

    def apply(self, lead_id: str, command: object) -> list[str]:
        self.minutes += 1
        transition = lead.apply(self.states.get(lead_id), command, T0 + timedelta(minutes=self.minutes),  # type: ignore[arg-type]
                                GATED)
        self.states[lead_id] = transition.state
        lead_agent._observe(transition.outgoing, transition.state)
        published = [m.value for m in transition.outgoing if m.channel == "lead.events"]
        self.events += published
        return [e["type"] for e in published]

    def capture(self, email: str, capture_id: str, **fields: Any) -> tuple[str, list[str]]:
        lead_id = derive_lead_id(email=email, phone=None, source=str(fields["source"]), external_id=None)
        command = CaptureLead(lead_id=lead_id, capture_id=capture_id, captured_at=T0 + timedelta(minutes=self.minutes),
                              lead=CapturedLead(email=email, **fields))
        return lead_id, self.apply(lead_id, command)

    def assign(self, lead_id: str, rep_id: str = "ana") -> list[str]:
        decision = RoutingDecision(team_id="inbound", strategy="weighted_round_robin", candidates=(), winner=rep_id,
                                   reason="weighted round robin", decided_at=T0)
        return self.apply(lead_id, LeadAssigned(lead_id=lead_id, route_id=f"{lead_id}:1:1", team_id="inbound",
                                                rep_id=rep_id, rep_name=rep_id, webhook_url=None, webhook_secret=None,
                                                decision=decision, assigned_at=T0))


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[Metrics]:
    fresh = Metrics()
    fresh.configure_sources({"webinar": (3000.0, "EUR"), "google_ads": (6000.0, "EUR")})
    # The runtime is frozen: the agent module's name for it sees a stand-in with fresh metrics.
    monkeypatch.setattr(lead_agent, "runtime", SimpleNamespace(metrics=fresh))
    yield fresh


def audit_scenario() -> Story:
    story = Story()
    big = {"employees": "300", "industry": "software"}
    a, kinds = story.capture("ceo@northwind.example", "a1", source="webinar", title="CEO", message="demo please",
                             attributes=big)
    assert "lead.mql" in kinds
    story.assign(a)
    assert "lead.sql" in story.apply(a, RecordQualification(lead_id=a, qualification_id="q1", framework="BANT",
                                                            answers=BANT_SQL, rep_id="ana", at=T0))
    assert story.apply(a, RecordCrmEvent(lead_id=a, event_id="e1", kind="won", amount=48000.0, at=T0)) == [
        "opportunity.won"]
    b, kinds = story.capture("intern@gmail.com", "b1", source="webinar", title="Intern")
    assert "lead.nurture" in kinds
    again, kinds = story.capture("intern@gmail.com", "b2", source="google_ads", title="Intern")
    assert again == b and kinds[0] == "lead.reopened" and "lead.nurture" in kinds  # the API said "duplicate"
    c, kinds = story.capture("vp@acme.example", "c1", source="google_ads", title="VP Sales", message="demo please",
                             attributes=big)
    assert "lead.mql" in kinds
    story.assign(c)
    assert story.apply(c, DispositionLead(lead_id=c, status="disqualified", reason="no budget", rep_id="ana",
                                          at=T0)) == ["lead.dispositioned"]
    _, kinds = story.capture("someone@gmail.com", "d1", source="google_ads")
    assert "lead.nurture" in kinds
    return story


#: The hand count: by first touch, B's return a re-engagement of a webinar lead, never a new lead.
HAND_COUNT = {
    "webinar": {"lead": 2, "reengaged": 1, "mql": 1, "sql": 1, "opportunity": 1, "won": 1, "nurture": 2},
    "google_ads": {"lead": 2, "mql": 1, "nurture": 1},
}


def _lifecycle(m: Metrics) -> dict[tuple[str, str, str], float]:
    return {(s.labels["source"], s.labels["from"], s.labels["to"]): s.value
            for s in m.lifecycle.collect()[0].samples if s.name.endswith("_total")}


def test_metrics_count_a_returning_person_once_as_a_lead_and_credit_the_first_touch(metrics: Metrics) -> None:
    audit_scenario()
    moves = _lifecycle(metrics)
    assert moves[("webinar", "none", "lead")] == 2 and moves[("google_ads", "none", "lead")] == 2
    assert moves[("webinar", "closed", "reengaged")] == 1
    assert not any(to == "lead" and frm != "none" for (_, frm, to) in moves)
    # Lead → MQL reads MQLs of new leads; B's second nurture is the re-engaged cycle's gate.
    assert moves[("webinar", "lead", "mql")] == 1 and moves[("google_ads", "lead", "mql")] == 1
    assert moves[("webinar", "lead", "nurture")] == 1 and moves[("webinar", "reengaged", "nurture")] == 1
    assert not any(src == "google_ads" and to in ("reengaged", "sql", "won") for (src, _, to) in moves)
    # A known person captured again is merged, whether the lead was open or closed (it reopened).
    assert metrics.registry.get_sample_value("leadflow_leads_merged_total") == 1


def test_the_events_report_and_the_metrics_report_agree_with_the_hand_count(metrics: Metrics) -> None:
    story = audit_scenario()
    from_events = summarize_events(story.events, origin="events")
    from_metrics = summarize_scrapes([generate_latest(metrics.registry).decode()], origin="metrics")
    for summary in (from_events, from_metrics):
        assert {src: {k: v for k, v in c.items() if v} for src, c in summary.funnel.items()} == HAND_COUNT
        assert (summary.new_leads, summary.merged) == (4, 1)
        assert summary.new_mql == {"webinar": 1, "google_ads": 1}
        assert summary.won_revenue == {"webinar": 48000.0}


def test_only_escalation_steps_that_did_something_count_in_metrics_and_report(metrics: Metrics) -> None:
    def escalated(step: int, action: str, **outcome: str) -> dict[str, Any]:
        return {"type": "lead.escalated", "lead_id": "l1", "at": T0.isoformat(), "cycle": 1,
                "data": {"team_id": "sdr", "action": action, "step": step, **outcome}}

    events = [escalated(1, "remind", outcome="sent"),
              escalated(2, "reassign", outcome="skipped", why="nobody holds the lead: it waits in the queue"),
              escalated(3, "alert_manager", outcome="not_sent", why="team sdr has no manager webhook"),
              escalated(4, "release_to_pool", outcome="moved"),
              escalated(1, "remind")]  # written before steps had an outcome
    lead_agent._observe(tuple(Outgoing(channel="lead.events", key="l1", value=e) for e in events))
    counted = {action: metrics.registry.get_sample_value("leadflow_sla_escalations_total",
                                                        {"team": "sdr", "action": action})
               for action in ("remind", "reassign", "alert_manager", "release_to_pool")}
    assert counted == {"remind": 2.0, "reassign": None, "alert_manager": None, "release_to_pool": 1.0}
    assert summarize_events(events, origin="test").escalations == {"remind": 2, "release_to_pool": 1}


def test_every_event_names_the_first_touch_source() -> None:
    # A report over a later window sees no capture: the source must be on the events it does see.
    story = Story()
    lead_id, _ = story.capture("ana@example.com", "c1", source="webinar", channel="api", title="Intern")
    story.apply(lead_id, DispositionLead(lead_id=lead_id, status="nurture", reason="later", rep_id=None, at=T0))
    story.capture("ana@example.com", "c2", source="google_ads", channel="api", title="CEO")
    assert len(story.events) >= 4 and {e["first_source"] for e in story.events} == {"webinar"}

"""SLA compliance has one definition: met / (met + missed) per lead-cycle, a miss counted once.

/metrics (``leadflow_sla_outcomes_total``), both modes of ``leadflow report`` and the team windows
(tests/agents/test_team_sla_windows.py) read it through ``ops.metrics.sla_outcome``.
"""
from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from ops.metrics import Metrics, sla_outcome
from ops.report import summarize_events, summarize_scrapes


def _ev(kind: str, lead: str, cycle: int = 1, **data: Any) -> dict[str, Any]:
    return {"type": kind, "lead_id": lead, "cycle": cycle, "at": "2026-03-02T09:30:00+00:00",
            "data": {"team_id": "sdr", **data}}


@pytest.mark.parametrize(("kind", "data", "outcome"), [
    ("lead.sla_breached", {"step": 0}, "missed"),
    ("lead.contacted", {"within_sla": True}, "met"),
    ("lead.contacted", {"within_sla": True, "sla_breached": False}, "met"),
    ("lead.contacted", {"within_sla": False}, "missed"),  # late, and no breach before it
    ("lead.contacted", {"within_sla": False, "sla_breached": True}, None),  # the breach counted it
    ("lead.contacted", {"within_sla": True, "sla_breached": True}, None),  # in time, synced after the breach
    ("lead.activity", {"within_sla": True}, None),
    ("lead.assigned", {}, None),
    ("lead.escalated", {"action": "reassign"}, None),
])
def test_the_outcome_an_event_settles(kind: str, data: dict[str, Any], outcome: str | None) -> None:
    assert sla_outcome(kind, data) == outcome


def test_a_lead_nobody_contacted_counts_in_the_events_report() -> None:
    s = summarize_events([
        _ev("lead.contacted", "in-time", within_sla=True),
        _ev("lead.sla_breached", "nobody-called", step=0),
    ], origin="test")
    assert (s.sla_met, s.sla_missed) == (1, 1)
    assert s.compliance == 0.5  # was 1.0: in-SLA contacts over contacts


def _audit_team() -> list[dict[str, Any]]:
    """The audit's team: 11 leads; 3 called in SLA, 2 breached and called late, 6 breached and never called."""
    events = [_ev("lead.contacted", f"met-{n}", within_sla=True) for n in range(3)]
    for n in range(2):
        events += [_ev("lead.sla_breached", f"late-{n}", step=0),
                   _ev("lead.contacted", f"late-{n}", within_sla=False, sla_breached=True)]
    events += [_ev("lead.sla_breached", f"never-{n}", step=0) for n in range(6)]
    return events


def test_the_audit_team_is_three_in_eleven_from_events_and_from_metrics() -> None:
    events = _audit_team()
    from_events = summarize_events(events, origin="test")
    metrics = Metrics()
    for event in events:
        metrics.count_sla_outcome(event["type"], event["data"])
    from_metrics = summarize_scrapes([generate_latest(metrics.registry).decode()], origin="test")
    for s in (from_events, from_metrics):
        assert (s.sla_met, s.sla_missed) == (3, 8)
        assert s.compliance == pytest.approx(3 / 11)  # was 3 / 5 in the report and Grafana


def test_events_written_before_contacts_said_sla_breached_count_a_late_lead_once() -> None:
    s = summarize_events([
        _ev("lead.sla_breached", "late", step=0),
        _ev("lead.contacted", "late", within_sla=False),  # no sla_breached flag: an older event
        _ev("lead.contacted", "met", within_sla=True),
        # A new cycle of the same lead is judged again.
        _ev("lead.contacted", "late", cycle=2, within_sla=True),
    ], origin="test")
    assert (s.sla_met, s.sla_missed) == (2, 1)


def test_the_counter_is_by_team_and_outcome() -> None:
    metrics = Metrics()
    assert metrics.count_sla_outcome("lead.sla_breached", {"team_id": "sdr"}) == "missed"
    assert metrics.count_sla_outcome("lead.contacted", {"team_id": "sdr", "within_sla": False,
                                                        "sla_breached": True}) is None
    assert metrics.count_sla_outcome("lead.contacted", {"team_id": "ae", "within_sla": True}) == "met"
    text = generate_latest(metrics.registry).decode()
    assert 'leadflow_sla_outcomes_total{outcome="missed",team="sdr"} 1.0' in text
    assert 'leadflow_sla_outcomes_total{outcome="met",team="ae"} 1.0' in text
    assert 'leadflow_sla_outcomes_total{outcome="met",team="sdr"}' not in text


def test_the_dashboard_compliance_is_met_over_settled_leads() -> None:
    from ops.grafana.build import SLA

    panel = next(p for _, row in SLA.rows for p in row if p.title.startswith("SLA compliance"))
    ((expr, _),) = panel.queries
    assert 'leadflow_sla_outcomes_total{outcome="met"' in expr and "leadflow_leads_contacted_total" not in expr

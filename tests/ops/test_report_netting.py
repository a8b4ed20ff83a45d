"""``leadflow report`` counts a deal's final close, net of the closes the CRM took back (a
correction, a reopen), as the dashboard's win rate does (review s18-b F6)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from prometheus_client import generate_latest

from ops.metrics import Metrics
from ops.report.model import summarize_events
from ops.report.sources import summarize_scrapes
from rules.commands import RecordCrmEvent
from tests.rules._sim import T0
from tests.rules.test_lead import LEAD_ID, assigned
from tests.rules.test_lead_crm import BANT_SQL, hot_lead, qualify, step
from tests.rules.test_lead_crm_corrections import RECYCLING

#: Lost, corrected to won, reopened, won again: one deal, won.
PATH = [("lost", {}), ("won", {"amount": 100.0}), ("stage_changed", {"stage": "Negotiation"}), ("won", {"amount": 100.0})]


def lead_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    state, out = step(None, hot_lead(), RECYCLING)
    events += [m.value for m in out if m.channel == "lead.events"]
    for command in (assigned(), qualify(BANT_SQL)):
        state, out = step(state, command, RECYCLING)
        events += [m.value for m in out if m.channel == "lead.events"]
    for i, (kind, extra) in enumerate(PATH):
        state, out = step(state, RecordCrmEvent(lead_id=LEAD_ID, event_id=f"e{i}", kind=kind,  # type: ignore[arg-type]
                                                at=T0 + timedelta(hours=50 + i), **extra), RECYCLING,
                          minutes=60 * (50 + i))
        events += [m.value for m in out if m.channel == "lead.events"]
    assert state.status == "won"
    return events


def test_the_report_from_lead_events_counts_the_deal_won_once() -> None:
    s = summarize_events(lead_events(), "test")
    (funnel,) = s.funnel.values()
    assert (funnel["opportunity"], funnel["won"], funnel["lost"]) == (1, 1, 0)
    assert sum(s.won_revenue.values()) == 100.0


def test_the_report_from_metrics_nets_the_same_moves() -> None:
    m = Metrics()
    m.configure_sources({"partner": (10.0, "EUR")})
    for event in lead_events():
        if event["type"] != "lead.captured":  # the rest of the funnel as the lead agent counts it
            m.lifecycle_move(event["type"], event["data"], "partner", cycle=int(event.get("cycle") or 1))
    s = summarize_scrapes([generate_latest(m.registry).decode()], origin="test")
    assert (s.funnel["partner"]["won"], s.funnel["partner"]["lost"]) == (1, 0)


def test_a_close_taken_back_before_the_window_never_goes_below_zero() -> None:
    m = Metrics()
    m.configure_sources({"partner": (10.0, "EUR")})
    m.lifecycle_move("opportunity.lost", {}, "partner")
    for _ in range(2):  # two losses corrected to won, one of them lost before the workers started
        m.lifecycle_move("opportunity.won", {"from": "lost", "corrects": "lost"}, "partner")
    s = summarize_scrapes([generate_latest(m.registry).decode()], origin="test")
    assert (s.funnel["partner"]["won"], s.funnel["partner"]["lost"]) == (2, 0)

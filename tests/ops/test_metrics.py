"""ops/metrics.py: bounded labels, the lifecycle mapping, and gauges that only the owner reports."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from ops.metrics import LATENCY_BUCKETS, LIFECYCLE, SPEED_BUCKETS, Metrics, TeamFigures, funnel_move


def _value(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return m.registry.get_sample_value(name, labels or {})


def test_sixty_seconds_is_an_exact_bucket_of_every_lead_latency() -> None:
    assert 60.0 in LATENCY_BUCKETS and 60.0 in SPEED_BUCKETS


def test_the_registry_is_injected() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.leads_duplicate.inc()
    assert registry.get_sample_value("leadflow_leads_merged_total") == 1.0
    assert Metrics().registry is not registry  # each Metrics gets a fresh one by default


def test_sources_outside_the_configured_set_are_other() -> None:
    m = Metrics()
    m.configure_sources({"google-ads": (12000.0, "EUR")}, extra=["api"])
    assert m.source("google-ads") == "google-ads" and m.source("api") == "api"
    assert m.source("someone's free text <b>") == "other" and m.source(None) == "other"
    assert _value(m, "leadflow_source_monthly_spend", {"source": "google-ads", "currency": "EUR"}) == 12000.0


def test_lifecycle_events_count_as_stage_moves() -> None:
    m = Metrics()
    m.configure_sources({"google-ads": (1.0, "USD")})
    assert m.lifecycle_move("lead.captured", {}, "google-ads")
    assert m.lifecycle_move("lead.mql", {}, "google-ads")
    assert m.lifecycle_move("opportunity.won", {}, "elsewhere")
    assert m.lifecycle_move("lead.sql", {"from": "working", "to": "sql"}, "google-ads")  # an event may say
    assert not m.lifecycle_move("lead.assigned", {}, "google-ads")
    got = {(s.labels["source"], s.labels["from"], s.labels["to"]): s.value
           for s in m.lifecycle.collect()[0].samples if s.name.endswith("_total")}
    assert got == {("google-ads", "none", "lead"): 1, ("google-ads", "lead", "mql"): 1,
                   ("other", "opportunity", "won"): 1, ("google-ads", "working", "sql"): 1}
    assert {to for _, to in LIFECYCLE.values()} >= {"lead", "mql", "sql", "opportunity", "won", "lost"}


@pytest.mark.parametrize(("kind", "data", "cycle", "move"), [
    ("lead.captured", {}, 1, ("none", "lead")),
    # A known person's new cycle is never a lead again, and its gate says how the cycle began.
    ("lead.reopened", {"source": "google-ads"}, 2, ("closed", "reengaged")),
    ("lead.mql", {}, 1, ("lead", "mql")),
    ("lead.mql", {}, 2, ("reengaged", "mql")),
    ("lead.nurture", {}, 3, ("reengaged", "nurture")),
    ("lead.sql", {}, 2, ("mql", "sql")),  # past the gate a stage is a stage, whatever the cycle
    ("opportunity.won", {}, 2, ("opportunity", "won")),
    # A lost deal routed again starts a new cycle; its way back to nurture is no stage move.
    ("lead.recycled", {"to": "routing"}, 2, ("recycled", "reengaged")),
    ("lead.recycled", {"to": "nurture"}, 1, None),
    ("lead.touched", {}, 1, None),
])
def test_the_funnel_counts_people_once_and_re_engagements_apart(
        kind: str, data: dict[str, str], cycle: int, move: tuple[str, str] | None) -> None:
    assert funnel_move(kind, data, cycle) == move


def test_won_revenue_is_counted_by_first_touch_source_from_zero() -> None:
    m = Metrics()
    m.configure_sources({"google-ads": (1.0, "EUR"), "partner": (1.0, "EUR")})
    # Every source with spend is there before its first win: ROI -100%, and increase() sees the win.
    assert _value(m, "leadflow_won_revenue_total", {"source": "partner"}) == 0.0
    m.won(48000.0, "google-ads")
    m.won(1000, "elsewhere")
    for nothing in (None, 0, -5.0, float("inf"), float("nan"), "1000", True):
        m.won(nothing, "google-ads")
    assert _value(m, "leadflow_won_revenue_total", {"source": "google-ads"}) == 48000.0
    assert _value(m, "leadflow_won_revenue_total", {"source": "other"}) == 1000.0


def test_team_gauges_forget_teams_this_worker_no_longer_owns() -> None:
    m = Metrics()
    figures = TeamFigures(queue_depth=3, open_leads=4, capacity=5, reps_available=2, total_capacity=8,
                          oldest_queued_age_s=12.5)
    m.report_teams({"sdr": figures, "ae": figures})
    assert _value(m, "leadflow_team_utilization_ratio", {"team": "sdr"}) == 0.5
    assert _value(m, "leadflow_team_oldest_queued_age_seconds", {"team": "ae"}) == 12.5
    m.report_teams({"sdr": figures})  # "ae" moved to another worker in a rebalance
    assert _value(m, "leadflow_team_queue_depth", {"team": "ae"}) is None
    assert _value(m, "leadflow_team_reps_available", {"team": "sdr"}) == 2
    m.report_overdue({"sdr": 2})
    m.report_overdue({})
    assert _value(m, "leadflow_sla_overdue_leads", {"team": "sdr"}) is None


def test_utilization_without_any_capacity_is_zero() -> None:
    assert TeamFigures(queue_depth=0, open_leads=0, capacity=0, reps_available=0, total_capacity=0,
                       oldest_queued_age_s=0).utilization == 0.0

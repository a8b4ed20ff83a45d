"""'Available capacity' is free slots everywhere: capacity minus open leads of the available reps,
as GET /v1/teams/{id} says it, in the team gauges and in ``leadflow report``."""
from __future__ import annotations

from datetime import datetime, timezone

from prometheus_client import generate_latest

from ops.metrics import Metrics
from ops.report import render_html, summarize_scrapes
from rules.commands import RepProfile
from rules.roster import RepState
from rules.team import TeamState
from streams.agents.observe import team_figures

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _rep(rep_id: str, capacity: int, load: int, presence: str = "available", elsewhere: int = 0) -> RepState:
    profile = RepProfile(rep_id=rep_id, team_id="sdr", name=rep_id, capacity=capacity)
    return RepState(profile=profile, presence=presence, load=load, held_elsewhere=elsewhere)  # type: ignore[arg-type]


def _state() -> TeamState:
    # ana: 5 slots, 4 taken (one of them a lead of her old team); ben: full; cy: offline.
    return TeamState(team_id="sdr", reps={"ana": _rep("ana", 5, 3, elsewhere=1), "ben": _rep("ben", 3, 3),
                                          "cy": _rep("cy", 4, 0, presence="offline")})


def test_the_team_gauge_is_free_slots_as_the_api_says() -> None:
    figures = team_figures(_state(), NOW, [])
    assert (figures.capacity, figures.free_slots) == (8, 1)
    metrics = Metrics()
    metrics.report_teams({"sdr": figures})
    assert metrics.registry.get_sample_value("leadflow_team_free_slots", {"team": "sdr"}) == 1


def test_the_report_shows_free_slots_by_that_name() -> None:
    metrics = Metrics()
    metrics.report_teams({"sdr": team_figures(_state(), NOW, [])})
    s = summarize_scrapes([generate_latest(metrics.registry).decode()], origin="test")
    (row,) = s.load
    assert (row.open_leads, row.free_slots) == (6, 1)  # not 8, the available reps' capacity
    page = render_html(s, NOW)
    assert "<th>free slots</th>" in page and "available capacity</th>" not in page


def test_reps_eligible_counts_who_could_take_a_lead_now_free_slots_or_not() -> None:
    # Off shift: ana works 00:00-06:00 UTC (it is 12:00); ben has slots and is on shift; cy is at
    # her daily cap; dee is offline. Free slots count ana, ben and cy alike: presence only.
    night = RepProfile(rep_id="ana", team_id="sdr", name="ana", capacity=5, timezone="UTC",
                       working_hours={"mon-sun": ("00:00-06:00",)})
    capped = RepProfile(rep_id="cy", team_id="sdr", name="cy", capacity=5, daily_cap=1)
    state = TeamState(team_id="sdr", reps={
        "ana": RepState(profile=night, presence="available"),
        "ben": _rep("ben", 5, 1),
        "cy": RepState(profile=capped, presence="available").with_lead(NOW),
        "dee": _rep("dee", 5, 0, presence="offline"),
    })
    figures = team_figures(state, NOW, [])
    assert (figures.reps_available, figures.free_slots, figures.reps_eligible) == (3, 13, 1)
    metrics = Metrics()
    metrics.report_teams({"sdr": figures})
    assert metrics.registry.get_sample_value("leadflow_team_reps_eligible", {"team": "sdr"}) == 1

"""The team gauges count who can take leads: a rep who left the team is not among them."""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from rules.commands import RepProfile
from rules.roster import RepState
from rules.team import TeamState
from streams.agents.observe import team_figures

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def rep(rep_id: str, *, capacity: int, load: int = 0, presence: str = "available", departed: bool = False) -> RepState:
    profile = RepProfile(rep_id=rep_id, team_id="t2", name=rep_id, capacity=capacity)
    return RepState(profile=profile, presence=presence, load=load, departed=departed)  # type: ignore[arg-type]


def test_a_departed_rep_holds_open_leads_but_adds_no_availability_or_capacity() -> None:
    # cy moved to another team with two of this team's leads: kept until they are released.
    state = TeamState(team_id="t2", reps={
        "ana": rep("ana", capacity=5, load=1),
        "bo": rep("bo", capacity=4, presence="offline"),
        "cy": rep("cy", capacity=3, load=2, departed=True),
    })
    figures = team_figures(state, NOW, [])
    assert figures.reps_available == 1
    assert figures.capacity == 5
    assert figures.total_capacity == 9
    assert figures.open_leads == 3  # cy's two leads are still this team's open leads


def test_only_the_teams_of_active_partitions_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # The memory store also holds standby copies of the other worker's teams: reporting them
    # froze stale gauges beside the owner's, and sum by (team) double-counted.
    from faust.types import TP

    from ops.metrics import Metrics
    from streams.agents import observe
    from streams.tables.team_record import TeamRecord
    from streams.topics import partition_of, team_commands

    teams = [f"team-{i}" for i in range(40)]
    mine = {partition_of(t) for t in teams[:3]}
    records = {t: TeamRecord(state=TeamState(team_id=t, reps={"ana": rep("ana", capacity=5)})) for t in teams}
    metrics = Metrics()
    monkeypatch.setattr(observe, "team_state", records)
    monkeypatch.setattr(observe, "sla_overdue", {})
    monkeypatch.setattr(observe, "webhook_retries", {})
    monkeypatch.setattr(observe, "runtime", SimpleNamespace(metrics=metrics, clock=SimpleNamespace(now=lambda: NOW)))
    actives = {TP(team_commands.get_topic_name(), p) for p in mine} | {TP("elsewhere", 0)}
    monkeypatch.setattr(observe, "app", SimpleNamespace(assignor=SimpleNamespace(assigned_actives=lambda: actives)))
    observe._report_tables()
    reported = {t for t in teams if metrics.registry.get_sample_value("leadflow_team_capacity", {"team": t}) is not None}
    assert reported == {t for t in teams if partition_of(t) in mine}
    assert 3 <= len(reported) < len(teams)

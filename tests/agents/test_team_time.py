"""A team decides each command at the time it was sent, so a command read again decides the same.

The team agent used to decide at the time it read a command. After a crash it reads again the
commands of batches whose records were lost, later: a rep's working hours may have ended, a daily
cap reset, and the second decision differed from the one the lead was told (found by
tests/rules/test_replay_divergence.py). The record timestamp is the same on every read.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from rules.commands import LeadAssigned, LeadQueued, RepProfile, RouteLead, UpsertRep
from streams.agents import team
from streams.agents.team import sent_at
from streams.tables.team_record import TeamBatch, TeamRecord
from streams.tables.team_state import team_state
from tests.agents.conftest import Published, until

#: A Monday, 16:59:30 UTC: half a minute before rep ``a``'s working day ends.
BEFORE_FIVE = datetime(2026, 3, 2, 16, 59, 30, tzinfo=UTC)


def _upsert(team_id: str) -> UpsertRep:
    profile = RepProfile(rep_id="a", team_id=team_id, capacity=5, working_hours={"mon-fri": ("09:00-17:00",)},
                         webhook_url="https://hooks.example/a")
    return UpsertRep(team_id=team_id, profile=profile, at=BEFORE_FIVE)


def _route(team_id: str, n: int) -> RouteLead:
    return RouteLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1", requested_at=BEFORE_FIVE)


def test_a_command_is_sent_at_its_record_timestamp_never_in_the_future() -> None:
    now = BEFORE_FIVE + timedelta(hours=3)
    assert sent_at(BEFORE_FIVE.timestamp(), now) == BEFORE_FIVE
    assert sent_at((now + timedelta(minutes=5)).timestamp(), now) == now  # a producer's clock ahead
    assert sent_at(None, now) == now and sent_at(0.0, now) == now


def test_a_batch_decides_at_the_time_sent_and_its_clock_never_goes_back() -> None:
    table: dict[str, object] = {}
    first = TeamBatch(table.get)
    first.apply("t", _upsert("t"), BEFORE_FIVE, 0, 0)
    (assigned,) = [m.value for m in first.apply("t", _route("t", 1), BEFORE_FIVE, 0, 1) or ()]
    # Read after 17:00 but sent before: a is still working at the time it was sent.
    assert isinstance(assigned, LeadAssigned) and assigned.assigned_at == BEFORE_FIVE
    for key, value in first.writes("t"):
        table[key] = value
    record = table["t"]
    assert isinstance(record, TeamRecord) and record.time == BEFORE_FIVE

    # A command sent after 17:00 is queued; one sent earlier still (another producer's clock
    # behind) is decided at the team's latest time, not before it.
    later = TeamBatch(table.get)
    (queued,) = [m.value for m in later.apply("t", _route("t", 2), BEFORE_FIVE + timedelta(minutes=1), 0, 2) or ()]
    assert isinstance(queued, LeadQueued)
    (behind,) = [m.value for m in later.apply("t", _route("t", 3), BEFORE_FIVE - timedelta(minutes=5), 0, 3) or ()]
    assert isinstance(behind, LeadQueued) and behind.queued_at == BEFORE_FIVE + timedelta(minutes=1)


async def test_the_agent_decides_at_the_record_timestamp(published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(team, "publish", published)
    team_id = f"team-{uuid.uuid4().hex[:8]}"
    async with team.run_teams.test_context() as agent:
        await agent.put(key=team_id, value=_upsert(team_id), timestamp=BEFORE_FIVE.timestamp())
        await agent.put(key=team_id, value=_route(team_id, 1), timestamp=BEFORE_FIVE.timestamp())
        await agent.put(key=team_id, value=_route(team_id, 2), timestamp=(BEFORE_FIVE + timedelta(minutes=1)).timestamp())
        await until(lambda: len(published.values(LeadAssigned)) + len(published.values(LeadQueued)) == 2)
    # Whenever this test runs, l1 was sent while a worked and l2 after a's day ended.
    (assigned,) = published.values(LeadAssigned)
    (queued,) = published.values(LeadQueued)
    assert (assigned.lead_id, assigned.assigned_at) == ("l1", BEFORE_FIVE)
    assert queued.lead_id == "l2"
    record = team_state[team_id]
    assert isinstance(record, TeamRecord) and record.time == BEFORE_FIVE + timedelta(minutes=1)

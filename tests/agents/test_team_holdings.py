"""The team agent keeps holdings beside the state: a batch reads its own, a restart reads the table's."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from rules.commands import LeadAssigned, ReleaseLead, RepProfile, RouteLead, UpsertRep
from rules.roster import Holding
from streams.agents import team
from streams.tables.team_record import holding_key
from streams.tables.team_state import read_team, team_state
from tests.agents.conftest import Published, replayed, until

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _route(team_id: str, n: int) -> RouteLead:
    return RouteLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1", requested_at=NOW)


def _release(team_id: str, n: int, rep_id: str) -> ReleaseLead:
    return ReleaseLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1", rep_id=rep_id, reason="test", at=NOW)


def _upsert(team_id: str) -> UpsertRep:
    profile = RepProfile(rep_id="a", team_id=team_id, capacity=1, webhook_url="https://hooks.example/a")
    return UpsertRep(team_id=team_id, profile=profile, at=NOW)


async def test_a_batch_that_assigns_and_releases_a_route_reads_its_own_holding(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One batch: l1 is assigned, l2 waits (capacity 1), l1 is released (the holding exists only in
    # the batch's pending writes), so l2 is assigned. Reading the table alone, the release would
    # find nobody holding l1 and l2 would still wait.
    monkeypatch.setattr(team, "publish", published)
    team_id = f"team-{uuid.uuid4().hex[:8]}"
    commands = [_upsert(team_id), _route(team_id, 1), _route(team_id, 2), _release(team_id, 1, "a")]
    # Hand the four over as one batch, however the puts interleave with the agent.
    monkeypatch.setattr(team, "take_ready", lambda stream: stream.take_events(len(commands), within=30.0))
    async with team.run_teams.test_context() as agent:
        for command in commands:
            await agent.put(key=team_id, value=command, wait=False)
        await until(lambda: team_state.get(team_id) is not None)
    assert len(published.batches) == 1, "the commands were not one batch"
    assert [(a.lead_id, a.rep_id) for a in published.values(LeadAssigned)] == [("l1", "a"), ("l2", "a")]
    state = read_team(team_id)
    assert state.reps["a"].load == 1 and state.queue_depth == 0
    # Put then deleted within the batch: l1 never reaches the table; l2's holding does.
    assert holding_key(team_id, "l1:1:1") not in team_state
    held = team_state[holding_key(team_id, "l2:1:1")]
    assert isinstance(held, Holding) and (held.rep_id, held.lead_id) == ("a", "l2")


async def _assign_l1(published: Published, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new team whose one rep ``a`` (capacity 1) was assigned l1, at offsets 0 and 1."""
    monkeypatch.setattr(team, "publish", published)
    team_id = f"team-{uuid.uuid4().hex[:8]}"
    async with team.run_teams.test_context() as agent:
        await agent.put(key=team_id, value=_upsert(team_id))
        await agent.put(key=team_id, value=_route(team_id, 1))
        await until(lambda: holding_key(team_id, "l1:1:1") in team_state)
    return team_id


async def test_a_route_sent_again_in_a_later_run_answers_from_the_table(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    team_id = await _assign_l1(published, monkeypatch)
    before = read_team(team_id)
    async with team.run_teams.test_context() as agent:  # another agent, nothing pending: the table only
        agent.sent_offset = 2  # a new message (the lead sent its RouteLead again), after the first two
        await agent.put(key=team_id, value=_route(team_id, 1))
        await until(lambda: len(published.values(LeadAssigned)) == 2)
    first, again = published.values(LeadAssigned)
    assert (again.rep_id, again.decision.strategy) == (first.rep_id, "replay")
    assert read_team(team_id) == before
    assert before is not None and before.reps["a"].load == 1


async def test_commands_read_again_after_a_crash_are_skipped_at_the_offsets_the_record_applied(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a kill, the team reads again from the last committed offset: the record says which
    # offsets it already holds, and those commands change nothing and send nothing.
    team_id = await _assign_l1(published, monkeypatch)
    record = team_state[team_id]
    assert (record.partition, record.offset) == (0, 1)
    skipped = replayed("team")
    async with team.run_teams.test_context() as agent:  # the same offsets again, then a new one
        await agent.put(key=team_id, value=_upsert(team_id))
        await agent.put(key=team_id, value=_route(team_id, 1))
        await agent.put(key=team_id, value=_route(team_id, 2))
        await until(lambda: len(published.messages) == 2)
    assert replayed("team") - skipped == 2
    assert [(type(m.value).__name__, m.value.lead_id) for m in published.messages] == [
        ("LeadAssigned", "l1"), ("LeadQueued", "l2")]
    state = read_team(team_id)
    assert state is not None and state.reps["a"].load == 1 and state.queue_depth == 1

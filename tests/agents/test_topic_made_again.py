"""A command topic deleted and made again, while the tables' changelogs stay, loses no command.

The lead and team agents skip a command read at or below the offset their state last applied (a
replay after a crash). A topic made again begins its offsets at 0, so by that rule every new
command up to the old mark was "a replay": a new lead never routed, a disposition never applied.
A mark at or past the partition's end (its high watermark) is not of this topic, and is ignored
(``streams.agents._batch.end_offset``).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from rules.commands import DispositionLead, LeadAssigned, RepProfile, RouteLead, UpsertRep
from rules.team import new_team
from streams.agents import _batch, lead, team
from streams.tables.team_record import TeamRecord
from streams.tables.team_state import team_state
from tests.agents.conftest import Published, replayed, until
from tests.agents.test_lead_replay import closed_and_reopened, lead_of

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

#: Where the partition ends, as the consumer saw it: right after the message (a topic made
#: again, holding only the new commands), or far past it (the same topic, read again).
MADE_AGAIN: Callable[[Any], int] = lambda message: message.offset + 1  # noqa: E731
SAME_TOPIC: Callable[[Any], int] = lambda message: 1_000  # noqa: E731


def _upsert(team_id: str, rep_id: str) -> UpsertRep:
    profile = RepProfile(rep_id=rep_id, team_id=team_id, capacity=10, webhook_url=f"https://hooks.example/{rep_id}")
    return UpsertRep(team_id=team_id, profile=profile, at=NOW)


def _route(team_id: str, n: int) -> RouteLead:
    return RouteLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1", requested_at=NOW)


@pytest.mark.parametrize("end", [None, 0, 3, 4])
def test_a_mark_inside_the_partition_is_a_replay_and_one_past_its_end_is_not(end: int | None) -> None:
    # The record applied offset 3 of partition 0. The partition ends (one past its newest record)
    # at `end`: past 3 if 3 is one of its offsets; at or before it only if the topic began anew.
    # (LeadState.applied is the same rule: the lead agent's test below.)
    record = TeamRecord(state=new_team("t"), partition=0, offset=3)
    replay = end is None or end > 3
    assert [record.applied(0, o, end) for o in (2, 3, 4)] == [replay, replay, False]
    assert not record.applied(1, 2, end)


@pytest.mark.parametrize("end_offset, routed", [(MADE_AGAIN, True), (SAME_TOPIC, False)], ids=["made-again", "same-topic"])
async def test_the_team_routes_a_new_command_below_its_old_mark(
    published: Published, monkeypatch: pytest.MonkeyPatch, end_offset: Callable[[Any], int], routed: bool
) -> None:
    monkeypatch.setattr(team, "publish", published)
    team_id = f"team-{uuid.uuid4().hex[:8]}"
    async with team.run_teams.test_context() as agent:
        await agent.put(key=team_id, value=_upsert(team_id, "ana"))
        for n in range(1, 6):
            await agent.put(key=team_id, value=_route(team_id, n))
        await until(lambda: len(published.values(LeadAssigned)) == 5)
    record = team_state[team_id]
    assert isinstance(record, TeamRecord) and record.offset == 5
    skipped = replayed("team")

    monkeypatch.setattr(team, "end_offset", end_offset)
    async with team.run_teams.test_context() as agent:  # the restarted worker, on the new topic
        agent.sent_offset = 0
        await agent.put(key=team_id, value=_route(team_id, 6))
        await until(lambda: len(published.values(LeadAssigned)) == 6 or replayed("team") > skipped)
    assigned = [a.lead_id for a in published.values(LeadAssigned)]
    if routed:
        assert assigned[-1] == "l6" and replayed("team") == skipped
        record = team_state[team_id]
        assert isinstance(record, TeamRecord) and record.offset == 0  # marked in the new topic
    else:
        assert "l6" not in assigned and replayed("team") == skipped + 1


@pytest.mark.parametrize("end_offset, applied", [(MADE_AGAIN, True), (SAME_TOPIC, False)], ids=["made-again", "same-topic"])
async def test_the_lead_applies_a_new_command_below_its_old_mark(
    published: Published, monkeypatch: pytest.MonkeyPatch, end_offset: Callable[[Any], int], applied: bool
) -> None:
    lead_id, _ = await closed_and_reopened(published, monkeypatch)
    before = lead_of(lead_id)
    assert (before.applied_offset, before.routing) == (4, "assigned")
    skipped = replayed("lead")

    monkeypatch.setattr(_batch, "end_offset", end_offset)
    async with lead.run_leads.test_context() as agent:  # ben closes the lead, on the new topic
        agent.sent_offset = 0
        await agent.put(key=lead_id, value=DispositionLead(lead_id=lead_id, status="nurture", reason=None,
                                                           rep_id="ben", at=NOW))
        await until(lambda: lead_of(lead_id) != before or replayed("lead") > skipped)
    after = lead_of(lead_id)
    if applied:
        assert after.routing == "released" and (after.applied_partition, after.applied_offset) == (0, 0)
        assert replayed("lead") == skipped
    else:
        assert after == before and replayed("lead") == skipped + 1

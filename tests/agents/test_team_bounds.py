"""The team agent refuses a rep past the team's bounds, and no table value too big for Kafka is written.

A security audit grew one team's state past Kafka's 1 MB record limit with PUTs of large reps:
the producer refused the changelog record, the worker crashed, and crashed again at every restart.
"""
from __future__ import annotations

import itertools
import logging
import uuid
import weakref
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from faust.streams import _current_event
from faust.types import TP

import rules.team
from rules.commands import LeadAssigned, RepProfile, ReportJoin, RouteLead, SetPresence, UpsertRep
from rules.roster import Holding
from streams.agents import team
from streams.app import app, runtime
from streams.codec import SCHEMA, encode
from streams.tables._table import RECORD_OVERHEAD, CodecTable
from streams.tables.team_record import TeamRecord
from streams.tables.team_state import read_team, team_state
from tests.agents.conftest import Published, until

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _profile(team_id: str, rep_id: str, *, big: bool = False) -> RepProfile:
    if big:  # the audit's rep: ~9 KB of name, skills, languages and webhook URL
        return RepProfile(rep_id=rep_id, team_id=team_id, name="Secret Person " * 14,
                          skills=tuple(f"{i:02d}" + "s" * 62 for i in range(50)),
                          languages=tuple(f"{i:02d}" + "l" * 62 for i in range(50)),
                          webhook_url="https://hooks.example.com/" + "p" * 1970)
    return RepProfile(rep_id=rep_id, team_id=team_id, name="Secret Person", email="secret.person@example.com",
                      webhook_url=f"https://hooks.example.com/{rep_id}")


def _upsert(team_id: str, rep_id: str, *, big: bool = False) -> UpsertRep:
    return UpsertRep(team_id=team_id, profile=_profile(team_id, rep_id, big=big), at=NOW)


def _route(team_id: str, n: int) -> RouteLead:
    return RouteLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1", requested_at=NOW)


def _failures(agent: str) -> float:
    return runtime.metrics.registry.get_sample_value("leadflow_command_failures_total", {"agent": agent}) or 0.0


async def test_a_rep_past_the_cap_is_refused_logged_counted_and_shown(
        published: Published, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(team, "publish", published)
    monkeypatch.setattr(rules.team, "MAX_REPS", 2)
    team_id = f"team-{uuid.uuid4().hex[:8]}"
    failures = _failures("team")
    with caplog.at_level(logging.WARNING, logger="streams.agents.team"):
        async with team.run_teams.test_context() as agent:
            for rep_id in ("a", "b", "c"):
                await agent.put(key=team_id, value=_upsert(team_id, rep_id))
            await agent.put(key=team_id, value=_route(team_id, 1))
            await until(lambda: bool(published.values(LeadAssigned)))
    state = read_team(team_id)
    assert state is not None and set(state.reps) == {"a", "b"}
    [refusal] = state.refused_reps
    assert refusal.rep_id == "c" and "the most a team may have (2" in refusal.reason
    assert _failures("team") == failures + 1
    [line] = [r.getMessage() for r in caplog.records if "refused rep" in r.getMessage()]
    assert line.startswith(f"team {team_id} refused rep c: ")
    assert "Secret Person" not in caplog.text and "example.com" not in caplog.text
    # The worker goes on: the lead after the refusal is routed to a rep the team holds.
    [assigned] = published.values(LeadAssigned)
    assert assigned.rep_id in {"a", "b"}


async def test_a_team_value_too_big_for_kafka_is_not_written_nor_its_messages_sent_and_the_agent_goes_on(
        published: Published, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The table's own bound, behind the team's: here lower than the team's budget, to reach it.

    The agent checks the record before it sends the batch's messages: a team whose record the
    table would refuse sends none of them either (here the answer to a move, which would have
    moved the rep into a team that never recorded them).
    """
    monkeypatch.setattr(team, "publish", published)
    monkeypatch.setattr(team_state, "max_value_bytes", 6000)
    team_id = f"team-{uuid.uuid4().hex[:8]}"
    failures, table_failures = _failures("team"), _failures("team_state")
    async with team.run_teams.test_context() as agent:
        await agent.put(key=team_id, value=_upsert(team_id, "a"))
        await until(lambda: read_team(team_id) is not None)
        with caplog.at_level(logging.ERROR, logger="streams.agents.team"):
            await agent.put(key=team_id, value=replace(_upsert(team_id, "huge", big=True), join=3))
            await until(lambda: _failures("team") > failures)
        await agent.put(key=team_id, value=_route(team_id, 1))
        await until(lambda: bool(published.values(LeadAssigned)))
    state = read_team(team_id)
    assert state is not None and set(state.reps) == {"a"}  # the record before the refused write
    [assigned] = published.values(LeadAssigned)
    assert assigned.rep_id == "a"
    assert published.values(ReportJoin) == []  # the dropped batch's answer was never sent
    assert _failures("team_state") == table_failures  # caught before the table's own guard
    assert f"team {team_id}: this batch's record would take" in caplog.text
    assert "Secret Person" not in caplog.text


async def test_the_worst_batches_never_reach_the_tables_bound(
        published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    """A roster at its byte budget, then a full batch of the largest waiting leads, then reps freeing
    up with room for all of them: each record written stays under what Kafka takes, and neither
    the agent's check nor the table's guard ever fires (before JOURNAL_BYTES, the batch of leads
    made one record of ~1.1 MB: the table refused it, after its LeadQueued answers were sent)."""
    monkeypatch.setattr(team, "publish", published)
    team_id = f"team-{uuid.uuid4().hex[:8]}"
    table_failures = _failures("team_state")
    sizes: list[tuple[int, int]] = []  # (record bytes, journal entries) of every record written
    too_big = team._too_big

    def measured(team_id: str, writes: list[tuple[str, Any]]) -> bool:
        for key, value in writes:
            if key == team_id and isinstance(value, TeamRecord):
                sizes.append((len(encode(value)), len(value.journal)))
        return too_big(team_id, writes)

    monkeypatch.setattr(team, "_too_big", measured)
    async with team.run_teams.test_context() as agent:
        for i in range(80):  # until the byte budget refuses them
            profile = replace(_profile(team_id, f"r{i:02d}", big=True), capacity=1000)
            await agent.put(key=team_id, value=UpsertRep(team_id=team_id, profile=profile, at=NOW), wait=False)
        await until(lambda: (read_team(team_id) is not None
                             and len(read_team(team_id).reps) + len(read_team(team_id).refused_reps) == 80))
        failures = _failures("team")  # the refusals count as failed commands
        state = read_team(team_id)
        assert state is not None and rules.team.state_bytes(state) > rules.team.STATE_BYTES_BUDGET * 0.95
        roster = sorted(state.reps)
        for rep_id in roster:
            await agent.put(key=team_id, value=SetPresence(team_id=team_id, rep_id=rep_id, status="busy", at=NOW),
                            wait=False)
        for n in range(200):  # one batch (BATCH) of the largest leads a lead agent sends
            await agent.put(key=team_id, value=replace(_route(team_id, n), excluded_reps=tuple(
                f"gone-{k:02d}-" + "x" * 55 for k in range(40))), wait=False)
        await until(lambda: (read_team(team_id) or state).queue_depth == 200)
        for rep_id in roster[:3]:
            await agent.put(key=team_id, value=SetPresence(team_id=team_id, rep_id=rep_id, status="available",
                                                           at=NOW), wait=False)
        await until(lambda: (read_team(team_id) or state).queue_depth == 0)
    assert _failures("team") == failures and _failures("team_state") == table_failures
    assert max(size for size, _ in sizes) <= team_state.max_value_bytes
    assert len(published.values(LeadAssigned)) == 200


def test_the_record_budget_adds_up_to_less_than_kafka_takes() -> None:
    """What a team's record can hold at worst, part by part, fits the table's bound.

    The roster at its budget; what the state grows by beside it after the last rep was taken in
    (each rep's counters, the released routes, refusals, recent assignments, lanes); the journal
    up to JOURNAL_BYTES; and one more command's side writes past it (a queue entry, DRAIN_MAX leads).
    """
    from rules.roster import RepState
    from streams.tables.team_record import JOURNAL_BYTES, SideWrite, holding_key, queue_key, route_key

    limit = team_state.max_value_bytes
    big_id = "t" * 64
    # The state's growth: every rep's counters from their first values to large ones.
    profile = RepProfile(rep_id="r" * 64, team_id=big_id)
    fresh = RepState(profile=profile, presence="available")
    grown = replace(fresh, presence="offline", load=10**9, assigned_total=10**12, last_assigned_at=NOW,
                    credit=-10**9, day="2026-03-02", day_count=10**6, week="2026-W10", week_count=10**7,
                    departed=True, left_move=10**6, held_elsewhere=10**6, awaiting_handover=True)
    per_rep = len(orjson.dumps(grown)) - len(orjson.dumps(fresh))
    route_id = "ld_" + "f" * 24 + ":999999:999999"
    bounded = rules.team.TeamState(
        team_id=big_id, released_routes=(route_id,) * 256, recent_assignments=(NOW,) * 50,
        refused_reps=tuple(rules.team.RepRefusal(rep_id="r" * 64, reason="x" * 400, at=NOW) for _ in range(20)),
        lanes=tuple(rules.team.Lane(priority=p, head=10**15, tail=10**15, holes=10**6) for p in range(10)))
    growth = rules.team.MAX_REPS * per_rep + rules.team.state_bytes(bounded)
    # One command past JOURNAL_BYTES: the largest queue entry and its slot, DRAIN_MAX leads assigned.
    lead = RouteLead(team_id=big_id, lead_id="ld_" + "f" * 24, route_id=route_id, requested_at=NOW,
                     excluded_reps=("r" * 64,) * rules.team.MAX_REPS, required_skills=("s",) * 100,
                     language="l" * 200, country="FR", region="FR-75", account_owner="r" * 64)
    entry = (len(orjson.dumps(SideWrite.of(queue_key(big_id, 10**15), lead)))
             + len(orjson.dumps(SideWrite.of(route_key(big_id, route_id), rules.team.QueueSlot(seq=10**15)))))
    one_lead = (len(orjson.dumps(SideWrite.of(queue_key(big_id, 10**15), None)))
                + len(orjson.dumps(SideWrite.of(route_key(big_id, route_id), None)))
                + len(orjson.dumps(SideWrite.of(holding_key(big_id, route_id), Holding(
                    rep_id="r" * 64, lead_id="ld_" + "f" * 24, assigned_at=NOW)))) + 3)
    worst = rules.team.STATE_BYTES_BUDGET + growth + JOURNAL_BYTES + entry + rules.team.DRAIN_MAX * one_lead
    assert worst + len(b'{"type":"TeamRecord","data":{"state":,"journal":[],"partition":-1,"offset":-1,"time":""}}') \
        + 64 < limit, (growth, entry, one_lead, worst, limit)


# --- the table's bound, directly -----------------------------------------------------------

_names = itertools.count()


class _Event:
    def __init__(self, message: Any) -> None:
        self.message = message


def test_the_bound_is_what_the_producer_takes_less_a_margin() -> None:
    table = CodecTable(app, name=f"value_limit_test_{next(_names)}", key_type=str, schema=SCHEMA, store="memory://")
    assert table.max_value_bytes == app.conf.producer_max_request_size - RECORD_OVERHEAD
    assert 900_000 < table.max_value_bytes < 1_000_000


def test_a_value_over_the_bound_leaves_the_old_one_in_store_and_changelog(monkeypatch: pytest.MonkeyPatch) -> None:
    table = CodecTable(app, name=f"value_limit_test_{next(_names)}", key_type=str, schema=SCHEMA, store="memory://")
    sent: list[tuple[Any, Any]] = []

    def send(self: Any, partition: Any, key: Any, value: Any, key_serializer: Any = None,
             value_serializer: Any = None) -> Any:
        sent.append((key, value))
        return SimpleNamespace(message=SimpleNamespace(partition=partition))

    monkeypatch.setattr(faust.Table, "send_changelog", send)
    small = TeamRecord(state=rules.team.new_team("t1"))
    big = TeamRecord(state=rules.team.apply(None, _upsert("t1", "huge", big=True), NOW, _NoQueue()).state)
    table.max_value_bytes = len(encode(small)) + 100
    event = _Event(SimpleNamespace(tp=TP("team.commands", 0), partition=0, offset=0, topic="team.commands"))
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    monkeypatch.setattr(table, "_verify_source_topic_partitions", lambda topic: None)
    try:
        table["t1"] = small
        failures = _failures(table.name)
        table["t1"] = big  # refused: no exception reaches the agent
    finally:
        _current_event.reset(token)
    assert table["t1"] == small
    assert sent == [("t1", encode(small))]  # the changelog got the small value, encoded once, and nothing else
    assert _failures(table.name) == failures + 1


class _NoQueue:
    def get(self, seq: int) -> None:
        return None

    def contains(self, route_id: str) -> bool:
        return False

    def seq_of(self, route_id: str) -> None:
        return None

    def holding(self, route_id: str) -> None:
        return None

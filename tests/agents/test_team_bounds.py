"""The team agent refuses a rep past the team's bounds, and no table value too big for Kafka is written.

A security audit grew one team's state past Kafka's 1 MB record limit with PUTs of large reps:
the producer refused the changelog record, the worker crashed, and crashed again at every restart.
"""
from __future__ import annotations

import itertools
import logging
import uuid
import weakref
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.streams import _current_event
from faust.types import TP

import rules.team
from rules.commands import LeadAssigned, RepProfile, RouteLead, UpsertRep
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


async def test_a_team_value_too_big_for_kafka_is_not_written_and_the_agent_goes_on(
        published: Published, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The table's own bound, behind the team's: here lower than the team's budget, to reach it."""
    monkeypatch.setattr(team, "publish", published)
    monkeypatch.setattr(team_state, "max_value_bytes", 6000)
    team_id = f"team-{uuid.uuid4().hex[:8]}"
    failures = _failures("team_state")
    async with team.run_teams.test_context() as agent:
        await agent.put(key=team_id, value=_upsert(team_id, "a"))
        await until(lambda: read_team(team_id) is not None)
        with caplog.at_level(logging.ERROR, logger="streams.tables._table"):
            await agent.put(key=team_id, value=_upsert(team_id, "huge", big=True))
            await until(lambda: _failures("team_state") > failures)
        await agent.put(key=team_id, value=_route(team_id, 1))
        await until(lambda: bool(published.values(LeadAssigned)))
    state = read_team(team_id)
    assert state is not None and set(state.reps) == {"a"}  # the record before the refused write
    [assigned] = published.values(LeadAssigned)
    assert assigned.rep_id == "a"
    assert f"table team_state: refused to write the TeamRecord under key {team_id}" in caplog.text
    assert "Secret Person" not in caplog.text


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

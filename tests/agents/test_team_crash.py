"""A worker killed between any two of a team batch's table writes leaves the team whole.

The model of a crash (``streams/tables/team_record.py``): the team table is rebuilt from a
prefix of its changelog (the writes in the order ``TeamBatch.writes`` gives them), and the
batches are replayed from one not yet committed. Every cut of the changelog, and every batch
to replay from, must end in the same table as a run without a crash, and a replay must never
tell a route another rep than the first run did.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.commands import (
    DrainQueue, LeadAssigned, Outgoing, ReleaseLead, RepProfile, RouteLead, SetPresence, TeamCommand, UpsertRep,
    WithdrawLead,
)
from rules.roster import Holding
from rules.team import QueueSlot
from streams.tables.team_record import TeamBatch, TeamRecord, holding_key

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TEAM = "sdr"
PARTITION = 3

Write = tuple[str, Any]


@dataclass
class Run:
    """Batches applied to a dict table, with the changelog they wrote."""

    table: dict[str, Any] = field(default_factory=dict)
    changelog: list[Write] = field(default_factory=list)
    #: for each batch, how many changelog records existed once its writes were done
    ends: list[int] = field(default_factory=list)
    published: list[Outgoing] = field(default_factory=list)
    #: for each batch, how many messages were published once it was (before its writes)
    sent: list[int] = field(default_factory=list)

    def batch(self, commands: list[tuple[int, TeamCommand]], at: datetime) -> None:
        batch = TeamBatch(self.table.get)
        for offset, command in commands:
            self.published += batch.apply(command.team_id, command, at, PARTITION, offset) or ()
        self.sent.append(len(self.published))
        for team_id, _ in list(batch.states()):
            for key, value in batch.writes(team_id):
                self.changelog.append((key, value))
                _put(self.table, key, value)
        self.ends.append(len(self.changelog))


def _put(table: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def _route(n: int) -> RouteLead:
    return RouteLead(team_id=TEAM, lead_id=f"l{n}", route_id=f"l{n}:1:1", requested_at=NOW, priority=n % 3)


def _command(op: tuple[Any, ...], table: dict[str, Any], at: datetime) -> TeamCommand:
    """One concrete command. A release names the rep that holds the route now, as the lead's would
    (a lead releases only what it was told it holds); without one it names nobody and is stale."""
    kind = op[0]
    if kind == "route":
        return _route(op[1])
    if kind == "release":
        held = table.get(holding_key(TEAM, f"l{op[1]}:1:1"))
        rep_id = held.rep_id if isinstance(held, Holding) else "nobody"
        return ReleaseLead(team_id=TEAM, lead_id=f"l{op[1]}", route_id=f"l{op[1]}:1:1", rep_id=rep_id,
                           reason="test", at=at)
    if kind == "withdraw":
        return WithdrawLead(team_id=TEAM, lead_id=f"l{op[1]}", route_id=f"l{op[1]}:1:1", reason="overflow", at=at)
    if kind == "presence":
        return SetPresence(team_id=TEAM, rep_id=op[1], status=op[2], at=at)
    return DrainQueue(team_id=TEAM, at=at)


Batch = list[tuple[int, TeamCommand]]


def _reference(capacities: tuple[int, int], batches: list[list[tuple[Any, ...]]]) -> tuple[Run, list[Batch]]:
    """The run without a crash, and its batches of commands with their offsets in team.commands."""
    run = Run()
    upserts = [UpsertRep(team_id=TEAM, profile=RepProfile(rep_id=rep, team_id=TEAM, capacity=cap), at=NOW)
               for rep, cap in zip("ab", capacities)]
    concrete: list[Batch] = [list(enumerate(upserts))]
    run.batch(concrete[0], NOW)
    offset = len(upserts)
    for i, ops in enumerate(batches, start=1):
        at = NOW + timedelta(seconds=i)
        commands = [(offset + n, _command(op, run.table, at)) for n, op in enumerate(ops)]
        offset += len(ops)
        concrete.append(commands)
        run.batch(commands, at)
    return run, concrete


def _contents(table: dict[str, Any]) -> dict[str, Any]:
    return {key: value.state if isinstance(value, TeamRecord) else value for key, value in table.items()}


def _assert_whole(table: dict[str, Any]) -> None:
    record = table[TEAM]
    assert isinstance(record, TeamRecord)
    held = Counter(v.rep_id for k, v in table.items() if k.startswith(f"{TEAM}#"))
    assert {rep: state.load for rep, state in record.state.reps.items()} == {rep: held[rep] for rep in record.state.reps}
    entries = {k: v for k, v in table.items() if isinstance(v, RouteLead)}
    assert record.state.queue_depth == len(entries)
    slots = {k: v for k, v in table.items() if isinstance(v, QueueSlot)}
    assert {f"{TEAM}@{e.route_id}": QueueSlot(seq=int(k.split(":")[-1])) for k, e in entries.items()} == slots


_ops = st.one_of(
    st.tuples(st.just("route"), st.integers(0, 7)),
    st.tuples(st.just("release"), st.integers(0, 7)),
    st.tuples(st.just("withdraw"), st.integers(0, 7)),
    st.tuples(st.just("presence"), st.sampled_from("ab"), st.sampled_from(["available", "offline"])),
    st.tuples(st.just("drain")),
)


@settings(max_examples=1000, deadline=None)
@given(
    capacities=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    batches=st.lists(st.lists(_ops, min_size=1, max_size=5), min_size=1, max_size=6),
    data=st.data(),
)
def test_a_crash_between_any_two_writes_leaves_the_team_whole(
    capacities: tuple[int, int], batches: list[list[tuple[Any, ...]]], data: st.DataObject
) -> None:
    reference, commands = _reference(capacities, batches)
    _assert_whole(reference.table)
    cut = data.draw(st.integers(0, len(reference.changelog)), label="changelog records kept")
    # The batch being written at the cut; its input offsets (and maybe earlier ones) are not committed.
    crashed = next((i for i, end in enumerate(reference.ends) if end > cut), len(commands) - 1)
    start = data.draw(st.integers(0, crashed), label="replay from batch")

    restarted = Run()
    for key, value in reference.changelog[:cut]:
        _put(restarted.table, key, value)
    for i in range(start, len(commands)):
        restarted.batch(commands[i], NOW + timedelta(seconds=i))

    # The same team (a record's journal may differ: which batch last wrote it).
    assert _contents(restarted.table) == _contents(reference.table)
    _assert_whole(restarted.table)
    # What the killed worker had sent (a batch sends before it writes) and what the restarted one sent agree.
    told: dict[str, set[str]] = {}
    for message in [*reference.published[:reference.sent[crashed]], *restarted.published]:
        if isinstance(message.value, LeadAssigned):
            told.setdefault(message.value.route_id, set()).add(message.value.rep_id)
    assert all(len(reps) == 1 for reps in told.values()), told

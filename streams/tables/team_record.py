"""A team's table record, its side keys read through the record's journal, and a batch's writes in crash-safe order.

The team agent keeps, in one table (``streams/tables/team_state.py``), a ``TeamRecord`` under
the team's id and the team's side keys beside it: queue entries, the queue's route index and
the holdings (``rules/team.py`` says why they live outside the state). A batch of commands
changes the record and some side keys, and a worker can die between any two of those writes.

Three things make every crash leave a team whole:

* **One changelog partition.** Record and side keys are in one table, written for the team's
  partition, so Kafka keeps their changelog records in the order they were written (the
  producer has one batch in flight per partition).
* **The restore is that changelog, exactly.** The table lives in memory and is rebuilt from its
  changelog on start, so what a restarted worker sees is the writes up to some point, in order.
  (A RocksDB store keeps local writes the changelog never got, and its restore replays the
  changelog over them: each key comes back older or newer on its own.)
* **The record goes first, with the batch's side writes in it** (``journal``). If the record
  of a batch is in the changelog, its side writes are readable from it even when some of them
  never reached Kafka; if it is not, no side write of the batch is either (they come after).

So readers see the side keys through the record's journal (``TeamSide``), and before writing
the next record a batch writes any journal entry the table does not hold yet (``TeamBatch``):
the journal is only ever replaced once its writes are in the table.

The journal is the part of the record that grows with the batch, so it is bounded: the agent
writes a batch out once a team's journal reaches ``JOURNAL_BYTES`` (``TeamBatch.journal_bytes``)
and goes on with the rest of it as a new batch, and one command adds a bounded amount
(``rules.team.DRAIN_MAX`` leads at most, one queue entry). With the roster's budget
(``rules.team.STATE_BYTES_BUDGET``) and what the state grows by beside the roster, a record
stays under what Kafka takes (tests/agents/test_team_bounds.py sums the worst case).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from rules.commands import Outgoing, RouteLead, TeamCommand
from rules.roster import Holding
from rules.team import HoldingWrite, QueueSlot, QueueWrite, TeamState, apply

__all__ = ["JOURNAL_BYTES", "SideValue", "SideWrite", "TeamRecord", "TeamSide", "TeamBatch", "queue_key", "route_key", "holding_key"]

#: A team's journal in one batch reaches at most this many bytes (encoded) before the agent writes
#: the batch out, plus what one command adds (``rules.team.DRAIN_MAX`` leads, one queue entry).
JOURNAL_BYTES = 200_000

#: What a team's side key holds.
SideValue = RouteLead | QueueSlot | Holding


def queue_key(team_id: str, seq: int) -> str:
    return f"{team_id}:{seq}"


def route_key(team_id: str, route_id: str) -> str:
    return f"{team_id}@{route_id}"


def holding_key(team_id: str, route_id: str) -> str:
    return f"{team_id}#{route_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SideWrite:
    """One side-key write of a batch: its new value in the field of its kind, or none of them (a delete)."""

    key: str
    entry: RouteLead | None = None
    slot: QueueSlot | None = None
    holding: Holding | None = None

    @property
    def value(self) -> SideValue | None:
        if self.entry is not None:
            return self.entry
        return self.slot if self.slot is not None else self.holding

    @classmethod
    def of(cls, key: str, value: SideValue | None) -> SideWrite:
        if isinstance(value, RouteLead):
            return cls(key=key, entry=value)
        if isinstance(value, QueueSlot):
            return cls(key=key, slot=value)
        return cls(key=key, holding=value)


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamRecord:
    """What the team table keeps under a team's id: its state, the side writes of the batch that
    wrote it, and where in ``team.commands`` the last command it applied was."""

    state: TeamState
    journal: tuple[SideWrite, ...] = ()
    #: The partition and offset of the last command applied (-1: none known).
    partition: int = -1
    offset: int = -1
    #: The team's clock: the time its last command was decided at (``TeamBatch.apply``).
    time: datetime | None = None

    def applied(self, partition: int, offset: int, end: int | None = None) -> bool:
        """Whether the command at this position is already in this record (a replay).

        ``end``: where that partition ends now, if known; a mark at or past it is from a topic
        since deleted and made again (``LeadState.applied``), and the command is new.
        """
        return (offset >= 0 and partition == self.partition and offset <= self.offset
                and (end is None or self.offset < end))


#: Reads one key of the team table (``None``: absent).
Read = Callable[[str], Any]


class TeamSide:
    """A team's side keys as seen from its record: this batch's writes over the journal over the table.

    The ``QueueReader`` the rules read, for the agent (which also writes through it) and for views.
    """

    def __init__(self, team_id: str, read: Read, journal: tuple[SideWrite, ...] = ()) -> None:
        self.team_id = team_id
        self._table = read
        self._journal = {write.key: write.value for write in journal}
        #: table key -> the value this batch writes (``None``: delete), in the order written
        self.pending: dict[str, SideValue | None] = {}
        #: table key -> the bytes its entry takes in the journal (``SideWrite``, encoded)
        self._sizes: dict[str, int] = {}
        #: The journal's bytes so far: the sum of ``_sizes``.
        self.journal_bytes = 0

    def _put(self, key: str, value: SideValue | None) -> None:
        self.pending[key] = value
        size = len(orjson.dumps(SideWrite.of(key, value))) + 1  # the comma between entries
        self.journal_bytes += size - self._sizes.get(key, 0)
        self._sizes[key] = size

    def _read(self, key: str) -> Any:
        if key in self.pending:
            return self.pending[key]
        if key in self._journal:
            return self._journal[key]
        return self._table(key)

    def get(self, seq: int) -> RouteLead | None:
        value = self._read(queue_key(self.team_id, seq))
        return value if isinstance(value, RouteLead) else None

    def contains(self, route_id: str) -> bool:
        return self._read(route_key(self.team_id, route_id)) is not None

    def seq_of(self, route_id: str) -> int | None:
        slot = self._read(route_key(self.team_id, route_id))
        return slot.seq if isinstance(slot, QueueSlot) else None

    def holding(self, route_id: str) -> Holding | None:
        value = self._read(holding_key(self.team_id, route_id))
        return value if isinstance(value, Holding) else None

    def write(self, write: QueueWrite) -> None:
        key = queue_key(self.team_id, write.seq)
        if write.entry is None:
            gone = self.get(write.seq)
            if gone is not None:
                self._put(key, None)
                self._put(route_key(self.team_id, gone.route_id), None)
        else:
            self._put(key, write.entry)
            self._put(route_key(self.team_id, write.entry.route_id), QueueSlot(seq=write.seq))

    def hold(self, write: HoldingWrite) -> None:
        self._put(holding_key(self.team_id, write.route_id), write.holding)


class _Team:
    def __init__(self, team_id: str, read: Read) -> None:
        value = read(team_id)
        self.before: TeamRecord | None = value if isinstance(value, TeamRecord) else None
        self.state: TeamState | None = self.before.state if self.before is not None else None
        self.side = TeamSide(team_id, read, self.before.journal if self.before is not None else ())
        self.position = (self.before.partition, self.before.offset) if self.before is not None else (-1, -1)
        self.time = self.before.time if self.before is not None else None
        self.changed = False  # whether this batch applied a command to the team


class TeamBatch:
    """One batch of team commands: decided in order over the table, then written in crash-safe order.

    ``read`` reads the team table (no writes happen until ``writes``). Pure apart from it, so
    the crash property test (tests/agents/test_team_crash.py) runs it over a dict.
    """

    def __init__(self, read: Read) -> None:
        self._read = read
        self._teams: dict[str, _Team] = {}

    def apply(self, team_id: str, command: TeamCommand, sent_at: datetime,
              partition: int = -1, offset: int = -1,
              end: Callable[[], int | None] | None = None) -> tuple[Outgoing, ...] | None:
        """Apply one command, read at ``partition``/``offset``, to its team as this batch left it.

        The command is decided at the time it was sent (``sent_at``, its record's timestamp), or
        at the team's last decision time if that is later: a team's clock never goes back. So a
        command read again after a crash meets the same state at the same time, and is decided
        as it was the first time, even where the decision depends on the clock (working hours,
        daily caps, a drain).

        ``None``: the team's record already applied it (replayed after a crash, from an offset
        committed before the record was written); its messages were sent before the record.
        ``end()`` tells where the partition ends now, if known (``TeamRecord.applied``); it is
        asked only for a command at or below the record's offset.
        If ``rules.team.apply`` raises, the team is left as it was before this command.
        """
        team = self._teams.get(team_id)
        if team is None:
            team = self._teams[team_id] = _Team(team_id, self._read)
        before = team.before
        if before is not None and before.applied(partition, offset) and before.applied(
                partition, offset, end() if end is not None else None):
            return None
        now = sent_at if team.time is None else max(sent_at, team.time)
        transition = apply(team.state, command, now, team.side)
        for write in transition.queue_writes:
            team.side.write(write)
        for held in transition.holding_writes:
            team.side.hold(held)
        team.state = transition.state
        team.position = (partition, offset)
        team.time = now
        team.changed = True
        return transition.outgoing

    def journal_bytes(self, team_id: str) -> int:
        """How many bytes the journal of ``team_id``'s record takes so far in this batch (0: untouched)."""
        team = self._teams.get(team_id)
        return team.side.journal_bytes if team is not None else 0

    def states(self) -> Iterator[tuple[str, TeamState]]:
        """Each team this batch touched, with its state now."""
        for team_id, team in self._teams.items():
            if team.state is not None:
                yield team_id, team.state

    def writes(self, team_id: str) -> list[tuple[str, TeamRecord | SideValue | None]]:
        """The table writes of one team, in the order they must reach the changelog.

        1. The previous record's journal entries the table does not hold (lost in a crash);
        2. the new record, with this batch's side writes as its journal;
        3. those side writes.

        Only the first, when the batch changed nothing.
        """
        team = self._teams[team_id]
        before, state, pending = team.before, team.state, team.side.pending
        out: list[tuple[str, TeamRecord | SideValue | None]] = []
        if before is not None:
            out += [(w.key, w.value) for w in before.journal if self._read(w.key) != w.value]
        if state is None or not team.changed or (before is not None and state is before.state and not pending):
            # Commands that changed nothing need no record (a write of ~16 KB with 10 reps): if they
            # are read again, rules.team.apply answers a repeated command from the state, as it
            # answers a command sent twice.
            return out
        journal = tuple(SideWrite.of(key, value) for key, value in pending.items())
        partition, offset = team.position
        out.append((team_id, TeamRecord(state=state, journal=journal, partition=partition, offset=offset,
                                        time=team.time)))
        out += pending.items()
        return out

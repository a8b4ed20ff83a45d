"""Test doubles that drive the pure transitions exactly as the agents do, with no Kafka."""
from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

from rules import lead, reps, team
from rules.commands import Channel, Outgoing, ReportJoin, RouteLead, TeamCommand, UpsertRep
from rules.lead import LeadPolicy, LeadState
from rules.reps import RepEntry
from rules.roster import Holding
from rules.team import HoldingWrite, QueueWrite, TeamState, TeamTransition
from sla.clock import FakeClock

__all__ = ["T0", "QueueTable", "TeamDriver", "Bus", "values", "events", "holdings"]

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class QueueTable:
    """A dict-backed ``QueueReader``: the team agent's side table (queue entries and holdings)."""

    def __init__(self) -> None:
        self.entries: dict[int, RouteLead] = {}
        self.holdings: dict[str, Holding] = {}

    def get(self, seq: int) -> RouteLead | None:
        return self.entries.get(seq)

    def contains(self, route_id: str) -> bool:
        return any(entry.route_id == route_id for entry in self.entries.values())

    def seq_of(self, route_id: str) -> int | None:
        return next((seq for seq, entry in self.entries.items() if entry.route_id == route_id), None)

    def holding(self, route_id: str) -> Holding | None:
        return self.holdings.get(route_id)

    def write(self, writes: tuple[QueueWrite, ...], holdings: tuple[HoldingWrite, ...] = ()) -> None:
        for write in writes:
            if write.entry is None:
                self.entries.pop(write.seq, None)
            else:
                self.entries[write.seq] = write.entry
        for held in holdings:
            if held.holding is None:
                self.holdings.pop(held.route_id, None)
            else:
                self.holdings[held.route_id] = held.holding

    def held_by(self, rep_id: str) -> set[tuple[str, str]]:
        """``(lead_id, route_id)`` of every lead ``rep_id`` holds."""
        return {(h.lead_id, route_id) for route_id, h in self.holdings.items() if h.rep_id == rep_id}


class TeamDriver:
    """One team agent's loop: apply -> keep the state -> apply the queue and holding writes."""

    def __init__(self) -> None:
        self.state: TeamState | None = None
        self.queue = QueueTable()

    def send(self, command: TeamCommand, now: datetime) -> TeamTransition:
        transition = team.apply(self.state, command, now, self.queue)
        self.state = transition.state
        self.queue.write(transition.queue_writes, transition.holding_writes)
        return transition

    def holder_of(self, lead_id: str, route_id: str) -> str | None:
        """The id of the rep holding ``lead_id`` under ``route_id`` (None: nobody)."""
        rep = team.holder_of(self.state, self.queue, lead_id, route_id) if self.state is not None else None
        return rep.rep_id if rep is not None else None


class Bus:
    """A tiny in-memory bus: commands are dispatched by channel, FIFO, until nothing is left.

    ``notifications`` and ``lead.events`` are sinks; everything sent is kept in ``sent``.
    The clock moves one second per delivered message so every timestamp is distinct.
    """

    def __init__(self, *, policy: LeadPolicy | None = None, clock: FakeClock | None = None) -> None:
        self.policy = policy or LeadPolicy()
        self.clock = clock or FakeClock(T0)
        self.leads: dict[str, LeadState] = {}
        self.teams: dict[str, TeamDriver] = {}
        self.directory: dict[str, RepEntry] = {}
        self.sent: list[Outgoing] = []
        self._pending: deque[Outgoing] = deque()

    def send(self, channel: Channel, key: str, value: Any) -> list[Outgoing]:
        """Put one message on the bus, run to quiescence, return everything sent meanwhile."""
        return self.put(Outgoing(channel=channel, key=key, value=value))

    def put(self, *messages: Outgoing) -> list[Outgoing]:
        """``send`` for messages already made (sent before, read again), in this order.

        All of them are queued before any is delivered, so whatever they make is delivered after
        the last of them: as in Kafka, where messages already in a topic are read before any
        appended since (a replay's answers come after the replayed commands).
        """
        mark = len(self.sent)
        self._pending.extend(messages)
        while self._pending:
            message = self._pending.popleft()
            self.sent.append(message)
            self._pending.extend(self._deliver(message))
        return self.sent[mark:]

    def team(self, team_id: str) -> TeamState:
        state = self.teams[team_id].state
        assert state is not None
        return state

    def _deliver(self, message: Outgoing) -> tuple[Outgoing, ...]:
        now = self.clock.advance(1)
        if message.channel == "lead.commands":
            transition = lead.apply(self.leads.get(message.key), message.value, now, self.policy)
            if transition.state is not None:
                self.leads[message.key] = transition.state
            return transition.outgoing
        if message.channel == "team.commands":
            return self.teams.setdefault(message.key, TeamDriver()).send(message.value, now).outgoing
        if message.channel == "rep.commands":
            rep_transition = reps.apply(self.directory.get(message.key), message.value, now)
            if rep_transition.entry is not None:
                self.directory[message.key] = rep_transition.entry
            return rep_transition.outgoing
        return ()


def values(messages: list[Outgoing], channel: Channel, kind: type | None = None) -> list[Any]:
    """The values sent on ``channel`` (optionally only those of type ``kind``)."""
    return [m.value for m in messages if m.channel == channel and (kind is None or isinstance(m.value, kind))]


def events(messages: list[Outgoing], kind: str) -> list[dict[str, Any]]:
    """The ``lead.events`` of one type."""
    return [v for v in values(messages, "lead.events") if v["type"] == kind]


def holdings(bus: Bus) -> list[tuple[str, str, str, str]]:
    """Every lead held on the bus's teams, as (team, route, lead, rep), in a stable order."""
    return sorted((team_id, route_id, h.lead_id, h.rep_id) for team_id, driver in bus.teams.items()
                  for route_id, h in driver.queue.holdings.items())


def taken_in(result: reps.RepTransition) -> RepEntry:
    """The entry once the team asked (the transition's last ``UpsertRep``) has taken the rep in."""
    asked = result.outgoing[-1].value
    assert isinstance(asked, UpsertRep) and asked.join and result.entry is not None
    taken = reps.apply(result.entry, ReportJoin(rep_id=result.entry.rep_id, team_id=asked.team_id, move=asked.join,
                                                refused=None, at=T0, member=True, profile=asked.profile), T0).entry
    assert taken is not None
    return taken

"""Own each team's roster, capacity and queue; decide who gets each lead."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from rules.commands import DrainQueue, Outgoing, RouteLead
from rules.roster import Holding
from rules.team import HoldingWrite, QueueSlot, QueueWrite, TeamState, apply
from streams.agents._batch import acting_for, readable, take_ready
from streams.app import app, runtime
from streams.tables.team_state import holding_key, queue_key, route_key, team_queue, team_state
from streams.topics import publish, team_commands

__all__ = ["run_teams", "recheck_queues"]

log = logging.getLogger(__name__)

#: How often teams with waiting leads look at them again (working hours open, daily caps reset).
_RECHECK_S = 15.0


def _report(state: TeamState) -> None:
    metrics = runtime.metrics
    metrics.team_queue_depth.labels(state.team_id).set(state.queue_depth)
    metrics.team_open_leads.labels(state.team_id).set(sum(r.load for r in state.reps.values()))
    metrics.team_capacity.labels(state.team_id).set(
        sum(r.profile.capacity for r in state.reps.values() if r.presence == "available"))


class _BatchQueue:
    """One team's side table (queue and holdings) as a batch sees it: its own writes over ``team_queue``.

    The writes reach the table only after the batch's messages are acknowledged, so a later
    command of the same team in the batch must read them from here (a batch may assign a route
    and release it again: the release must find the holding the assignment made).
    """

    def __init__(self, team_id: str) -> None:
        self.team_id = team_id
        #: table key -> the value to write (``None``: delete), in the order written
        self.pending: dict[str, RouteLead | QueueSlot | Holding | None] = {}

    def _read(self, key: str) -> Any:
        return self.pending[key] if key in self.pending else team_queue.get(key)

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
                self.pending[key] = None
                self.pending[route_key(self.team_id, gone.route_id)] = None
        else:
            self.pending[key] = write.entry
            self.pending[route_key(self.team_id, write.entry.route_id)] = QueueSlot(seq=write.seq)

    def hold(self, write: HoldingWrite) -> None:
        self.pending[holding_key(self.team_id, write.route_id)] = write.holding

    def flush(self) -> None:
        # Called before the team's state is written, so the changelog records reach the producer
        # in that order: a worker killed between them more likely leaves a holding the state has
        # not counted (a replayed RouteLead answers that assignment again) than a count with no
        # holding (a replay would choose a second rep).
        for key, value in self.pending.items():
            if value is None:
                team_queue.pop(key, None)
            else:
                team_queue[key] = value


@app.agent(team_commands, concurrency=1)
async def run_teams(commands: Any) -> None:
    async for events in take_ready(commands):
        # team_id -> (state before the batch, state now, the batch's view of its queue, its last event)
        touched: dict[str, tuple[Any, TeamState, _BatchQueue, Any]] = {}
        outgoing: list[Outgoing] = []
        names: list[str] = []
        for event in readable(events, "team"):
            team_id, command = event.key, event.value
            name = type(command).__name__
            with acting_for(event):
                if team_id in touched:
                    before, current, queue, _ = touched[team_id]
                else:
                    before = current = team_state.get(team_id)
                    queue = _BatchQueue(team_id)
                try:
                    transition = apply(current, command, runtime.clock.now(), queue)
                except Exception:
                    runtime.metrics.command_failures.labels("team").inc()
                    log.exception("team agent could not apply %s to team %s", name, team_id)
                    continue
                for write in transition.queue_writes:
                    queue.write(write)
                for held in transition.holding_writes:
                    queue.hold(held)
            touched[team_id] = (before, transition.state, queue, event)
            outgoing += transition.outgoing
            names.append(name)
        # Messages first, acknowledged; then the states (see ``publish`` for why this order).
        await publish(outgoing)
        for team_id, (before, state, queue, event) in touched.items():
            with acting_for(event):
                queue.flush()
                if state is not before:
                    team_state[team_id] = state
            _report(state)
        for name in names:
            runtime.metrics.commands_processed.labels("team", name).inc()


@app.task
async def recheck_queues() -> None:
    """Every few seconds, ask each team with a queue (on this worker) to look at it again.

    Commands change queues; time alone does too (a rep's working hours open, a daily cap resets)
    and no command says so. Timers cannot write tables, so this sends ``DrainQueue`` to the team.
    """
    while not app.should_stop:
        await asyncio.sleep(_RECHECK_S)
        if not app.tables_settled():
            continue
        now = runtime.clock.now()
        waiting = [Outgoing(channel="team.commands", key=str(team_id), value=DrainQueue(team_id=str(team_id), at=now))
                   for team_id, state in team_state.items() if isinstance(state, TeamState) and state.queue_depth]
        if waiting:
            await publish(waiting)

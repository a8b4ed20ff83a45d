"""Own each team's roster, capacity and queue; decide who gets each lead."""
from __future__ import annotations

import logging
from typing import Any

from rules.commands import Outgoing, RouteLead
from rules.team import TeamState, apply
from streams.agents._batch import BATCH, WITHIN_S, acting_for
from streams.app import app, runtime
from streams.tables.team_state import TeamQueue, queue_key, route_key, team_queue, team_state
from streams.topics import publish, team_commands

__all__ = ["run_teams"]

log = logging.getLogger(__name__)


def _report(state: TeamState) -> None:
    metrics = runtime.metrics
    metrics.team_queue_depth.labels(state.team_id).set(state.queue_depth)
    metrics.team_open_leads.labels(state.team_id).set(sum(r.load for r in state.reps.values()))
    metrics.team_capacity.labels(state.team_id).set(
        sum(r.profile.capacity for r in state.reps.values() if r.presence == "available"))


class _PendingQueue:
    """A team's queue as the batch sees it: this batch's writes over the table."""

    def __init__(self, team_id: str, pending: dict[str, RouteLead | None]) -> None:
        self.team_id = team_id
        self.pending = pending
        self.table = TeamQueue(team_id)

    def get(self, seq: int) -> RouteLead | None:
        key = queue_key(self.team_id, seq)
        return self.pending[key] if key in self.pending else self.table.get(seq)

    def contains(self, route_id: str) -> bool:
        key = route_key(self.team_id, route_id)
        return self.pending[key] is not None if key in self.pending else self.table.contains(route_id)

    def write(self, seq: int, entry: RouteLead | None) -> None:
        key = queue_key(self.team_id, seq)
        if entry is None:
            gone = self.get(seq)
            if gone is not None:
                self.pending[route_key(self.team_id, gone.route_id)] = None
        else:
            self.pending[route_key(self.team_id, entry.route_id)] = entry
        self.pending[key] = entry


@app.agent(team_commands, concurrency=1)
async def run_teams(commands: Any) -> None:
    async for events in commands.take_events(BATCH, within=WITHIN_S):
        # team_id -> (state before the batch, state now, the team's queue view, its last event)
        touched: dict[str, tuple[Any, Any, _PendingQueue, Any]] = {}
        outgoing: list[Outgoing] = []
        for event in events:
            team_id, command = event.key, event.value
            name = type(command).__name__
            if team_id in touched:
                before, current, queue, _ = touched[team_id]
            else:
                with acting_for(event):
                    before = current = team_state.get(team_id)
                queue = _PendingQueue(team_id, {})
            try:
                with acting_for(event):
                    transition = apply(current, command, runtime.clock.now(), queue)
            except Exception:
                runtime.metrics.command_failures.labels("team").inc()
                log.exception("team agent could not apply %s to team %s", name, team_id)
                continue
            for write in transition.queue_writes:
                with acting_for(event):
                    queue.write(write.seq, write.entry)
            touched[team_id] = (before, transition.state, queue, event)
            outgoing += transition.outgoing
            runtime.metrics.commands_processed.labels("team", name).inc()
        # Messages first, acknowledged; then the states (see ``publish`` for why this order).
        await publish(outgoing)
        for team_id, (before, state, queue, event) in touched.items():
            with acting_for(event):
                for key, entry in queue.pending.items():
                    if entry is None:
                        team_queue.pop(key, None)
                    else:
                        team_queue[key] = entry
                if state is not before:
                    team_state[team_id] = state
            _report(state)

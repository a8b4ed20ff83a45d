"""Own each team's roster, capacity and queue; decide who gets each lead."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from rules.commands import DrainQueue, Outgoing
from rules.team import QueueSlot, TeamState, apply
from streams.app import app, runtime
from streams.tables.team_state import TeamQueue, queue_key, route_key, team_queue, team_state
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


@app.agent(team_commands, concurrency=1)
async def run_teams(commands: Any) -> None:
    async for team_id, command in commands.items():
        name = type(command).__name__
        current = team_state.get(team_id)
        try:
            transition = apply(current, command, runtime.clock.now(), TeamQueue(team_id))
        except Exception:
            runtime.metrics.command_failures.labels("team").inc()
            log.exception("team agent could not apply %s to team %s", name, team_id)
            continue
        # Messages first, acknowledged; then the state (see ``publish`` for why this order).
        await publish(transition.outgoing)
        for write in transition.queue_writes:
            key = queue_key(team_id, write.seq)
            if write.entry is None:
                gone = team_queue.get(key)
                if gone is not None:
                    del team_queue[key]
                    team_queue.pop(route_key(team_id, gone.route_id), None)
            else:
                team_queue[key] = write.entry
                team_queue[route_key(team_id, write.entry.route_id)] = QueueSlot(seq=write.seq)
        if transition.state is not current:
            team_state[team_id] = transition.state
        runtime.metrics.commands_processed.labels("team", name).inc()
        _report(transition.state)


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

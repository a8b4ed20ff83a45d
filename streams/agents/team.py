"""Own each team's roster, capacity and queue; decide who gets each lead."""
from __future__ import annotations

import asyncio
import logging
from functools import partial
from datetime import UTC, datetime
from typing import Any

from rules.commands import DrainQueue, Outgoing, UpsertRep
from rules.team import TeamState, new_refusal
from streams.agents._batch import acting_for, end_offset, readable, take_ready
from streams.app import app, runtime
from streams.codec import encode
from streams.tables.team_record import JOURNAL_BYTES, TeamBatch, TeamRecord
from streams.tables.team_state import read_team, team_state
from streams.topics import publish, team_commands

__all__ = ["run_teams", "recheck_queues", "sent_at"]

log = logging.getLogger(__name__)

#: How often teams with waiting leads look at them again (working hours open, daily caps reset).
_RECHECK_S = 15.0


def _report(state: TeamState) -> None:
    metrics = runtime.metrics
    metrics.team_queue_depth.labels(state.team_id).set(state.queue_depth)
    metrics.team_open_leads.labels(state.team_id).set(sum(r.load for r in state.reps.values()))
    metrics.team_capacity.labels(state.team_id).set(
        sum(r.profile.capacity for r in state.reps.values() if r.presence == "available"))


def _state_in(batch: TeamBatch, team_id: str) -> TeamState | None:
    """The team's state as the batch has it so far (the table's, before the batch touched it)."""
    for touched, state in batch.states():
        if touched == team_id:
            return state
    return read_team(team_id)


def _report_refusal(team_id: str, command: UpsertRep, before: TeamState | None, after: TeamState | None) -> None:
    """A rep the team refused (full, or too big to write, ``rules.team``): the API said 202, so say it here.

    Counted as a command the agent could not apply (``leadflow_command_failures_total{agent="team"}``,
    the ``LeadflowAgentFailing`` alert); the team view lists it (``refused_reps``). The reason holds
    counts and bounds only, and the rep is named by id: no name or address reaches the log.
    """
    refusal = new_refusal(before, after, command.profile.rep_id)
    if refusal is None:
        return
    runtime.metrics.command_failures.labels("team").inc()
    log.warning("team %s refused rep %s: %s", team_id, refusal.rep_id, refusal.reason)


def sent_at(timestamp: float | None, now: datetime) -> datetime:
    """When a command was sent: its record's timestamp, but never later than ``now``.

    The team decides each command at this time (``TeamBatch.apply``), so that a command read
    again after a crash is decided as the first time. A producer whose clock runs ahead cannot
    move a team into the future; a record without a timestamp is decided now.
    """
    if not timestamp or timestamp <= 0:
        return now
    return min(datetime.fromtimestamp(timestamp, UTC), now)


@app.agent(team_commands, concurrency=1)
async def run_teams(commands: Any) -> None:
    async for events in take_ready(commands):
        batch = TeamBatch(team_state.get)
        last_event: dict[str, Any] = {}  # team_id -> its last event in the batch (its partition)
        outgoing: list[tuple[str, Outgoing]] = []  # with the team that sent each
        names: list[str] = []
        for event in readable(events, "team"):
            team_id, command = event.key, event.value
            name = type(command).__name__
            last_event[team_id] = event
            with acting_for(event):
                message = event.message
                before = _state_in(batch, team_id) if isinstance(command, UpsertRep) else None
                try:
                    sent = batch.apply(team_id, command, sent_at(message.timestamp, runtime.clock.now()),
                                       message.partition, message.offset, partial(end_offset, message))
                except Exception:
                    runtime.metrics.command_failures.labels("team").inc()
                    log.exception("team agent could not apply %s to team %s", name, team_id)
                    continue
                if isinstance(command, UpsertRep) and sent is not None:
                    _report_refusal(team_id, command, before, _state_in(batch, team_id))
            if sent is None:
                runtime.metrics.commands_replayed.labels("team").inc()
                continue
            outgoing += [(team_id, m) for m in sent]
            names.append(name)
            if batch.journal_bytes(team_id) >= JOURNAL_BYTES:
                # The journal rides in the team's record: write this much out, go on as a new batch.
                await _write_out(batch, outgoing, last_event, names)
                batch, last_event, outgoing, names = TeamBatch(team_state.get), {}, [], []
        await _write_out(batch, outgoing, last_event, names)


async def _write_out(batch: TeamBatch, outgoing: list[tuple[str, Outgoing]], last_event: dict[str, Any],
                     names: list[str]) -> None:
    """Send the batch's messages, acknowledged; then write the table (see ``publish`` for why this
    order), each team's writes in the order ``TeamBatch.writes`` gives (a crash must leave it whole).

    A team whose record would be too big for Kafka (the table would refuse it, ``CodecTable``) is
    left out whole: none of its messages is sent and nothing of it is written, as if its commands
    had failed. Sending them without the record would leave the state behind what others were
    told (a lead assigned to a rep the team does not count). The bounds make it not happen
    (``JOURNAL_BYTES``, ``rules.team.STATE_BYTES_BUDGET``); this is the last line.
    """
    writes = {team_id: batch.writes(team_id) for team_id, _ in batch.states()}
    left_out = {team_id for team_id, team_writes in writes.items() if _too_big(team_id, team_writes)}
    await publish([m for team_id, m in outgoing if team_id not in left_out])
    for team_id, state in batch.states():
        if team_id in left_out:
            continue
        with acting_for(last_event[team_id]):
            for key, value in writes[team_id]:
                if value is None:
                    team_state.pop(key, None)
                else:
                    team_state[key] = value
        _report(state)
    for name in names:
        runtime.metrics.commands_processed.labels("team", name).inc()


def _too_big(team_id: str, writes: list[tuple[str, Any]]) -> bool:
    """Whether the team's new record encodes past what the table may write (logged and counted)."""
    limit = team_state.max_value_bytes
    for key, value in writes:
        if key == team_id and isinstance(value, TeamRecord):
            size = len(encode(value))
            if size > limit:
                runtime.metrics.command_failures.labels("team").inc()
                log.error("team %s: this batch's record would take %d bytes, more than the %d a changelog record may "
                          "carry (%d journal entries): its commands are dropped, none of their messages sent",
                          team_id, size, limit, len(value.journal))
                return True
    return False


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
                   for team_id, record in team_state.items()
                   if isinstance(record, TeamRecord) and record.state.queue_depth]
        if waiting:
            await publish(waiting)

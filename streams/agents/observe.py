"""Refresh the gauges nobody's command updates: per-team capacity, overdue leads, consumer lag,
event-loop lag, table recovery and Redis degraded mode.

Team and overdue gauges are computed from the tables of the partitions this worker owns right
now (the RocksDB stores iterate active partitions only; the team table's memory store also holds
standby copies, so its teams are filtered by active partition) and replace the previous values,
so a team that moved to another worker after a rebalance disappears from this worker's scrape.
Read-only: timers never write tables.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import datetime
from typing import Any

from ops.metrics import TeamFigures
from rules.delivery import DeliveryBacklog
from rules.eligibility import rep_reasons
from rules.team import LOOKAHEAD, TeamState
from streams.app import app, runtime
from streams.tables.sla_overdue import sla_overdue
from streams.tables.team_record import TeamRecord
from streams.tables.team_state import team_side, team_state
from streams.tables.webhook_retries import webhook_retries
from streams.topics import partition_of, team_commands

__all__ = ["team_figures", "probe_event_loop", "refresh_gauges"]

log = logging.getLogger(__name__)

_LOOP_PROBE_S = 0.5
_TICK_S = 1.0
_TABLE_EVERY = 5  # ticks: team and overdue gauges, lag and Redis every 5 s; recovery every second


def team_figures(state: TeamState, now: datetime, queued_at: list[datetime]) -> TeamFigures:
    """A team's gauges from its state and the capture times of the leads at the head of its queue."""
    # A rep who moved to another team stays in this one only until its leads are released: their
    # leads are this team's open leads, their capacity and presence belong to the new team.
    members = [r for r in state.reps.values() if not r.departed]
    available = [r for r in members if r.presence == "available"]
    oldest = min(queued_at, default=None)
    return TeamFigures(
        queue_depth=state.queue_depth,
        open_leads=sum(r.load for r in state.reps.values()),
        capacity=sum(r.profile.capacity for r in available),
        reps_available=len(available),
        total_capacity=sum(r.profile.capacity for r in members),
        # As GET /v1/teams/{id} available_capacity: a rep's leads held in another team take slots too.
        free_slots=sum(max(r.profile.capacity - r.open_leads, 0) for r in available),
        oldest_queued_age_s=max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0,
        # Free slots count presence only: a rep off shift or at a cap still shows them. This says
        # who could really take a lead now (each queued lead's decision says why the others not).
        reps_eligible=sum(1 for r in members if not rep_reasons(r, now)),
    )


def _queued_at(state: TeamState) -> list[datetime]:
    # Each priority lane is a FIFO: its head region holds its longest-waiting leads (a bounded
    # look, like the drain's).
    stamps = []
    side = team_side(state.team_id)
    for lane in state.lanes:
        for seq in range(lane.head, min(lane.tail, lane.head + LOOKAHEAD)):
            entry = side.get(seq)
            if entry is not None:
                stamps.append(entry.requested_at)
    return stamps


def _report_tables() -> None:
    metrics = runtime.metrics
    now = runtime.clock.now()
    figures = {}
    # The team table is a memory store, which also holds the standby copies of other workers'
    # teams: only the teams of this worker's active partitions are its to report (the RocksDB
    # tables below iterate active partitions only).
    topic = team_commands.get_topic_name()
    active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
    for team_id, record in team_state.items():
        if isinstance(record, TeamRecord) and partition_of(str(team_id)) in active:
            figures[str(team_id)] = team_figures(record.state, now, _queued_at(record.state))
    metrics.report_teams(figures)
    metrics.report_overdue(Counter(str(team) for team in sla_overdue.values()))
    metrics.webhook_retries_pending.set(sum(len(b.pending) for b in webhook_retries.values()
                                            if isinstance(b, DeliveryBacklog)))


def _report_lag() -> None:
    consumer: Any = app.consumer
    committed = getattr(consumer, "_committed_offset", {})
    lag: Counter[str] = Counter()
    assignment = consumer.assignment()
    for tp in assignment:
        if tp.topic.endswith("-changelog"):
            continue  # table changelogs are read by recovery and standbys, never committed
        high = consumer.highwater(tp)
        done = committed.get(tp)
        if high is None or done is None:
            continue
        lag[tp.topic] += max(int(high) - int(done) - 1, 0)
    runtime.metrics.report_lag(lag)
    runtime.metrics.partitions_assigned.set(len(assignment))


async def _report_redis() -> None:
    """1 while the worker goes without Redis or any Redis operation failed lately (an ``OOM`` on a
    write, a ``NOAUTH``, a timeout: a PING alone answers under OOM), else 0. The probe is a write,
    through the worker's Redis guard, which logs what failed and where the first time."""
    resources = runtime.resources
    takes_writes = await resources.store.probe()
    degraded = not takes_writes or resources.redis_guard.degraded()
    runtime.metrics.redis_degraded_mode.set(1 if degraded else 0)


@app.task
async def probe_event_loop() -> None:
    """How late the loop wakes a sleeping task: a blocked loop delays every agent and the API."""
    loop = asyncio.get_running_loop()
    while not app.should_stop:
        started = loop.time()
        await asyncio.sleep(_LOOP_PROBE_S)
        runtime.metrics.event_loop_lag.set(max(loop.time() - started - _LOOP_PROBE_S, 0.0))


@app.task
async def refresh_gauges() -> None:
    metrics = runtime.metrics
    # The configured teams' counters at 0 from the start: increase() misses a series' first value.
    metrics.configure_teams(team.id for team in runtime.config.teams)
    recovery_started: float | None = None
    # Once at start: a worker without Redis says so (with Redis's host:port) before its first capture.
    try:
        await _report_redis()
    except Exception:
        log.exception("refreshing gauges failed")
    tick = 0
    while not app.should_stop:
        await asyncio.sleep(_TICK_S)
        tick += 1
        recovering = bool(app.table_recovery.in_recovery)
        if recovering and recovery_started is None:
            recovery_started = time.monotonic()
        if recovery_started is not None:
            metrics.recovery_duration.set(time.monotonic() - recovery_started)
            if not recovering:
                recovery_started = None  # the last duration stays on the gauge
        metrics.recovery_in_progress.set(1 if recovering else 0)
        if tick % _TABLE_EVERY:
            continue
        try:
            if app.tables_settled():
                _report_tables()
            if app.consumer is not None:
                _report_lag()
            await _report_redis()
        except Exception:
            # A gauge refresh must never take the worker down; the next tick tries again.
            log.exception("refreshing gauges failed")

"""Fire SLA deadlines: an in-memory index of this worker's pending deadlines, rebuilt from
``sla_timers`` after every rebalance, popped by one loop that sends ``SlaDue`` to the lead.

Timers cannot write tables: the lead agent (the owner) re-checks and applies the step, once
per (lead, cycle, step), so a timer firing twice after a crash changes nothing.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from rules.commands import Outgoing, SlaDue
from rules.lead import SlaTimer
from sla.timers import TimerIndex
from streams.codec import timer_fields
from streams.app import app, runtime
from streams.tables.sla_timers import sla_timers
from streams.topics import publish

__all__ = ["timer_index", "track", "fire_sla_timers"]

log = logging.getLogger(__name__)

_TICK_S = 0.25
_BATCH = 500

#: Derived from ``sla_timers`` and rebuilt from it; never the source of truth.
timer_index = TimerIndex()


def track(lead_id: str, timer: SlaTimer | None) -> None:
    """Keep the index in step with what the lead agent just decided for ``lead_id``."""
    if timer is None:
        timer_index.cancel(lead_id)
    else:
        # A small token: a million pending deadlines must fit in memory (docs/sla.md).
        timer_index.schedule(lead_id, timer.due_at.timestamp(), (timer.cycle, timer.step))


def _rows() -> Iterator[tuple[str, float, tuple[int, int]]]:
    """The pending deadlines of this worker's active partitions (the RocksDB store iterates those)."""
    raw_items = getattr(sla_timers.data, "_iteritems", None)
    if raw_items is None:  # the in-memory store keeps decoded values
        for lead_id, timer in sla_timers.items():
            if isinstance(timer, SlaTimer):
                yield lead_id, timer.due_at.timestamp(), (timer.cycle, timer.step)
        return
    for key, raw in raw_items():  # raw bytes: a million rows decode in ~1.4 s instead of ~3.4 s
        fields = timer_fields(raw) if raw is not None else None
        if fields is not None:
            yield key.decode(), fields[0], (fields[1], fields[2])


def _rebuild() -> int:
    timer_index.clear()
    return timer_index.load(_rows())


@app.task
async def fire_sla_timers() -> None:
    built_for = -1
    while not app.should_stop:
        await asyncio.sleep(_TICK_S)
        if not app.tables_settled():
            continue
        if built_for != app.rebalancing_count:
            count = _rebuild()
            built_for = app.rebalancing_count
            log.info("sla: timer index rebuilt with %d pending deadline(s)", count)
        now = runtime.clock.now()
        due = timer_index.pop_due(now.timestamp(), limit=_BATCH)
        if not due:
            continue
        commands = []
        for lead_id, token in due:
            cycle, step = token  # type: ignore[misc]
            commands.append(Outgoing(channel="lead.commands", key=lead_id,
                                     value=SlaDue(lead_id=lead_id, cycle=cycle, step=step, due_at=now)))
        await publish(commands)

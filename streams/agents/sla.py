"""Fire SLA deadlines: an in-memory index of this worker's pending deadlines, rebuilt from
``sla_timers`` after every rebalance, popped by one loop that sends ``SlaDue`` to the lead.

Timers cannot write tables: the lead agent (the owner) re-checks and applies the step, once
per (lead, cycle, step), so a timer firing twice after a crash changes nothing.

The rebuild reads the table a slice at a time and yields to the event loop in between (a
million rows take seconds of CPU: done in one go, the worker could neither answer ``/readyz``
nor route a lead meanwhile). The lead agent keeps calling ``track`` during it; ``sla.timers.Rebuild``
keeps those decisions over the older rows read later. Deadlines that fall due during the rebuild
fire when it is done; a rebalance during it starts it again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from itertools import islice
from typing import cast

from rules.commands import Outgoing, SlaDue
from rules.lead import SlaTimer
from sla.timers import Rebuild, TimerIndex
from streams.codec import timer_fields
from streams.app import app, runtime
from streams.tables.sla_timers import sla_timers
from streams.topics import publish

__all__ = ["timer_index", "track", "rebuild_index", "fire_sla_timers"]

log = logging.getLogger(__name__)

_TICK_S = 0.25
_BATCH = 500
#: Rows per slice of the rebuild: ~4-8 ms of CPU each (2-4 µs a row), then the loop runs others. A
#: lead crosses ~9 agent steps, each may wait for a slice: 5,000-row slices (~20 ms under load) made
#: the first lead routed during a million-row rebuild take ~1.8 s.
_SLICE = 2_000

#: Derived from ``sla_timers`` and rebuilt from it; never the source of truth.
timer_index = TimerIndex()


#: The rebuild under way, if any: ``track`` goes through it so that its decisions win over rows read later.
_rebuilding: Rebuild | None = None


def track(lead_id: str, timer: SlaTimer | None) -> None:
    """Keep the index in step with what the lead agent just decided for ``lead_id``."""
    target: TimerIndex | Rebuild = timer_index if _rebuilding is None else _rebuilding
    if timer is None:
        target.cancel(lead_id)
    else:
        # A small token: a million pending deadlines must fit in memory (docs/sla.md).
        target.schedule(lead_id, timer.due_at.timestamp(), (timer.cycle, timer.step))


def _rows() -> Iterator[tuple[str, float, tuple[int, int]]]:
    """The pending deadlines of this worker's active partitions, read lazily (a slice at a time).

    RocksDB: each partition's store is read through one iterator, a snapshot as of its first
    row; the stores are listed up front (a rebalance changes the store's dict of them, and the
    rebuild stops at a rebalance anyway).
    """
    store = sla_timers.data
    actives = getattr(store, "_dbs_for_actives", None)
    if actives is None:  # the in-memory store keeps decoded values (tests, development)
        for lead_id, timer in list(sla_timers.items()):
            if isinstance(timer, SlaTimer):
                yield lead_id, timer.due_at.timestamp(), (timer.cycle, timer.step)
        return
    for db in list(actives()):
        for key, raw in store._visible_items(db):  # raw bytes: ~1.4 µs a row instead of ~3.4 decoded
            fields = timer_fields(raw) if raw is not None else None
            if fields is not None:
                yield key.decode(), fields[0], (fields[1], fields[2])


def _interrupted(built_for: int) -> bool:
    return app.should_stop or app.rebalancing_count != built_for or not app.tables_settled()


async def rebuild_index(built_for: int) -> int | None:
    """Refill ``timer_index`` from ``sla_timers``, yielding to the loop after every slice.

    Returns how many deadlines are pending, or ``None`` when a rebalance (or the worker
    stopping) interrupted it: the rows read may no longer be this worker's, so start again.
    """
    global _rebuilding
    rebuild = _rebuilding = Rebuild(timer_index)
    try:
        rows = _rows()
        while True:
            if rebuild.feed(islice(rows, _SLICE)) < _SLICE:
                return rebuild.finish()
            await asyncio.sleep(0)
            if _interrupted(built_for):
                return None
    finally:
        _rebuilding = None


@app.task
async def fire_sla_timers() -> None:
    built_for = -1
    while not app.should_stop:
        await asyncio.sleep(_TICK_S)
        if not app.tables_settled():
            continue
        if built_for != app.rebalancing_count:
            generation, began = app.rebalancing_count, time.monotonic()
            count = await rebuild_index(generation)
            if count is None:
                log.info("sla: timer index rebuild interrupted (a rebalance, or the worker stopping)")
                continue
            built_for = generation
            log.info("sla: timer index rebuilt with %d pending deadline(s) in %.2f s",
                     count, time.monotonic() - began)
        now = runtime.clock.now()
        due = timer_index.pop_due(now.timestamp(), limit=_BATCH)
        if not due:
            continue
        commands = []
        for lead_id, token in due:
            cycle, step = cast(tuple[int, int], token)  # the index keeps what the lead agent tracked
            commands.append(Outgoing(channel="lead.commands", key=lead_id,
                                     value=SlaDue(lead_id=lead_id, cycle=cycle, step=step, due_at=now)))
        await publish(commands)

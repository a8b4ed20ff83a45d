"""Keep Python's full garbage collections out of the worker's start-up and its latency tail.

CPython's cyclic collector stops the whole process while it scans; a full (generation 2) pass
scans every object the collector tracks. A worker tracks a few hundred thousand long-lived
objects that never become garbage: the modules, classes and functions of Faust, aiokafka,
pydantic and leadflow, and what recovery builds. Measured with ``ops/bench/gcprobe``
(``leadflow bench load --rates 10,50 --feed kafka``): full passes of 70–220 ms every few seconds
under load (each one holds every agent and the HTTP API at once, straight into the p99) and
~1.2 s of them while the worker starts.

So the worker (``leadflow worker``):

* imports its code with the collector off (``start_up``): imports make few cycles and much
  long-lived data, and a full pass over it is wasted work at the moment the worker is being
  waited for (restart after ``kill -9``);
* then moves everything that exists to the permanent generation (``gc.freeze``), which future
  passes skip, and turns the collector back on (``after_imports``);
* freezes again once its tables are first recovered (``freeze_when_settled``): the recovered
  state and the started services are long-lived too;
* runs a full pass a tenth as often (``FULL_PASS_AFTER``): what the worker keeps while it runs
  (the decoded-state cache, Faust's and aiokafka's buffers) grows the unfrozen heap a full
  pass scans, to 50–60 ms a pass at 60–75 leads/s, ten passes in 95 s. With the third
  threshold at 100 instead of 10, one pass in 95 s (gcprobe, two rounds alternating; p99 at 60
  leads/s 138–179 ms against 190–242 ms, docs/PERFORMANCE.md). The younger generations are
  collected as before, so most cyclic garbage still goes at once; CPython also waits for a full
  pass until a quarter of the old heap is new, whatever the threshold.

Frozen objects are still freed by reference counting as usual; only a reference *cycle* that
was frozen is never reclaimed, and the start-up makes few. Cycles made later (the usual
garbage of a running service) are collected as before, in passes that no longer rescan the
frozen heap.
"""
from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

__all__ = ["start_up", "after_imports", "freeze_when_settled"]

log = logging.getLogger(__name__)

#: Full (generation 2) passes run after this many generation 1 passes (CPython's default is 10).
FULL_PASS_AFTER = 100

#: How often the worker checks whether its tables are recovered, to freeze once they are.
_SETTLED_POLL_S = 0.5


def start_up() -> None:
    """Before the worker's imports: no collections while modules load."""
    gc.disable()


def after_imports() -> None:
    """After the imports: what exists now is never scanned again; the collector is back on, with
    full passes a tenth as often."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_PASS_AFTER)
    gc.enable()


async def freeze_when_settled(app: Any) -> None:
    """Freeze once, when the first rebalance's recovery is done (``app.tables_settled()``)."""
    while not app.should_stop:
        if app.tables_settled():
            gc.freeze()
            log.info("gc: %d objects frozen after recovery", gc.get_freeze_count())
            return
        await asyncio.sleep(_SETTLED_POLL_S)

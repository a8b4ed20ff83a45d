"""A cheaper "is recovery done?" for faust-streaming 0.15's changelog recovery (issue 7).

``Recovery._slurp_changelogs`` applies changelog records one at a time, and after *every*
record asks ``need_recovery()``, which builds a ``Counter`` of the remaining records of every
active changelog partition (``active_remaining``: a dict comprehension over all of them, 13
tables × 8 partitions here) only to see whether any is above zero. Profiled during a cold
restore of 200,000 leads (400,000 records) that was ~16% of the event loop's busy time, the
largest single item of Faust's own.

The patch answers the same question — is some active partition's highwater above its applied
offset — but first checks the partition found behind last time, which stays behind for
thousands of records in a row; only when it has caught up are the others scanned. The answer
is the same for every state of the offsets (``tests/agents/test_recovery_speed.py`` compares
it with Faust's over random states); ``active_remaining`` itself is unchanged for the
statistics Faust logs.

A second patch: a recovery that a newer rebalance overtook must not seek to offsets it never
built (``_seek_offsets``). ``on_rebalance`` refills ``standby_tps``/``active_tps`` in place and
gives each new partition the offset ``None`` until the next recovery builds it, then sets
``signal_recovery_start``. A recovery still running the previous generation notices that only
inside ``_wait``, and only when the signal's waiter finished before the step it waits for: when
the previous recovery's actives caught up in the same moment (``signal_recovery_end`` already
set), it went on to "Starting standby partitions..." with the new set, Faust seeked a partition to
``None``, aiokafka raised ``ValueError('Offset must be a positive integer')``, and the Recovery
service crashed, stopping the whole worker (CI rehearsal, session 17: the surviving worker of
``test_paused_worker`` as the paused one came back). Now a seek with a rebalance pending raises
Faust's own ``RebalanceAgain``, which restarts the recovery for the new assignment; an offset
still unknown without one (not seen) is read from the partition's start, as Faust's ``-1``.
"""
from __future__ import annotations

import logging
from typing import Any

from faust.tables.recovery import RebalanceAgain, Recovery

__all__ = ["install", "need_recovery", "seek_offsets"]

log = logging.getLogger(__name__)

#: Faust's own ``Recovery._seek_offsets`` (tests show what it does in the race).
FAUST_SEEK_OFFSETS = Recovery._seek_offsets

_installed = False


def _behind(highwater: Any, offset: Any) -> bool:
    # Faust's active_remaining(): a partition counts when neither is None, and is behind when > 0.
    return highwater is not None and offset is not None and highwater - offset > 0


def need_recovery(self: Any) -> bool:
    """``Recovery.need_recovery``: ``True`` while some active changelog partition is behind."""
    highwaters = self.active_highwaters
    offsets = self.active_offsets
    tp = getattr(self, "_leadflow_behind", None)
    if tp is not None and tp in highwaters and _behind(highwaters[tp], offsets[tp]):
        return True
    for tp, highwater in highwaters.items():
        if _behind(highwater, offsets[tp]):
            self._leadflow_behind = tp
            return True
    self._leadflow_behind = None
    return False


def seek_offsets(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> dict[Any, int]:
    """The seeks ``Recovery._seek_offsets`` makes: each partition to its built offset (``-1``, nothing
    read yet, is its start). Raises ``RebalanceAgain`` when a newer rebalance is pending: this
    recovery's partitions and offsets are no longer the ones it built."""
    if self.signal_recovery_start.is_set():
        raise RebalanceAgain()
    seeks: dict[Any, int] = {}
    for tp in tps:
        offset = offsets.get(tp)
        if offset is None or offset < 0:
            if offset is None or offset < -1:
                log.warning("recovery: no %s offset was built for %s:%s (%s); reading it from its start",
                            title, tp.topic, tp.partition, offset)
            offset = 0
        seeks[tp] = offset
    return seeks


async def _seek_offsets(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
    await consumer.seek_wait(seek_offsets(self, consumer, tps, offsets, title))


def install() -> None:
    """Patch ``Recovery.need_recovery`` and ``Recovery._seek_offsets`` (once per process)."""
    global _installed
    if _installed:
        return
    Recovery.need_recovery = need_recovery  # type: ignore[method-assign]
    Recovery._seek_offsets = _seek_offsets  # type: ignore[method-assign]
    _installed = True

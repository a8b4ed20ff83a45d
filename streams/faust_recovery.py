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
"""
from __future__ import annotations

from typing import Any

from faust.tables.recovery import Recovery

__all__ = ["install", "need_recovery"]

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


def install() -> None:
    """Patch ``Recovery.need_recovery`` (once per process)."""
    global _installed
    if _installed:
        return
    Recovery.need_recovery = need_recovery  # type: ignore[method-assign]
    _installed = True

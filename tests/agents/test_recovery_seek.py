"""A recovery overtaken by a newer rebalance seeks nothing it did not build (streams/faust_recovery.py).

The CI rehearsal of session 17: the surviving worker's Recovery service crashed with aiokafka's
``ValueError('Offset must be a positive integer')`` at "Starting standby partitions...", a rebalance
having refilled ``standby_tps`` with partitions whose offset was still ``None``; the worker stopped.
"""
from __future__ import annotations

import asyncio
from collections import Counter
import pytest
from faust.tables.recovery import RebalanceAgain, Recovery
from faust.types import TP

from streams import faust_recovery

OLD, NEW = TP("app-team_state-changelog", 0), TP("app-team_state-changelog", 3)


class _Consumer:
    def __init__(self) -> None:
        self.seeks: list[dict[TP, int]] = []

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        for offset in partitions.values():
            if not isinstance(offset, int) or offset < 0:  # what aiokafka's seek does
                raise ValueError("Offset must be a positive integer")
        self.seeks.append(dict(partitions))


class _Recovery:
    def __init__(self) -> None:
        self.signal_recovery_start = asyncio.Event()


def _overtaken() -> tuple[_Recovery, Counter[TP]]:
    """The state after a newer rebalance's ``on_rebalance``: a new standby with no offset, the signal set."""
    recovery = _Recovery()
    offsets: Counter[TP] = Counter({OLD: 41})
    offsets.setdefault(NEW, None)  # type: ignore[arg-type]  # Recovery._add
    recovery.signal_recovery_start.set()
    return recovery, offsets


async def test_faust_alone_crashes_on_the_offset_a_newer_rebalance_left_unbuilt() -> None:
    recovery, offsets = _overtaken()
    with pytest.raises(ValueError, match="positive integer"):
        await faust_recovery.FAUST_SEEK_OFFSETS(recovery, _Consumer(), {OLD, NEW}, offsets, "standby")


async def test_a_seek_with_a_newer_rebalance_pending_restarts_the_recovery_and_seeks_nothing() -> None:
    recovery, offsets = _overtaken()
    consumer = _Consumer()
    with pytest.raises(RebalanceAgain):
        await faust_recovery._seek_offsets(recovery, consumer, {OLD, NEW}, offsets, "standby")
    assert consumer.seeks == []


async def test_without_a_pending_rebalance_built_offsets_are_seeked_and_an_unbuilt_one_reads_from_the_start(
        caplog: pytest.LogCaptureFixture) -> None:
    recovery, offsets = _overtaken()
    recovery.signal_recovery_start.clear()
    offsets[TP("app-accounts-changelog", 1)] = -1  # nothing read yet: Faust's own start
    consumer = _Consumer()
    await faust_recovery._seek_offsets(recovery, consumer, set(offsets), offsets, "standby")
    assert consumer.seeks == [{OLD: 41, NEW: 0, TP("app-accounts-changelog", 1): 0}]
    assert [r.getMessage() for r in caplog.records] == [
        "recovery: no standby offset was built for app-team_state-changelog:3 (None); reading it from its start"]


def test_the_worker_installs_the_patch() -> None:
    import streams.app  # noqa: F401  (installs the patches)

    assert Recovery._seek_offsets is faust_recovery._seek_offsets

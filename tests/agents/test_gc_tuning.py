"""The worker's collector settings: off while importing, frozen heap after imports and recovery."""
from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from streams import gc_tuning


def _scanned(obj: object) -> bool:
    """Whether collections still scan ``obj`` (``gc.get_objects`` leaves the frozen ones out)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_imports_run_without_collections_and_what_they_made_is_frozen() -> None:
    gc.unfreeze()
    gc_tuning.start_up()
    assert not gc.isenabled()
    long_lived: list[dict[str, int]] = [{}]  # stands for what the worker's imports build
    assert _scanned(long_lived)
    gc_tuning.after_imports()
    assert gc.isenabled()
    assert not _scanned(long_lived)


def test_full_passes_run_a_tenth_as_often_and_the_young_ones_as_before() -> None:
    gc.set_threshold(700, 10, 10)
    gc_tuning.start_up()
    gc_tuning.after_imports()
    assert gc.get_threshold() == (700, 10, gc_tuning.FULL_PASS_AFTER) == (700, 10, 100)


class _App:
    def __init__(self) -> None:
        self.should_stop = False
        self.settled = False
        self.asked = 0

    def tables_settled(self) -> bool:
        self.asked += 1
        return self.settled


async def test_the_heap_is_frozen_once_the_tables_are_recovered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc_tuning, "_SETTLED_POLL_S", 0.01)
    gc.unfreeze()
    app = _App()
    task = asyncio.ensure_future(gc_tuning.freeze_when_settled(app))
    await asyncio.sleep(0.05)
    recovered: list[dict[str, int]] = [{}]  # stands for the state recovery built
    assert not task.done() and _scanned(recovered), "froze before recovery was done"
    app.settled = True
    await asyncio.wait_for(task, timeout=2)
    assert not _scanned(recovered)
    asked = app.asked
    await asyncio.sleep(0.05)
    assert app.asked == asked, "kept polling after it froze"


async def test_a_worker_stopping_before_recovery_stops_waiting() -> None:
    app = _App()
    app.should_stop = True
    await asyncio.wait_for(gc_tuning.freeze_when_settled(app), timeout=1)
    assert app.asked == 0

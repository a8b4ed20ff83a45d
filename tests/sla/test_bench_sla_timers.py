"""The timer benchmark (``ops/bench/sla_timers.py``) runs, and its wheel baseline is a fair comparison."""
from __future__ import annotations

import random

import pytest

from ops.bench.sla_timers import HashedWheel, main
from sla.timers import TimerIndex


def test_the_benchmark_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--n", "3000", "--compare-wheel"])
    out = capsys.readouterr().out
    for label in ("index memory", "inserts", f"rebuild from {3000:,} table rows", "lateness p99", "hashed wheel"):
        assert label in out
    assert "MISSED" not in out


def test_the_wheel_fires_like_the_heap() -> None:
    rng = random.Random(3)
    heap, wheel = TimerIndex(), HashedWheel()
    now, fired_heap, fired_wheel = 0.0, [], []
    for _ in range(3000):
        action, key = rng.random(), f"k{rng.randrange(200)}"
        if action < 0.6:
            due = now + rng.choice((0.0, 0.05, 0.1, rng.uniform(0, 30)))
            heap.schedule(key, due, key)
            wheel.schedule(key, due, key)
        elif action < 0.75:
            assert heap.cancel(key) == wheel.cancel(key)
        else:
            now += rng.uniform(0, 2)
            fired_heap += heap.pop_due(now)
            fired_wheel += wheel.pop_due(now)
        assert len(heap) == len(wheel)
    assert fired_heap == fired_wheel and fired_heap

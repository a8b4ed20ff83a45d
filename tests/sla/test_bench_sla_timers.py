"""The timer benchmark (``ops/bench/sla_timers.py``) runs, and its wheel baseline is a fair comparison."""
from __future__ import annotations

import random

import pytest

from ops.bench.sla_timers import BASE_S, BATCH, HashedWheel, _memory, _simulate, main
from sla.timers import TimerIndex


def test_the_benchmark_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--n", "3000", "--compare-wheel", "--decode"])
    out = capsys.readouterr().out
    for label in ("index memory, all it retains", "inserts", f"rebuild from {3000:,} table rows",
                  "decoding the table's bytes", "lateness p99", "hashed wheel", "tokens (cycle, step)"):
        assert label in out
    assert "MISSED" not in out


def test_the_memory_figure_counts_the_keys() -> None:
    # The wheel holds every key as a str: its figure must include them, or the method is dishonest.
    retained_mib, str_keys_mib = _memory(HashedWheel, 5000, seed=1)
    assert str_keys_mib > 0.3 and retained_mib > str_keys_mib
    compact_mib, _ = _memory(TimerIndex, 5000, seed=1)
    assert compact_mib < retained_mib


def test_the_simulation_feeds_the_index_like_the_agent() -> None:
    seen: list[tuple[str, object]] = []

    class Spy(TimerIndex):
        __slots__ = ()

        def schedule(self, key: str, due_at_s: float, token: object = None) -> None:
            seen.append((key, token))
            super().schedule(key, due_at_s, token)

    spy = Spy()
    spy.load((f"ld_{i:024x}", BASE_S + 60.0 + i, (1, 0)) for i in range(200))
    fired, lateness = _simulate(spy, [f"ld_{i:024x}" for i in range(200)], [BASE_S + 60.0 + i for i in range(200)],
                                seed=2, tick_s=0.25, batch=BATCH)
    assert fired == len(lateness) >= 100 and max(lateness) < 1.0
    assert seen and all(len(k) == 27 and type(t) is tuple and t[0] == 1 and 1 <= t[1] <= 3 for k, t in seen)


def test_the_wheel_fires_like_the_heap() -> None:
    rng = random.Random(3)
    heap, wheel = TimerIndex(), HashedWheel()
    now, fired_heap, fired_wheel = 0.0, [], []
    for _ in range(3000):
        action, key = rng.random(), f"ld_{rng.randrange(200):024x}"
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

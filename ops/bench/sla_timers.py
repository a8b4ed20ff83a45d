"""``python -m ops.bench.sla_timers --n 1000000``: the SLA timer index at one worker's full load.

Measures, for ``n`` pending deadlines spread uniformly over 60–3600 s, fed exactly as
``streams/agents/sla.py`` feeds the index: the key is the lead id (``ld_<24 hex>``, a fresh
string per call, as decoded from Kafka or the table) and the token a fresh ``(cycle, step)``
tuple:

* **memory** — ``tracemalloc``'s count of everything the index retains after ``n`` inserts:
  its structures, and whatever it keeps of the keys, due times and tokens (once the commands
  or table rows it was fed are gone, only the index holds them). What the same keys would cost
  as ``str`` objects is shown for comparison;
* **inserts/s**, **re-schedules/s** (replacing a pending timer), **cancels/s**, and the
  **rebuild** time of an index from ``n`` ``(lead_id, due, (cycle, step))`` rows as read from
  the table (the read and decode of the table itself not included);
* **lateness** in a simulated run on an accelerated fake clock: a loop wakes every 250 ms
  (``--tick``, the agent's interval) of simulated time, cancels the leads "contacted" since
  (20% of them, each before its deadline), pops what is due at most 500 at a time
  (``--batch``, the agent's batch) and re-arms the next ladder step for half of what fired. The
  simulated clock jumps the sleep instantly but advances by the *real* time of each iteration's
  index work, so index cost is never accelerated away. **Lateness** of a fired deadline = the
  simulated instant the ``pop_due`` call that returned it finished − its due time (the wait for
  the next wake-up plus the index's own cost; not the Kafka send that follows).

``--decode`` also times the rebuild as ``streams/agents/sla.py`` does it: ``n`` ``SlaTimer``
values encoded by the leadflow codec (the bytes the ``sla_timers`` table stores) are decoded
by the codec and turned into index rows by the agent's own expression, then loaded; only the
RocksDB iteration is left out.

``--compare-wheel`` runs the same measurements on a hashed timing wheel (one slot per 100 ms,
slots in a dict, ``str`` keys and tuple tokens held as given), the alternative the SLA issue
mentions, to show why ``sla.timers`` is a heap.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import math
import platform
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sla.timers import TimerIndex

__all__ = ["Figures", "HashedWheel", "measure", "main"]

BASE_S = 1_767_600_000.0  # 2026-01-05 08:00 UTC: an epoch-seconds "now", as the worker's clock gives
TICK_S = 0.25  # the pop loop's interval in streams/agents/sla.py
BATCH = 500  # the most it pops per wake-up there
WHEEL_SLOT_S = 0.1
LADDER_GAPS_S = (120.0, 180.0, 300.0)  # the default ladder: remind → +2 min reassign → +3 → +5
MIB = 1024 * 1024


class Index(Protocol):
    def schedule(self, key: str, due_at_s: float, token: object = None) -> None: ...
    def cancel(self, key: str) -> bool: ...
    def pop_due(self, now_s: float, limit: int | None = None) -> list[tuple[str, object]]: ...
    def __len__(self) -> int: ...


class HashedWheel:
    """Comparison baseline: a hashed timing wheel keyed by absolute 100 ms slot (no cascading needed,
    the dict plays the wheel's overflow levels). O(1) schedule and cancel, eager deletion."""

    __slots__ = ("_tick", "_slots", "_where", "_cursor")

    def __init__(self, tick_s: float = WHEEL_SLOT_S) -> None:
        self._tick = tick_s
        self._slots: dict[int, dict[str, tuple[float, object]]] = {}
        self._where: dict[str, dict[str, tuple[float, object]]] = {}
        self._cursor: int | None = None  # no slot below this one holds a timer

    def __len__(self) -> int:
        return len(self._where)

    def schedule(self, key: str, due_at_s: float, token: object = None) -> None:
        old = self._where.get(key)
        if old is not None:
            del old[key]
        slot = int(due_at_s // self._tick)
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = {}
        bucket[key] = (due_at_s, token)
        self._where[key] = bucket
        if self._cursor is None or slot < self._cursor:
            self._cursor = slot

    def cancel(self, key: str) -> bool:
        bucket = self._where.pop(key, None)
        if bucket is None:
            return False
        del bucket[key]
        return True

    def pop_due(self, now_s: float, limit: int | None = None) -> list[tuple[str, object]]:
        fired: list[tuple[str, object]] = []
        if self._cursor is None:
            return fired
        last = int(now_s // self._tick)
        slot = self._cursor
        while slot <= last and (limit is None or len(fired) < limit):
            bucket = self._slots.get(slot)
            if bucket:
                due = sorted((d, k) for k, (d, _) in bucket.items() if d <= now_s)
                for _, key in due[: None if limit is None else limit - len(fired)]:
                    fired.append((key, bucket.pop(key)[1]))
                    del self._where[key]
                if bucket:  # the current slot's later timers, or the limit was reached
                    break
            if bucket is not None:
                del self._slots[slot]
            slot += 1
        self._cursor = slot
        return fired


@dataclass(frozen=True, slots=True)
class Figures:
    name: str
    memory_mib: float
    str_keys_mib: float
    inserts_per_s: float
    reschedules_per_s: float
    cancels_per_s: float
    rebuild_s: float
    rebuild_cpu_s: float
    decode_rebuild_s: float | None
    decode_rebuild_cpu_s: float | None
    pause_s: float
    pops_per_s: float
    fired: int
    lateness_p50_s: float
    lateness_p99_s: float
    lateness_max_s: float


def _rows(n: int, seed: int) -> Iterator[tuple[str, float]]:
    rng = random.Random(seed)
    for _ in range(n):
        yield f"ld_{rng.getrandbits(96):024x}", BASE_S + rng.uniform(60.0, 3600.0)


def _token(cycle: int, step: int) -> tuple[int, int]:
    """A fresh tuple per call, as ``track`` builds one from each ``SlaTimer``."""
    return (cycle, step)


def _memory(factory: Callable[[], Index], n: int, seed: int) -> tuple[float, float]:
    """MiB the index retains after ``n`` inserts (all of it), and what the keys would take as ``str``."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = factory()
    for key, due in _rows(n, seed):
        index.schedule(key, due, _token(1, 0))
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    del index
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    keys = [key for key, _ in _rows(n, seed)]
    key_bytes = tracemalloc.get_traced_memory()[0] - before - sys.getsizeof(keys)
    tracemalloc.stop()
    return retained / MIB, key_bytes / MIB


def _rate(count: int, work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return count / (time.perf_counter() - start)


def _simulate(index: Index, keys: list[str], dues: list[float], seed: int,
              tick_s: float, batch: int) -> tuple[int, list[float]]:
    """Run the pop loop to the end on the accelerated clock; return (fired, lateness of each)."""
    rng = random.Random(seed + 1)
    due_of = dict(zip(keys, dues))
    contacts = sorted((BASE_S + rng.uniform(0.0, due - BASE_S), key)
                      for key, due in zip(keys, dues) if rng.random() < 0.2)
    next_contact = 0
    lateness: list[float] = []
    now = BASE_S
    while len(index):
        now += tick_s  # the loop's sleep, skipped in real time
        start = time.perf_counter()
        while next_contact < len(contacts) and contacts[next_contact][0] <= now:
            index.cancel(contacts[next_contact][1])  # first contact stops the SLA
            next_contact += 1
        fired = index.pop_due(now, limit=batch)
        popped = time.perf_counter()
        now += popped - start  # all index work costs real time on the simulated clock too
        for key, token in fired:
            due = due_of[key]
            lateness.append(now - due)
            cycle, step = cast(tuple[int, int], token)
            if step < len(LADDER_GAPS_S) and rng.random() < 0.5:  # nobody called: the next step
                due_of[key] = due + LADDER_GAPS_S[step]
                index.schedule(key, due_of[key], _token(cycle, step + 1))
        now += time.perf_counter() - popped
    return len(lateness), lateness


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1)]


def _compaction_pause(index: Index) -> float:
    """The longest stall the index can cause: rebuilding its heap with n live and n stale entries."""
    compact = getattr(index, "_compact", None)  # private on purpose: the index decides when, we time it
    if compact is None:
        return 0.0  # eager deletion: nothing to compact
    start = time.perf_counter()
    compact()
    return time.perf_counter() - start


def _insert_all(index: Index, keys: list[str], dues: list[float], step: int, shift: float = 0.0) -> None:
    for key, due in zip(keys, dues):
        index.schedule(key, due + shift, _token(1, step))


def _cancel_all(index: Index, keys: list[str]) -> None:
    for key in keys:
        index.cancel(key)


def measure(name: str, factory: Callable[[], Index], n: int, seed: int,
            rebuild: Callable[[Iterable[tuple[str, float, object]]], Index], tick_s: float = TICK_S,
            batch: int = BATCH, decode: bool = False) -> Figures:
    """Every figure for one implementation."""
    memory_mib, str_keys_mib = _memory(factory, n, seed)
    rows = list(_rows(n, seed))
    keys, dues = [k for k, _ in rows], [d for _, d in rows]
    del rows
    index = factory()
    inserts = _rate(n, lambda: _insert_all(index, keys, dues, 0))
    reschedules = _rate(n, lambda: _insert_all(index, keys, dues, 1, shift=120.0))
    pause_s = _compaction_pause(index)
    doomed = keys[::10]
    cancels = _rate(len(doomed), lambda: _cancel_all(index, doomed))
    pending = len(index)
    pops = _rate(pending, lambda: index.pop_due(BASE_S + 10_000.0))
    del index
    table_rows: list[tuple[str, float, object]] = [(k, d, _token(1, 0)) for k, d in zip(keys, dues)]
    start, cpu = time.perf_counter(), time.process_time()
    rebuilt = rebuild(table_rows)
    rebuild_s, rebuild_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    del table_rows
    decode_rebuild_s, decode_rebuild_cpu_s = _decode_rebuild_s(rebuild, keys, dues) if decode else (None, None)
    fired, lateness = _simulate(rebuilt, keys, dues, seed, tick_s, batch)
    lateness.sort()
    return Figures(
        name=name, memory_mib=memory_mib, str_keys_mib=str_keys_mib, inserts_per_s=inserts, reschedules_per_s=reschedules,
        cancels_per_s=cancels, rebuild_s=rebuild_s, rebuild_cpu_s=rebuild_cpu_s,
        decode_rebuild_s=decode_rebuild_s, decode_rebuild_cpu_s=decode_rebuild_cpu_s, pause_s=pause_s, pops_per_s=pops, fired=fired,
        lateness_p50_s=_percentile(lateness, 0.50) if lateness else 0.0,
        lateness_p99_s=_percentile(lateness, 0.99) if lateness else 0.0,
        lateness_max_s=lateness[-1] if lateness else 0.0,
    )


def _decode_rebuild_s(rebuild: Callable[[Iterable[tuple[str, float, object]]], Index],
                      keys: list[str], dues: list[float]) -> tuple[float, float]:
    """Seconds (wall, CPU) to read ``sla_timers`` values with the real codec and load them, as the agent does."""
    from datetime import datetime, timezone

    codec: Any = importlib.import_module("streams.codec")  # the app's codec: imported only for --decode
    lead_state: Any = importlib.import_module("rules.lead")
    raws = [codec.encode(lead_state.SlaTimer(lead_id=key, cycle=1, step=0,
                                             due_at=datetime.fromtimestamp(due, timezone.utc)))
            for key, due in zip(keys, dues)]
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    # As streams/agents/sla.py reads the RocksDB store: raw keys and values, codec.timer_fields.
    fields = ((key, codec.timer_fields(raw)) for key, raw in zip(keys, raws))
    rebuild((key, row[0], (row[1], row[2])) for key, row in fields if row is not None)
    return time.perf_counter() - start, time.process_time() - cpu


def _heap_rebuild(rows: Iterable[tuple[str, float, object]]) -> Index:
    index = TimerIndex()
    index.load(rows)
    return index


def _wheel_rebuild(rows: Iterable[tuple[str, float, object]]) -> Index:
    wheel = HashedWheel()
    for key, due, token in rows:
        wheel.schedule(key, due, token)
    return wheel


def _table(n: int, results: list[Figures]) -> str:
    goals: dict[str, tuple[str, Callable[[Figures], bool]]] = {
        "memory": ("≤ 150 MiB", lambda f: f.memory_mib <= 150),
        "rebuild": ("≤ 5 s", lambda f: f.rebuild_s <= 5),
        "decode": ("≤ 5 s", lambda f: f.decode_rebuild_s is None or f.decode_rebuild_s <= 5),
        "p99": ("≤ 1 s", lambda f: f.lateness_p99_s <= 1),
    }
    lines: list[tuple[str, str | None, Callable[[Figures], str]]] = [
        ("index memory, all it retains (keys, due times, tokens)", "memory", lambda f: f"{f.memory_mib:,.1f} MiB"),
        ("  (the same keys as str objects would take)", None, lambda f: f"{f.str_keys_mib:,.1f} MiB"),
        ("inserts", None, lambda f: f"{f.inserts_per_s:,.0f} /s"),
        ("re-schedules (replace pending)", None, lambda f: f"{f.reschedules_per_s:,.0f} /s"),
        ("cancels", None, lambda f: f"{f.cancels_per_s:,.0f} /s"),
        ("pops (draining everything due)", None, lambda f: f"{f.pops_per_s:,.0f} /s"),
        ("longest stall (compacting n live + n stale)", None, lambda f: f"{f.pause_s:.2f} s"),
        (f"rebuild from {n:,} table rows", "rebuild", lambda f: f"{f.rebuild_s:.2f} s"),
        ("  its CPU time (what a busy machine cannot inflate)", None, lambda f: f"{f.rebuild_cpu_s:.2f} s"),
        ("  the same, decoding the table's bytes first", "decode",
         lambda f: "-" if f.decode_rebuild_s is None else f"{f.decode_rebuild_s:.2f} s"),
        ("  its CPU time", None,
         lambda f: "-" if f.decode_rebuild_cpu_s is None else f"{f.decode_rebuild_cpu_s:.2f} s"),
        ("deadlines fired in the simulated run", None, lambda f: f"{f.fired:,}"),
        ("lateness p50", None, lambda f: f"{f.lateness_p50_s * 1000:.0f} ms"),
        ("lateness p99", "p99", lambda f: f"{f.lateness_p99_s * 1000:.0f} ms"),
        ("lateness max", None, lambda f: f"{f.lateness_max_s * 1000:.0f} ms"),
    ]
    width = max(len(label) for label, _, _ in lines) + 2
    head = f"{'':<{width}}" + "".join(f"{r.name:>20}" for r in results) + f"{'goal (heap)':>18}"
    out = [head, "-" * len(head)]
    for label, goal, cell in lines:
        row = f"{label:<{width}}" + "".join(f"{cell(r):>20}" for r in results)
        if goal is not None:
            text, ok = goals[goal]
            row += f"{text + (' ok' if ok(results[0]) else ' MISSED'):>18}"
        out.append(row)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Benchmark the SLA timer index with N pending deadlines."""
    parser = argparse.ArgumentParser(prog="python -m ops.bench.sla_timers", description=main.__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="pending deadlines (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tick", type=float, default=TICK_S,
                        help=f"the pop loop's interval in seconds (default {TICK_S:g}, as the agent)")
    parser.add_argument("--batch", type=int, default=BATCH,
                        help=f"the most one wake-up pops (default {BATCH}, as the agent)")
    parser.add_argument("--decode", action="store_true",
                        help="also time the rebuild from the table's encoded values (the real codec)")
    parser.add_argument("--compare-wheel", action="store_true", help="also measure a hashed timing wheel")
    args = parser.parse_args(argv)
    print(f"SLA timer index: {args.n:,} pending deadlines due in 60-3600 s, keys ld_<24 hex>, tokens (cycle, step), "
          f"pop loop every {args.tick * 1000:g} ms, {args.batch} at most (Python {platform.python_version()}, {platform.machine()})", flush=True)
    results = [measure("heap (sla.timers)", TimerIndex, args.n, args.seed, _heap_rebuild, args.tick, args.batch,
                       args.decode)]
    if args.compare_wheel:
        results.append(measure("hashed wheel", HashedWheel, args.n, args.seed, _wheel_rebuild, args.tick, args.batch,
                               args.decode))
    print(_table(args.n, results))


if __name__ == "__main__":
    main()

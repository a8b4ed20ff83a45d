"""The benchmark's arithmetic, pure: percentiles, latency summaries, rates, ratios, sustained rate.

Nothing here reads a clock or touches I/O, so every figure the harness prints can be checked
by a unit test (tests/ops/test_bench_stats.py).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "QUANTILES",
    "LatencySummary",
    "percentile",
    "rate",
    "ratio",
    "records_per_lead",
    "histogram",
    "log_edges",
    "is_sustained",
    "max_sustained",
    "parse_rates",
]

#: The quantiles every latency summary reports (percent).
QUANTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by linear interpolation between closest ranks.

    The same definition as numpy's default (``method="linear"``). ``values`` need not be sorted.
    Raises ``ValueError`` on an empty sequence or ``q`` outside 0..100.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q} is not within 0..100")
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Count, mean, the ``QUANTILES`` and the maximum of a set of latencies, in seconds."""

    count: int
    mean_s: float | None
    p50_s: float | None
    p90_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencySummary:
        data = sorted(values)
        if not data:
            return cls(0, None, None, None, None, None, None)
        p50, p90, p95, p99 = (percentile(data, q) for q in QUANTILES)
        return cls(len(data), sum(data) / len(data), p50, p90, p95, p99, data[-1])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 when nothing happened or no time passed (never a division error)."""
    if count <= 0 or seconds <= 0:
        return 0.0
    return count / seconds


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` when the denominator is not positive."""
    if denominator <= 0:
        return None
    return numerator / denominator


def log_edges(low: float, high: float, per_decade: int = 8) -> list[float]:
    """Bin edges spaced evenly on a log scale from ``low`` to at least ``high`` (both > 0)."""
    if low <= 0 or high <= low:
        raise ValueError(f"log_edges needs 0 < low < high, got {low}, {high}")
    step = 10 ** (1 / per_decade)
    edges = [low]
    while edges[-1] < high:
        edges.append(edges[-1] * step)
    return edges


def histogram(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """Counts per bin ``[edges[i], edges[i+1])``; values below the first edge count in the first
    bin and values at or above the last edge in the last, so no sample is dropped."""
    if len(edges) < 2:
        raise ValueError("a histogram needs at least two edges")
    counts = [0] * (len(edges) - 1)
    last = len(counts) - 1
    for value in values:
        index = 0
        while index < last and value >= edges[index + 1]:
            index += 1
        counts[index] += 1
    return counts


def is_sustained(offered: float, achieved: float, drain_s: float, *, share: float = 0.9,
                 max_drain_s: float = 5.0) -> bool:
    """A step held its offered rate: it delivered at least ``share`` of it, and the backlog left
    when the feed stopped was gone within ``max_drain_s`` seconds."""
    return offered > 0 and achieved >= share * offered and drain_s <= max_drain_s


def is_held(offered: float, achieved: float, drain_s: float) -> bool:
    """A fixed-rate step held its rate *steadily*: as ``is_sustained``, with at most 1 s of backlog
    left when the feed stopped. A queue that grows all through a 20 s step at 5% over what the
    worker keeps up with leaves ~1 s; the paced search (``--rates paced``) wants no growth."""
    return is_sustained(offered, achieved, drain_s, max_drain_s=1.0)


def max_sustained(steps: Iterable[tuple[float | None, float, bool]]) -> float:
    """The highest rate the system held, from ``(offered, achieved, sustained)`` per step.

    A fixed-rate step that was sustained counts with its achieved rate; the unthrottled step
    (offered ``None``) counts with what it achieved, since it measures the ceiling directly.
    """
    best = 0.0
    for offered, achieved, sustained in steps:
        if offered is None or sustained:
            best = max(best, achieved)
    return best


def parse_rates(text: str) -> list[float | str]:
    """``"25,50,max,half"`` -> ``[25.0, 50.0, "max", "half"]``.

    ``max``: unthrottled, as fast as it goes; ``half``: half the throughput the latest ``max``
    step before it reached (the rate the latency goal is judged at). ``paced``: a bisection for
    the highest rate held at a steady pace (``is_held``); ``half-paced``: half of that.
    """
    rates: list[float | str] = []
    for part in text.split(","):
        item = part.strip().lower()
        if not item:
            continue
        if item in ("max", "half", "paced", "half-paced"):
            if item == "half" and "max" not in rates:
                raise ValueError("--rates: 'half' needs a 'max' step before it (half of what max reached)")
            if item == "half-paced" and "paced" not in rates:
                raise ValueError("--rates: 'half-paced' needs a 'paced' step before it (half of the paced max)")
            rates.append(item)
            continue
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"--rates: {part.strip()!r} is neither a number of leads/s nor max, half, paced "
                             "or half-paced") from None
        if not value > 0 or math.isinf(value):
            raise ValueError(f"--rates: {part.strip()!r} must be a positive number of leads/s")
        rates.append(value)
    if not rates:
        raise ValueError("--rates: give at least one rate, e.g. 25,50,max,half")
    return rates


def records_per_lead(counts: dict[str, int]) -> float | None:
    """Kafka records written per lead fed, from one deployment's topic counts (``None``: no leads)."""
    leads = counts.get("(leads fed)", 0)
    if not leads:
        return None
    return sum(n for name, n in counts.items() if not name.startswith("(")) / leads

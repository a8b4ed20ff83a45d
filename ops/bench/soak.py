"""``leadflow bench soak``: one steady rate for a long time, measured window by window.

The load benchmark's steps last 20 s: long enough for a rate, too short for what only time
shows: memory that grows with every lead, a latency that drifts, a backlog that creeps up, a
cache or a table that never gives anything back. The soak feeds leads open-loop at ``--rate``
for ``--minutes`` (an SDR closing each lead once its webhook arrives, so a team's open leads
stay at their steady size) and records per window: leads sent and delivered, the backlog, the
capture → webhook percentiles of the leads sent in it, the worker's CPU and resident memory,
and the worker's own consumer lag and event-loop lag from ``/metrics``. At the end: how much
memory grew per hour and per 1,000 leads (a least-squares line through the windows after the
first), how the p99 of the last third compares with the first, and every lead accounted for.

The arithmetic (``summarize`` and what it calls) is pure, for the unit tests.
"""
from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ops.bench.harness import Sampler, Say, Stack, country_of, load_average
from ops.bench.load import StepPlan, bench_lead, feed, lead_id_of
from ops.bench.plot import PALETTE, fmt_number, nice_max, svg_text
from ops.bench.results import Resources
from ops.bench.runner import Rig, machine_facts, open_rig
from ops.bench.stats import LatencySummary

__all__ = ["SoakOptions", "SoakWindow", "SoakSummary", "least_squares_slope", "summarize", "kept_up",
           "scrape_gauges", "render_soak_svg", "run_soak"]

#: A window kept up when the leads sent but not yet delivered at its end were at most this many
#: seconds of the offered rate (a lead's path takes well under a second when nothing queues).
KEPT_UP_BACKLOG_S = 2.0
#: The gauges read from each worker's ``/metrics`` at every window's end (summed over labels).
GAUGES = ("leadflow_consumer_lag_messages", "leadflow_event_loop_lag_seconds", "leadflow_team_open_leads")


@dataclass(frozen=True, slots=True)
class SoakOptions:
    rate: float
    minutes: float
    window_s: float
    feed: str
    workers: int
    batch: int
    teams: int
    reps: int
    capacity: int
    partitions: int
    drain_timeout_s: float
    port: int
    receiver_port: int
    out: Path
    keep_stack: bool
    worker_env: dict[str, str]


@dataclass(frozen=True, slots=True)
class SoakWindow:
    """One window of the soak: what was sent in it and what the worker looked like at its end."""

    index: int
    end_s: float  # seconds since the soak began, at the window's end
    sent: int  # leads offered in this window
    accepted: int  # of them, accepted by the API or the broker
    delivered: int  # of them, delivered by the end of the soak (drain included)
    backlog: int  # leads sent so far, minus webhooks received so far, at the window's end
    capture_to_webhook: LatencySummary  # the leads sent in this window
    cpu_mean_pct: float | None
    rss_max_mb: float | None
    gauges: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SoakSummary:
    """The soak as a whole, from its windows and every lead's latency."""

    sent: int
    accepted: int
    delivered: int
    not_delivered: int
    capture_to_webhook: LatencySummary
    windows_kept_up: int
    windows: int
    p99_first_third_s: float | None
    p99_last_third_s: float | None
    rss_first_mb: float | None
    rss_last_mb: float | None
    #: The least-squares slope of the windows' resident memory after the first window.
    rss_growth_mb_per_hour: float | None
    rss_growth_kb_per_1k_leads: float | None
    cpu_mean_pct: float | None
    max_gauges: dict[str, float] = field(default_factory=dict)
    #: The same trend in each third of those windows: memory that levels off shows a falling slope
    #: (one line through a curve says "growing" to the end).
    rss_growth_by_third_mb_per_hour: list[float | None] = field(default_factory=list)


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """The slope of the least-squares line through ``(x, y)`` points; ``None`` for fewer than two
    distinct x values."""
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def kept_up(backlog: int, rate: float, *, seconds: float = KEPT_UP_BACKLOG_S) -> bool:
    """A window kept up when its backlog was at most ``seconds`` of the offered rate."""
    return backlog <= max(1.0, rate * seconds)


def _thirds_p99(windows: Sequence[SoakWindow], latencies: Sequence[Sequence[float]]) -> tuple[float | None,
                                                                                               float | None]:
    third = len(windows) // 3
    if third == 0:
        return None, None
    first = [x for lat in latencies[:third] for x in lat]
    last = [x for lat in latencies[-third:] for x in lat]
    return LatencySummary.of(first).p99_s, LatencySummary.of(last).p99_s


def summarize(windows: Sequence[SoakWindow], latencies: Sequence[Sequence[float]], rate: float) -> SoakSummary:
    """The whole soak from its windows; ``latencies[i]`` are window ``i``'s capture → webhook seconds."""
    if len(latencies) != len(windows):
        raise ValueError(f"{len(latencies)} latency lists for {len(windows)} windows")
    sent = sum(w.sent for w in windows)
    accepted = sum(w.accepted for w in windows)
    delivered = sum(w.delivered for w in windows)
    first_p99, last_p99 = _thirds_p99(windows, latencies)
    rss = [(w.end_s, w.rss_max_mb) for w in windows if w.rss_max_mb is not None]
    # The first window holds the warm-up's growth (caches, buffers, first allocations): not a trend.
    slope_per_s = least_squares_slope([(x, y) for x, y in rss[1:]])
    per_hour = None if slope_per_s is None else slope_per_s * 3600
    per_1k = None if slope_per_s is None or rate <= 0 else slope_per_s / rate * 1_000_000  # MB/lead -> KB/1k
    after = rss[1:]
    third = len(after) // 3
    by_third = [] if third < 2 else [
        None if (slope := least_squares_slope(part)) is None else slope * 3600
        for part in (after[:third], after[third:2 * third], after[2 * third:])]
    cpus = [w.cpu_mean_pct for w in windows if w.cpu_mean_pct is not None]
    max_gauges: dict[str, float] = {}
    for window in windows:
        for name, value in window.gauges.items():
            max_gauges[name] = max(value, max_gauges.get(name, value))
    return SoakSummary(
        sent=sent, accepted=accepted, delivered=delivered, not_delivered=accepted - delivered,
        capture_to_webhook=LatencySummary.of(x for lat in latencies for x in lat),
        windows_kept_up=sum(1 for w in windows if kept_up(w.backlog, rate)), windows=len(windows),
        p99_first_third_s=first_p99, p99_last_third_s=last_p99,
        rss_first_mb=rss[0][1] if rss else None, rss_last_mb=rss[-1][1] if rss else None,
        rss_growth_mb_per_hour=per_hour, rss_growth_kb_per_1k_leads=per_1k,
        cpu_mean_pct=statistics.fmean(cpus) if cpus else None, max_gauges=max_gauges,
        rss_growth_by_third_mb_per_hour=by_third,
    )


def scrape_gauges(metrics_text: str, names: Sequence[str] = GAUGES) -> dict[str, float]:
    """``{name: value summed over its labels}`` for each of ``names`` found in a Prometheus text page."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(names)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in wanted and math.isfinite(sample.value):
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


async def _gauges(rig: Rig) -> dict[str, float]:
    total: dict[str, float] = {}
    for worker in rig.deployment.workers:
        if worker.pid is None:
            continue
        try:
            async with rig.session.get(f"{worker.url}/metrics") as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            continue
        for name, value in scrape_gauges(text).items():
            total[name] = total.get(name, 0.0) + value
    return total


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.0f} ms"


async def _window(rig: Rig, options: SoakOptions, index: int, began: float, say: Say) -> tuple[SoakWindow, list[str]]:
    """Feed one window's leads on schedule; the window as far as it is known at its end, and its ids."""
    count = max(1, round(options.rate * options.window_s))
    first = rig.next_index
    run = rig.deployment.app_id
    leads = [bench_lead(i, run, country_of(i, options.teams)) for i in range(first, first + count)]
    ids = [lead_id_of(lead) for lead in leads]
    rig.next_index += count
    errors: Counter[str] = Counter()
    sampler = Sampler(lambda: [w.pid for w in rig.deployment.workers if w.pid is not None])
    await sampler.start()
    plan = StepPlan(f"window {index + 1}", options.feed, options.rate, count, options.batch, options.drain_timeout_s)
    await feed(plan, leads, ids, rig.deployment, rig.session, rig.tracker, errors)
    resources: Resources = await sampler.stop()
    tracker = rig.tracker
    backlog = len(tracker.sent_at) - len(tracker.delivered_at)
    window = SoakWindow(index=index, end_s=time.monotonic() - began, sent=count, accepted=count - sum(errors.values()),
                        delivered=0, backlog=backlog, capture_to_webhook=LatencySummary.of(()),
                        cpu_mean_pct=resources.cpu_mean_pct, rss_max_mb=resources.rss_max_mb,
                        gauges=await _gauges(rig))
    so_far = LatencySummary.of(tracker.delivered_at[i] - tracker.sent_at[i] for i in ids if i in tracker.delivered_at)
    cpu = "" if resources.cpu_mean_pct is None else (f" · cpu {resources.cpu_mean_pct:.0f}% "
                                                      f"· rss {resources.rss_max_mb:.0f} MB")
    lag = window.gauges.get("leadflow_consumer_lag_messages")
    say(f"window {index + 1} ({window.end_s / 60:5.1f} min): sent {count:,}"
        + (f" ({sum(errors.values())} refused: {dict(errors)})" if errors else "")
        + f" · backlog {backlog:,}{'' if kept_up(backlog, options.rate) else ' (falling behind)'}"
        + f" · p50 {_ms(so_far.p50_s)} p99 {_ms(so_far.p99_s)} so far{cpu}"
        + ("" if lag is None else f" · consumer lag {lag:,.0f}"))
    return window, ids


def _completed(window: SoakWindow, ids: Sequence[str], rig: Rig) -> tuple[SoakWindow, list[float]]:
    tracker = rig.tracker
    latencies = [tracker.delivered_at[i] - tracker.sent_at[i] for i in ids if i in tracker.delivered_at]
    done = SoakWindow(index=window.index, end_s=window.end_s, sent=window.sent, accepted=window.accepted,
                      delivered=len(latencies), backlog=window.backlog,
                      capture_to_webhook=LatencySummary.of(latencies), cpu_mean_pct=window.cpu_mean_pct,
                      rss_max_mb=window.rss_max_mb, gauges=window.gauges)
    return done, latencies


async def _drain(rig: Rig, timeout_s: float, say: Say) -> None:
    tracker = rig.tracker
    deadline = time.monotonic() + timeout_s
    while len(tracker.delivered_at) < len(tracker.sent_at) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    left = len(tracker.sent_at) - len(tracker.delivered_at)
    say("drain: every lead sent has its webhook" if not left else f"drain: {left:,} leads without a webhook "
        f"after {timeout_s:.0f} s")


async def run_soak(options: SoakOptions, say: Say) -> dict[str, Any]:
    """Run the soak; the result document (also written as JSON and SVG under ``options.out``)."""
    options.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_facts()
    count = max(1, math.ceil(options.minutes * 60 / options.window_s))
    with Stack(say, keep=options.keep_stack) as stack:
        async with open_rig(stack, options.out / "deployment", workers=options.workers, teams=options.teams,
                            reps=options.reps, capacity=options.capacity, dispose=True,
                            partitions=options.partitions, port=options.port, receiver_port=options.receiver_port,
                            worker_env=options.worker_env, warm_feed=options.feed, batch=options.batch,
                            drain_timeout_s=options.drain_timeout_s, say=say) as rig:
            say(f"soak: {options.rate:g} leads/s over {options.feed} for {options.minutes:g} min, "
                f"{count} windows of {options.window_s:g} s")
            began = time.monotonic()
            partial: list[tuple[SoakWindow, list[str]]] = []
            interrupted = False
            try:
                for index in range(count):
                    partial.append(await _window(rig, options, index, began, say))
                await _drain(rig, options.drain_timeout_s, say)
            except asyncio.CancelledError:
                # Ctrl-C or SIGTERM: hours of windows are not thrown away. The workers are stopped
                # on the way out as always; the windows done so far are written, then the
                # interruption goes on (exit status 130).
                interrupted = True
                say(f"soak: interrupted after {len(partial)} of {count} windows; writing what they measured")
            assert rig.disposer is not None
            dispositions = dict(rig.disposer.status)
            counts = dict(rig.tracker.counts)
    if not partial:
        raise asyncio.CancelledError
    done = [_completed(window, ids, rig) for window, ids in partial]
    windows = [w for w, _ in done]
    summary = summarize(windows, [lat for _, lat in done], options.rate)
    machine["loadavg_after"] = load_average()
    document: dict[str, Any] = {
        "kind": "soak", "started_at": started, "machine": machine,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "summary": asdict(summary), "windows": [asdict(w) for w in windows],
        "dispositions": dispositions, "receiver": counts, "interrupted": interrupted,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path, svg_path = options.out / f"soak-{stamp}.json", options.out / f"soak-{stamp}.svg"
    json_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    svg_path.write_text(render_soak_svg(document))
    _report(summary, options, counts, dispositions, say, interrupted=interrupted)
    say(f"results: {json_path}\nplot:    {svg_path}")
    if interrupted:
        raise asyncio.CancelledError
    return document


def _report(s: SoakSummary, options: SoakOptions, receiver: Mapping[str, int], dispositions: Mapping[str, int],
            say: Say, *, interrupted: bool = False) -> None:
    w = s.capture_to_webhook
    say("")
    say(f"soak: {s.delivered:,} of {s.accepted:,} accepted leads delivered ({s.sent:,} sent; "
        f"{s.not_delivered:,} without a webhook"
        + (", the leads in flight when it was interrupted among them: there was no drain" if interrupted else "")
        + f") · receiver {dict(receiver)} · dispositions {dict(dispositions)}")
    say(f"  capture→webhook p50 {_ms(w.p50_s)} p99 {_ms(w.p99_s)} max {_ms(w.max_s)} · p99 first third "
        f"{_ms(s.p99_first_third_s)}, last third {_ms(s.p99_last_third_s)}")
    say(f"  windows that kept up (backlog ≤ {KEPT_UP_BACKLOG_S:g} s of leads): {s.windows_kept_up} of {s.windows}")
    if s.rss_first_mb is not None and s.rss_last_mb is not None:
        growth = "n/a" if s.rss_growth_mb_per_hour is None else (
            f"{s.rss_growth_mb_per_hour:+,.1f} MB/hour, {s.rss_growth_kb_per_1k_leads:+,.1f} KB per 1,000 leads")
        say(f"  worker rss {s.rss_first_mb:.0f} MB after the first window, {s.rss_last_mb:.0f} MB at the end; "
            f"trend after the first window {growth}; cpu {s.cpu_mean_pct:.0f}% mean")
        if s.rss_growth_by_third_mb_per_hour:
            say("  rss trend by third of those windows: " + ", ".join(
                "n/a" if v is None else f"{v:+,.1f}" for v in s.rss_growth_by_third_mb_per_hour) + " MB/hour")
    else:
        say("  worker cpu and memory: n/a (pip install -e '.[bench]')")
    if s.max_gauges:
        say("  highest at a window's end: " + ", ".join(f"{k.removeprefix('leadflow_')} {v:,.3g}"
                                                       for k, v in sorted(s.max_gauges.items())))


_W, _H = 980, 420
_TOP, _BOTTOM = 56, 360
_PANELS = ((70, 440), (560, 930))


def _series_panel(x0: float, x1: float, title: str, xs: Sequence[float],
                  series: Sequence[tuple[str, Sequence[float | None]]], unit: str, goal: float | None = None) -> list[str]:
    out = [svg_text((x0 + x1) / 2, 40, title, size=14, anchor="middle", extra=' font-weight="bold"')]
    values = [v for _, ys in series for v in ys if v is not None]
    top = nice_max(max([*values, goal or 0.0, 1e-9]) * 1.05)
    right = max([*xs, 1e-9])

    def px(v: float) -> float:
        return x0 + (x1 - x0) * v / right

    def py(v: float) -> float:
        return _BOTTOM - (_BOTTOM - _TOP) * v / top

    out.append(f'<rect x="{x0}" y="{_TOP}" width="{x1 - x0}" height="{_BOTTOM - _TOP}" fill="none" stroke="#999"/>')
    for tick in range(5):
        value = top * tick / 4
        out.append(svg_text(x0 - 6, py(value) + 4, fmt_number(value), size=10, anchor="end", color="#555"))
        out.append(svg_text(px(right * tick / 4), _BOTTOM + 16, fmt_number(right * tick / 4), size=10,
                            anchor="middle", color="#555"))
    if goal is not None:
        out.append(f'<line x1="{x0}" y1="{py(goal):.1f}" x2="{x1}" y2="{py(goal):.1f}" stroke="#d62728" '
                   'stroke-dasharray="6 4"/>')
        out.append(svg_text(x1 - 4, py(goal) - 4, f"goal {fmt_number(goal)} {unit}", size=10, anchor="end",
                            color="#d62728"))
    for index, (name, ys) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True) if y is not None)
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.append(svg_text(x0 + 8, _TOP + 16 + 14 * index, name, size=11, color=color))
    out.append(svg_text((x0 + x1) / 2, _BOTTOM + 34, "minutes since the soak began", size=11, anchor="middle"))
    out.append(svg_text(x0 - 44, (_TOP + _BOTTOM) / 2, unit, size=11, anchor="middle",
                        extra=f' transform="rotate(-90 {x0 - 44} {(_TOP + _BOTTOM) / 2:.0f})"'))
    return out


def render_soak_svg(document: Mapping[str, Any]) -> str:
    """Two panels over the soak's minutes: capture → webhook p50/p99 per window, and the worker's
    resident memory and CPU."""
    windows = list(document.get("windows") or [])
    xs = [float(w["end_s"]) / 60 for w in windows]

    def ms(w: Mapping[str, Any], key: str) -> float | None:
        value = (w.get("capture_to_webhook") or {}).get(key)
        return None if value is None else float(value) * 1000

    settings = document.get("settings") or {}
    subtitle = (f"{document.get('started_at', '')} · {settings.get('rate', '?')} leads/s over "
                f"{settings.get('feed', '?')} · {len(windows)} windows of {settings.get('window_s', '?')} s")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
             'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
             f'<rect width="{_W}" height="{_H}" fill="white"/>',
             svg_text(_W / 2, 18, f"leadflow bench soak · {subtitle}", size=11, anchor="middle", color="#555")]
    parts += _series_panel(*_PANELS[0], "capture → webhook per window", xs,
                           [("p99", [ms(w, "p99_s") for w in windows]), ("p50", [ms(w, "p50_s") for w in windows])],
                           "ms", goal=250.0)
    parts += _series_panel(*_PANELS[1], "worker: memory and CPU", xs,
                           [("rss (MB)", [w.get("rss_max_mb") for w in windows]),
                            ("cpu (% of a core)", [w.get("cpu_mean_pct") for w in windows])], "MB · %")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"

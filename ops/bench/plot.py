"""Draw a run's result as one small, dependency-free SVG: throughput vs rate, and latency CDFs.

Left: leads/s delivered against leads/s offered for each step (the diagonal is "kept up"),
with the worker's CPU beside each point, so the growth of cost with load shows. Right: the
distribution (CDF, log time axis) of capture -> webhook delivered per step, with the 250 ms
goal marked. Hand-written SVG rather than matplotlib: a few dozen shapes do not justify a
plotting stack in the bench extra, and the output is reviewable text.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["render_svg", "PALETTE", "svg_text", "nice_max", "fmt_number"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
_W, _H = 980, 440
_TOP, _BOTTOM = 56, 370  # plot area, both panels
_LEFT_X0, _LEFT_X1 = 70, 440
_RIGHT_X0, _RIGHT_X1 = 540, 950
_GOAL_S = 0.25


def fmt_number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"


def nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * exponent >= value:
            return float(step * exponent)
    return float(10 * exponent)


def svg_text(x: float, y: float, body: str, *, size: int = 12, anchor: str = "start", color: str = "#222",
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}"{extra}>'
            f"{escape(body)}</text>")


def _throughput_panel(steps: Sequence[Mapping[str, Any]], passthrough: float | None) -> list[str]:
    out = [svg_text((_LEFT_X0 + _LEFT_X1) / 2, 40, "throughput: delivered vs offered (leads/s)", size=14,
                 anchor="middle", extra=' font-weight="bold"')]
    achieved = [float(s["throughput"]) for s in steps]
    offered = [float(s["offered_rate"]) if s.get("offered_rate") is not None else float(s["throughput"])
               for s in steps]
    top = nice_max(max([*achieved, *offered, 1.0]) * 1.05)

    def px(v: float) -> float:
        return _LEFT_X0 + (_LEFT_X1 - _LEFT_X0) * v / top

    def py(v: float) -> float:
        return _BOTTOM - (_BOTTOM - _TOP) * v / top

    out.append(f'<rect x="{_LEFT_X0}" y="{_TOP}" width="{_LEFT_X1 - _LEFT_X0}" height="{_BOTTOM - _TOP}" '
               'fill="none" stroke="#999"/>')
    for i in range(6):
        v = top * i / 5
        out.append(f'<line x1="{_LEFT_X0}" y1="{py(v):.1f}" x2="{_LEFT_X1}" y2="{py(v):.1f}" stroke="#eee"/>')
        out.append(svg_text(_LEFT_X0 - 6, py(v) + 4, fmt_number(v), size=10, anchor="end"))
        out.append(svg_text(px(v), _BOTTOM + 14, fmt_number(v), size=10, anchor="middle"))
    out.append(f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(top):.1f}" y2="{py(top):.1f}" '
               'stroke="#bbb" stroke-dasharray="4 3"/>')
    out.append(svg_text(px(top) - 4, py(top) + 14, "kept up", size=10, anchor="end", color="#888"))
    for index, step in enumerate(steps):
        color = PALETTE[index % len(PALETTE)]
        x, y = px(offered[index]), py(achieved[index])
        shape = "circle" if step.get("sustained") else "rect"
        if shape == "circle":
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}"/>')
        else:
            out.append(f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="none" '
                       f'stroke="{color}" stroke-width="2"/>')
        cpu = (step.get("resources") or {}).get("cpu_mean_pct")
        note = f"{fmt_number(achieved[index])}/s" + (f" · cpu {cpu:.0f}%" if isinstance(cpu, (int, float)) else "")
        out.append(svg_text(x + 8, y - 6, note, size=10, color=color))
    out.append(svg_text((_LEFT_X0 + _LEFT_X1) / 2, _BOTTOM + 32, "offered leads/s (unthrottled: plotted at what it "
                     "reached)", size=11, anchor="middle"))
    out.append(svg_text(20, (_TOP + _BOTTOM) / 2, "delivered leads/s", size=11, anchor="middle",
                     extra=f' transform="rotate(-90 20 {(_TOP + _BOTTOM) / 2:.0f})"'))
    legend = "● sustained   □ fell behind"
    if passthrough:
        legend += f"   raw aiokafka passthrough: {fmt_number(passthrough)} records/s"
    out.append(svg_text(_LEFT_X0, _BOTTOM + 50, legend, size=11))
    return out


def _latency_panel(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    out = [svg_text((_RIGHT_X0 + _RIGHT_X1) / 2, 40, "capture → webhook delivered: CDF per step", size=14,
                 anchor="middle", extra=' font-weight="bold"')]
    samples = [sorted(float(v) for v in s.get("webhook_sample") or [] if v > 0) for s in steps]
    everything = [v for sample in samples for v in sample]
    low = 10 ** math.floor(math.log10(min(everything))) if everything else 0.001
    high = 10 ** math.ceil(math.log10(max(everything))) if everything else 10.0
    high = max(high, low * 100)
    span = math.log10(high) - math.log10(low)

    def px(v: float) -> float:
        return _RIGHT_X0 + (_RIGHT_X1 - _RIGHT_X0) * (math.log10(v) - math.log10(low)) / span

    def py(q: float) -> float:
        return _BOTTOM - (_BOTTOM - _TOP) * q

    out.append(f'<rect x="{_RIGHT_X0}" y="{_TOP}" width="{_RIGHT_X1 - _RIGHT_X0}" height="{_BOTTOM - _TOP}" '
               'fill="none" stroke="#999"/>')
    decade = low
    while decade <= high * 1.0001:
        out.append(f'<line x1="{px(decade):.1f}" y1="{_TOP}" x2="{px(decade):.1f}" y2="{_BOTTOM}" stroke="#eee"/>')
        label = f"{decade * 1000:g} ms" if decade < 1 else f"{decade:g} s"
        out.append(svg_text(px(decade), _BOTTOM + 14, label, size=10, anchor="middle"))
        decade *= 10
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        out.append(f'<line x1="{_RIGHT_X0}" y1="{py(q):.1f}" x2="{_RIGHT_X1}" y2="{py(q):.1f}" stroke="#eee"/>')
        out.append(svg_text(_RIGHT_X0 - 6, py(q) + 4, f"{q:g}", size=10, anchor="end"))
    if low <= _GOAL_S <= high:
        out.append(f'<line x1="{px(_GOAL_S):.1f}" y1="{_TOP}" x2="{px(_GOAL_S):.1f}" y2="{_BOTTOM}" '
                   'stroke="#d62728" stroke-dasharray="5 4"/>')
        out.append(svg_text(px(_GOAL_S) + 4, _TOP + 12, "250 ms goal (p99)", size=10, color="#d62728"))
    legend_y = _TOP + 28
    for index, (step, sample) in enumerate(zip(steps, samples, strict=True)):
        color = PALETTE[index % len(PALETTE)]
        if sample:
            n = len(sample)
            # At most ~400 vertices per curve: enough for a smooth CDF, small file.
            stride = max(1, n // 400)
            points = [(px(v), py((i + 1) / n)) for i, v in enumerate(sample) if i % stride == 0 or i == n - 1]
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        p99 = (step.get("capture_to_webhook") or {}).get("p99_s")
        p99_text = f" p99 {p99 * 1000:,.0f} ms" if isinstance(p99, (int, float)) else ""
        out.append(svg_text(_RIGHT_X1 - 8, legend_y, f"{step.get('label', index)}{p99_text}", size=10,
                         anchor="end", color=color))
        legend_y += 13
    out.append(svg_text((_RIGHT_X0 + _RIGHT_X1) / 2, _BOTTOM + 32, "latency (log scale)", size=11, anchor="middle"))
    out.append(svg_text(_RIGHT_X0 - 40, (_TOP + _BOTTOM) / 2, "share of leads", size=11, anchor="middle",
                     extra=f' transform="rotate(-90 {_RIGHT_X0 - 40} {(_TOP + _BOTTOM) / 2:.0f})"'))
    return out


def render_svg(document: Mapping[str, Any]) -> str:
    """The SVG for a result document (``RunResult.to_dict()`` or the JSON read back)."""
    steps = list(document.get("steps") or [])
    passthrough = (document.get("passthrough") or {}).get("throughput")
    machine = document.get("machine") or {}
    subtitle = (f"{document.get('started_at', '')} · {machine.get('cpus', '?')} CPUs · load average "
                f"{machine.get('loadavg_before', '?')} before · ratio to passthrough "
                f"{_ratio_text(document.get('ratio_to_passthrough'))}")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
             'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
             f'<rect width="{_W}" height="{_H}" fill="white"/>',
             svg_text(_W / 2, 18, f"leadflow bench · {subtitle}", size=11, anchor="middle", color="#555")]
    parts += _throughput_panel(steps, passthrough if isinstance(passthrough, (int, float)) else None)
    parts += _latency_panel(steps)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _ratio_text(value: Any) -> str:
    return f"{value:.3f}×" if isinstance(value, (int, float)) else "n/a"

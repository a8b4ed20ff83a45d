"""Render a ``Summary`` as one self-contained HTML page with inline SVG charts (no JS, no CDN)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from ops.report.model import ROUTING_TARGET_S, STAGES, Distribution, Summary

__all__ = ["render_html", "bucket_label", "duration"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1d2433}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #dde3ec;padding-bottom:4px}
.muted{color:#5b6577}.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:10px;margin-top:16px}
.tile{border:1px solid #dde3ec;border-radius:8px;padding:10px 12px}.tile b{display:block;font-size:22px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:18px}table{border-collapse:collapse;width:100%}
td,th{padding:4px 8px;border-bottom:1px solid #eef1f5;text-align:right}td:first-child,th:first-child{text-align:left}
svg text{font-size:11px;fill:#3b4556}
"""
_BLUE, _GREEN, _ORANGE, _RED, _GREY = "#3b7ddd", "#2f9e44", "#f08c00", "#e03131", "#adb5bd"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if math.isinf(seconds):
        return "> 1 d"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def bucket_label(bounds: Sequence[float], i: int) -> str:
    return f"≤ {duration(bounds[i])}" if i < len(bounds) else f"> {duration(bounds[-1])}"


def _at_most(seconds: float | None) -> str:
    # Bucketed data: the median is known to lie under this bound, not exactly at it.
    return "–" if seconds is None else f"≤ {duration(seconds)}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _num(value: float) -> str:
    return f"{value:,.0f}"


def _bars(dist: Distribution, color: str, title: str) -> str:
    """A vertical bar chart of a distribution's buckets (empty trailing buckets trimmed)."""
    counts = list(dist.counts)
    last = max((i for i, c in enumerate(counts) if c), default=-1)
    if last < 0:
        return f"<p class='muted'>{escape(title)}: no observations.</p>"
    first = min(i for i, c in enumerate(counts) if c)
    shown = range(max(first - 1, 0), min(last + 2, len(counts)))
    width, height, pad = 520, 170, 28
    bar = (width - pad) / len(shown)
    top = max(counts)
    parts = [f"<svg role='img' aria-label='{escape(title)}' width='{width}' height='{height + 40}' "
             f"viewBox='0 0 {width} {height + 40}'><title>{escape(title)}</title>"]
    for n, i in enumerate(shown):
        h = (counts[i] / top) * (height - 20) if top else 0
        x = pad + n * bar
        parts.append(f"<rect x='{x + 2:.1f}' y='{height - h:.1f}' width='{bar - 4:.1f}' height='{h:.1f}' "
                     f"fill='{color}'><title>{bucket_label(dist.bounds, i)}: {_num(counts[i])}</title></rect>")
        if counts[i]:
            parts.append(f"<text x='{x + bar / 2:.1f}' y='{height - h - 4:.1f}' text-anchor='middle'>"
                         f"{_num(counts[i])}</text>")
        parts.append(f"<text x='{x + bar / 2:.1f}' y='{height + 14}' text-anchor='middle'>"
                     f"{escape(bucket_label(dist.bounds, i))}</text>")
    parts.append(f"<line x1='{pad}' y1='{height}' x2='{width}' y2='{height}' stroke='#ced4da'/></svg>")
    return "".join(parts)


def _hbars(rows: Sequence[tuple[str, Sequence[tuple[float, str, str]]]], title: str) -> str:
    """Horizontal stacked bars: one row per name, segments of ``(value, color, label)``."""
    if not rows:
        return f"<p class='muted'>{escape(title)}: nothing yet.</p>"
    width, label_w, row_h = 520, 140, 22
    top = max(sum(v for v, _, _ in segs) for _, segs in rows) or 1
    height = row_h * len(rows) + 6
    parts = [f"<svg role='img' aria-label='{escape(title)}' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}'><title>{escape(title)}</title>"]
    for r, (name, segs) in enumerate(rows):
        y = r * row_h + 3
        parts.append(f"<text x='0' y='{y + 14}'>{escape(name[:22])}</text>")
        x = float(label_w)
        for value, color, label in segs:
            w = (value / top) * (width - label_w - 50)
            parts.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{row_h - 6}' fill='{color}'>"
                         f"<title>{escape(label)}: {_num(value)}</title></rect>")
            x += w
        parts.append(f"<text x='{x + 4:.1f}' y='{y + 14}'>{_num(sum(v for v, _, _ in segs))}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _tiles(s: Summary) -> str:
    tiles = [
        ("Captures accepted", _num(s.captured)),
        ("New leads (people)", _num(s.new_leads)),
        ("Known people back (merged)", _num(s.merged)),
        (f"Routed within {duration(ROUTING_TARGET_S)}", _pct(s.routed_within_target)),
        ("SLA met (per lead)", _pct(s.compliance)),
        ("Median speed-to-lead", _at_most(s.speed_to_lead.quantile(0.5))),
        ("SLA breaches", _num(sum(s.breaches.values()))),
        ("Breach-risk warnings", _num(s.at_risk)),
    ]
    return "<div class='tiles'>" + "".join(
        f"<div class='tile'><span class='muted'>{escape(k)}</span><b>{escape(v)}</b></div>" for k, v in tiles) + "</div>"


def _routing_note(s: Summary) -> str:
    target = duration(ROUTING_TARGET_S)
    if s.unrouted_known:
        return (f"<p class='muted'>Routed within {target}: of the leads captured in the window, those a rep had "
                f"within {target} ({_num(s.routed_on_time)}) over them and those that had none by then "
                f"({_num(s.routed_late)}: routed later, closed unrouted after waiting longer, or still waiting at "
                f"the window's end). A lead captured less than {target} before the end is in neither.</p>")
    return (f"<p class='muted'>Routed within {target}: unknown from /metrics, which count only the leads that were "
            f"routed, not those still waiting; read <code>lead.events</code> (no <code>--metrics</code>) for it. "
            f"Of the {_num(s.routing.total)} leads routed, {_pct(s.routing.share_within(ROUTING_TARGET_S))} "
            f"had a rep within {target}.</p>")


def _funnel(s: Summary) -> str:
    if not s.funnel:
        return "<p class='muted'>No lifecycle transitions in this window.</p>"
    stages = [st for st in STAGES if any(c.get(st) for c in s.funnel.values())]
    head = "".join(f"<th>{escape(st)}</th>" for st in stages)
    rows = []
    for source, counts in s.funnel.items():
        leads = counts.get("lead", 0)

        def share(stage: str) -> str:
            # MQL's rate is lead → MQL: the MQLs of new leads (a re-engaged cycle's MQL is in the count only).
            part = s.new_mql.get(source, 0) if stage == "mql" else counts.get(stage, 0)
            return f" <span class='muted'>({part / leads:.0%})</span>" if leads and stage != "lead" else ""

        cells = "".join(f"<td>{_num(counts.get(st, 0))}{share(st)}</td>" for st in stages)
        rows.append(f"<tr><td>{escape(source)}</td>{cells}</tr>")
    chart = _hbars([(src, [(c.get("lead", 0), _BLUE, "leads"), (c.get("mql", 0), _GREEN, "MQL")])
                    for src, c in s.funnel.items()], "Leads and MQLs by source")
    return (f"<table><tr><th>source</th>{head}</tr>{''.join(rows)}</table>"
            "<p class='muted'>By the source of each person's first touch. <i>lead</i> counts new people; "
            "<i>reengaged</i> known people who started a new cycle (a new touch after nurture or a "
            "disposition, or a lost deal routed again), never counted as leads again. Percentages are of "
            "the source's new leads; the MQL rate is lead → MQL (MQLs of new leads).</p>" + chart)


def _money(value: float | None, currency: str | None) -> str:
    return "–" if value is None else f"{value:,.2f} {escape(currency or '')}".rstrip()


def _costs(s: Summary) -> str:
    if not s.costs:
        revenue = "".join(f"<tr><td>{escape(src)}</td><td>{_money(v, s.currency)}</td></tr>"
                          for src, v in sorted(s.won_revenue.items()))
        table = f"<table><tr><th>source</th><th>won revenue</th></tr>{revenue}</table>" if revenue else ""
        return ("<p class='muted'>No spend configured (<code>marketing.sources</code> in the config), so no "
                f"cost per lead or ROI.</p>{table}")
    window = "" if s.window_s is None else f"{s.window_s / 86400:.3g} days"
    head = ("<tr><th>source</th><th>monthly spend</th><th>spend in window</th><th>leads</th><th>cost per lead</th>"
            "<th>MQLs</th><th>cost per MQL</th><th>SQLs</th><th>cost per SQL</th><th>won revenue</th><th>ROI</th></tr>")
    rows = "".join(
        f"<tr><td>{escape(r.source)}</td><td>{_money(r.monthly_spend, s.currency)}</td>"
        f"<td>{_money(r.spend, s.currency)}</td><td>{_num(r.leads)}</td><td>{_money(r.per_lead, s.currency)}</td>"
        f"<td>{_num(r.mql)}</td><td>{_money(r.per_mql, s.currency)}</td><td>{_num(r.sql)}</td>"
        f"<td>{_money(r.per_sql, s.currency)}</td><td>{_money(r.won_revenue, s.currency)}</td>"
        f"<td>{_pct(r.roi)}</td></tr>" for r in s.costs)
    note = (f"The monthly spend is prorated to the window ({window}; a month is 30 days). "
            if window else "The window the counts cover is unknown (no worker start time), so no cost is shown. ")
    return (f"<table>{head}{rows}</table><p class='muted'>{note}Leads are new people; MQLs and SQLs count "
            "every cycle. ROI is (won revenue − spend) / spend, by the first touch's source.</p>")


def _load(s: Summary) -> str:
    who = "rep" if s.load_kind == "rep" else "team"
    rows = []
    for row in s.load:
        segs = [(row.contacted, _GREEN, "contacted"), (max(row.assigned - row.contacted, 0), _BLUE, "not yet contacted")]
        rows.append((row.name, segs))
    table = ""
    if any(r.free_slots is not None for r in s.load):
        table = ("<table><tr><th>team</th><th>open leads</th><th>free slots</th><th>utilization</th></tr>" + "".join(
            f"<tr><td>{escape(r.name)}</td><td>{_num(r.open_leads or 0)}</td><td>{_num(r.free_slots or 0)}</td>"
            f"<td>{_pct(r.utilization)}</td></tr>" for r in s.load) + "</table>"
            "<p class='muted'>Free slots: leads the team's available reps can take now (each one's capacity "
            "minus their open leads), as <code>available_capacity</code> in <code>GET /v1/teams/{id}</code>. "
            "Utilization: open leads over the whole roster's capacity.</p>")
    return _hbars(rows, f"Leads assigned per {who}, contacted or not") + table


def _sla(s: Summary) -> str:
    contacts = _hbars([("leads", [(s.sla_met, _GREEN, "SLA met"), (s.sla_missed, _RED, "SLA missed")]),
                       ("first contacts", [(s.contacts_in_sla, _GREEN, "in SLA"), (s.contacts_late, _RED, "late")])],
                      "Leads whose SLA was met or missed; first contacts in SLA vs late")
    contacts += ("<p class='muted'>SLA compliance is per lead: met (first contact by the deadline) over met and "
                 "missed (breached, contacted or not; or contacted late). A breached lead called later counts "
                 "once, as missed.</p>")
    breach_rows = "".join(f"<tr><td>{escape(t)}</td><td>{_num(n)}</td></tr>" for t, n in sorted(s.breaches.items()))
    step_rows = "".join(f"<tr><td>{escape(a)}</td><td>{_num(n)}</td></tr>" for a, n in sorted(s.escalations.items()))
    return (f"{contacts}<div class='grid'><table><tr><th>team</th><th>breaches</th></tr>{breach_rows}</table>"
            f"<table><tr><th>escalation step</th><th>taken</th></tr>{step_rows}</table></div>")


def render_html(s: Summary, generated_at: datetime) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>leadflow report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>leadflow — speed, SLA, funnel and load</h1>
<div class="muted">From {escape(s.origin)} · generated {escape(generated_at.isoformat(timespec="seconds"))}</div>
{_tiles(s)}
<h2>Speed-to-lead (capture → first contact)</h2>
<div class="grid"><div><b>Speed-to-lead</b> (capture → first contact){_bars(s.speed_to_lead, _BLUE, "Speed-to-lead")}</div>
<div><b>Routing</b> (capture → assigned){_bars(s.routing, _GREY, "Capture → assigned (routing)")}{_routing_note(s)}</div>
<div><b>System delay</b> (capture → rep notified){_bars(s.system_delay, _ORANGE, "System delay")}</div>
<div><b>Rep delay</b> (notified → first contact){_bars(s.rep_delay, _GREEN, "Rep delay")}</div></div>
<h2>SLA compliance</h2>
{_sla(s)}
<h2>Funnel by source</h2>
{_funnel(s)}
<h2>Cost and return by source</h2>
{_costs(s)}
<h2>{"Rep" if s.load_kind == "rep" else "Team"} load</h2>
{_load(s)}
</body></html>
"""

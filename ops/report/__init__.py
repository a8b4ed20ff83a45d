"""``leadflow report``: a one-page HTML summary (speed-to-lead, SLA compliance, funnel by source,
rep load) from ``lead.events`` on Kafka or from the workers' ``/metrics``.

    summary = await from_kafka("kafka://127.0.0.1:9092", "leadflow.lead.events", since_s=86400)
    Path("report.html").write_text(render_html(summary, datetime.now(timezone.utc)))
"""
from __future__ import annotations

from ops.report.html import render_html
from ops.report.model import Distribution, LoadRow, Summary, summarize_events
from ops.report.sources import fetch_scrape, from_kafka, read_events, summarize_scrapes

__all__ = ["Distribution", "LoadRow", "Summary", "summarize_events", "summarize_scrapes", "read_events",
           "from_kafka", "fetch_scrape", "render_html", "parse_window", "run_report"]


def parse_window(text: str) -> float:
    """``90s``, ``30m``, ``24h``, ``7d`` (or bare seconds) -> seconds; ``ValueError`` names the input."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    try:
        value = float(raw[:-1]) * units[raw[-1]] if raw and raw[-1] in units else float(raw)
    except ValueError:
        raise ValueError(f"--since {text!r}: expected a duration such as 30m, 24h or 7d") from None
    if not value > 0:
        raise ValueError(f"--since {text!r}: must be positive")
    return value


async def run_report(*, broker: str, topic: str, since_s: float, metrics: list[str], max_events: int) -> Summary:
    """The summary from ``metrics`` (URLs or files) when given, else from ``topic`` on Kafka."""
    if metrics:
        from pathlib import Path

        texts = []
        for where in metrics:
            path = Path(where)
            texts.append(path.read_text(encoding="utf-8") if path.is_file() else await fetch_scrape(where))
        return summarize_scrapes(texts, origin=f"metrics of {', '.join(metrics)} (since each worker started)")
    return await from_kafka(broker, topic, since_s, max_events=max_events)

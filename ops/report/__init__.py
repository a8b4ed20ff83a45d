"""``leadflow report``: a one-page HTML summary (speed-to-lead, SLA compliance, funnel by source,
rep load) from ``lead.events`` on Kafka or from the workers' ``/metrics``.

    summary = await from_kafka("kafka://127.0.0.1:9092", "leadflow.lead.events", since_s=86400)
    Path("report.html").write_text(render_html(summary, datetime.now(timezone.utc)))
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from ops.report.html import render_html
from ops.report.model import CostRow, Distribution, LoadRow, Summary, summarize_events
from ops.report.sources import (
    TopicNotFound,
    fetch_scrape,
    from_kafka,
    lead_events_topics,
    read_events,
    summarize_scrapes,
)
from ops.stack.config import StackConfig

__all__ = ["CostRow", "Distribution", "LoadRow", "Summary", "configured_spend", "TopicNotFound", "summarize_events", "summarize_scrapes",
           "read_events", "lead_events_topics", "from_kafka", "fetch_scrape", "render_html", "parse_window",
           "default_broker", "resolve_broker", "run_report"]

#: The broker ``Settings`` falls back to without ``LEADFLOW_BROKER`` (streams/settings.py).


def parse_window(text: str) -> float:
    """``90s``, ``30m``, ``24h``, ``7d``, ``1d12h`` (or bare seconds) -> seconds: the config's one
    duration parser (``sla.config.parse_duration``); ``ValueError`` names the input."""
    from sla.config import parse_duration

    try:
        value = parse_duration(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: expected a duration such as 30m, 24h, 7d or 1d12h") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"--since {text!r}: must be positive")
    return value


def default_broker(environ: Mapping[str, str] | None = None) -> str:
    """``LEADFLOW_BROKER`` if set, else the local stack's URL as ``leadflow stack`` computes it
    (``LEADFLOW_KAFKA_PORT``, default 9092), so the report finds the stack ``leadflow run`` started."""
    env = os.environ if environ is None else environ
    return env.get("LEADFLOW_BROKER") or StackConfig.from_env(env).kafka_url


def resolve_broker(broker: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The broker to read: ``broker`` as given (``--broker``), or ``default_broker()`` when there is none."""
    return broker or default_broker(environ)


def configured_spend(config_path: Path | None) -> dict[str, tuple[float, str]]:
    """The config's ``{source: (monthly spend, currency)}`` (``marketing.sources``), as the workers
    read it for ``leadflow_source_monthly_spend``; ``{}`` without a config file."""
    if config_path is None:
        return {}
    from streams.config import load_config

    return load_config(config_path).source_spend()


async def run_report(*, broker: str | None, topic: str, since_s: float, metrics: list[str], max_events: int,
                     spend: Mapping[str, tuple[float, str]] | None = None, now_s: float | None = None) -> Summary:
    """The summary from ``metrics`` (URLs or files) when given, else from ``topic`` on Kafka.

    ``spend`` (the config's, for the events; the metrics carry their own) and ``now_s`` (the end
    of the metrics' window, default now) give the report its cost and return figures.
    """
    if metrics:
        texts = []
        for where in metrics:
            path = Path(where)
            texts.append(path.read_text(encoding="utf-8") if path.is_file() else await fetch_scrape(where))
        return summarize_scrapes(texts, origin=f"metrics of {', '.join(metrics)} (since each worker started)",
                                 now_s=time.time() if now_s is None else now_s)
    return await from_kafka(resolve_broker(broker), topic, since_s, max_events=max_events, spend=spend)

"""Read what the report summarizes: ``lead.events`` from Kafka (a bounded window) or metrics scrapes."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from ops.metrics import LATENCY_BUCKETS, SPEED_BUCKETS
from ops.report.model import TAKEN_BACK, Distribution, LoadRow, Summary, cost_rows, net_closes, summarize_events

__all__ = ["TopicNotFound", "bootstrap_servers", "lead_events_topics", "read_events", "from_kafka",
           "summarize_scrapes", "fetch_scrape"]


def bootstrap_servers(broker: str) -> str:
    """Faust's ``kafka://h1:9092;h2:9092`` (or plain ``h1:9092,h2:9092``) as aiokafka wants it."""
    hosts = [h.strip().removeprefix("kafka://") for h in broker.replace(";", ",").split(",") if h.strip()]
    return ",".join(hosts)


class TopicNotFound(LookupError):
    """The events topic is not on the broker; the message names the ``*lead.events`` topics that are."""

    def __init__(self, topic: str, broker: str, candidates: list[str]) -> None:
        self.topic, self.broker, self.candidates = topic, broker, candidates
        if candidates:
            shown = ", ".join(candidates[:_CANDIDATES_SHOWN])
            more = len(candidates) - _CANDIDATES_SHOWN
            hint = f"pass --topic with one that is: {shown}" + (f" (and {more} more)" if more > 0 else "")
        else:
            hint = "no *lead.events topic is there at all: has a worker run against this broker?"
        super().__init__(f"topic {topic} does not exist on {broker}; {hint}")


#: How many existing ``*lead.events`` topics a ``TopicNotFound`` names (newest demo runs first).
_CANDIDATES_SHOWN = 5


class _DropMissingTopicNoise(logging.Filter):
    """aiokafka logs ``Topic %s not found in cluster metadata`` at ERROR on every metadata refresh
    while a subscribed topic is missing (~10 a second): the report says it once, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Topic %s not found in cluster metadata"


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    logger, noise = logging.getLogger("aiokafka.cluster"), _DropMissingTopicNoise()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)


def lead_events_topics(topics: Iterable[str]) -> list[str]:
    """The ``*lead.events`` topics among ``topics``: the demo's runs first, newest first (their prefix
    is ``demo<timestamp>.``), then the others by name. A broker shared with tests or other
    deployments holds many; the few named in the error are the demo's, which a report mostly wants."""
    found = [t for t in topics if t.endswith("lead.events")]
    demos = sorted((t for t in found if t.startswith("demo")), reverse=True)
    return demos + sorted(t for t in found if not t.startswith("demo"))


async def read_events(broker: str, topic: str, since_s: float, *, max_events: int = 1_000_000,
                      timeout_s: float = 60.0, now_s: float | None = None) -> list[dict[str, Any]]:
    """Every record of ``topic`` from ``since_s`` seconds ago up to the end as it was when we
    started (records written meanwhile are left for the next report), at most ``max_events``.

    Raises ``TopicNotFound`` at once (one metadata request) when the topic does not exist.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition  # imported here: only this path needs it

    # No subscription in the constructor: subscribing to a missing topic makes start() wait for
    # it (~15 s, logging an error ~10 times a second) and then fail without saying which exist.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker), enable_auto_commit=False,
                                group_id=None, request_timeout_ms=15_000)
    events: list[dict[str, Any]] = []
    with _quiet_aiokafka():
        try:
            await consumer.start()
            existing = await asyncio.wait_for(consumer.topics(), timeout_s)
            if topic not in existing:
                raise TopicNotFound(topic, bootstrap_servers(broker), lead_events_topics(existing))
            # Subscribed only so the client fetches the topic's metadata (public API); the
            # partitions are then assigned by hand, from explicit offsets.
            consumer.subscribe([topic])
            partitions = await asyncio.wait_for(_partitions(consumer, topic), timeout_s)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.unsubscribe()
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            start_ms = int(((now_s if now_s is not None else time.time()) - since_s) * 1000)
            starts = await consumer.offsets_for_times({tp: start_ms for tp in tps})
            remaining = {}
            for tp in tps:
                found = starts.get(tp)
                begin = found.offset if found is not None else end[tp]
                if begin < end[tp]:
                    consumer.seek(tp, begin)
                    remaining[tp] = end[tp]
            deadline = time.monotonic() + timeout_s
            while remaining and len(events) < max_events and time.monotonic() < deadline:
                batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    for record in records:
                        if record.offset >= remaining.get(tp, -1):
                            continue
                        try:
                            events.append(orjson.loads(record.value))
                        except (orjson.JSONDecodeError, TypeError):
                            continue  # not ours: skip rather than fail the whole report
                        if record.offset + 1 >= remaining[tp]:
                            del remaining[tp]
                            break
        finally:
            # Also when start() failed (broker unreachable): else aiokafka warns "Unclosed AIOKafkaConsumer".
            await consumer.stop()
    return events[:max_events]


async def _partitions(consumer: Any, topic: str) -> set[int]:
    while True:  # the caller bounds the wait; the caller checked that the topic exists
        found = consumer.partitions_for_topic(topic)
        if found:
            return set(found)
        await asyncio.sleep(0.1)


async def from_kafka(broker: str, topic: str, since_s: float, *,
                     spend: Mapping[str, tuple[float, str]] | None = None, **kwargs: Any) -> Summary:
    """The summary of ``topic``'s last ``since_s`` seconds; ``spend`` is the config's source spend."""
    now_s = kwargs.pop("now_s", None)
    now_s = time.time() if now_s is None else now_s
    events = await read_events(broker, topic, since_s, now_s=now_s, **kwargs)
    hours = since_s / 3600
    window = f"{hours:g} h" if hours >= 1 else f"{since_s / 60:g} min"
    return summarize_events(events, origin=f"{topic} on {bootstrap_servers(broker)}, last {window}, "
                                           f"{len(events):,} events", spend=spend, window_s=since_s,
                            until=datetime.fromtimestamp(now_s, timezone.utc))


async def fetch_scrape(url: str, timeout_s: float = 10.0) -> str:
    if not url.rstrip("/").endswith("/metrics"):
        url = url.rstrip("/") + "/metrics"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        async with session.get(url) as r:
            r.raise_for_status()
            return await r.text()


def _distribution(buckets: dict[float, float], bounds: tuple[float, ...]) -> Distribution:
    """Cumulative ``{le: count}`` (summed over workers and labels) as per-bucket counts."""
    dist = Distribution(bounds)
    previous = 0.0
    for i, bound in enumerate((*bounds, float("inf"))):
        cumulative = buckets.get(bound, previous)
        dist.counts[i] = max(cumulative - previous, 0.0)
        previous = cumulative
    return dist


def summarize_scrapes(texts: Iterable[str], origin: str, now_s: float | None = None) -> Summary:
    """A ``Summary`` from one ``/metrics`` exposition per worker (counters since each started).

    The counts cover the time since the earliest worker started (``process_start_time_seconds``)
    up to ``now_s``: the window the configured monthly spend is prorated to. Without ``now_s`` (or
    start times) the window is unknown and no cost is computed. A worker restarted meanwhile lost
    its earlier counts, so costs from metrics are then too high: Grafana (Prometheus keeps the
    history) or ``lead.events`` give the exact figures.

    The routing histogram counts routed leads only: the leads never routed, the share's other part,
    are unknown here (``unrouted_known`` is false), so no share of all leads is given.
    """
    s = Summary(origin=origin, load_kind="team", unrouted_known=False)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    funnel: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    new_mql: dict[str, float] = defaultdict(float)
    taken_back: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    revenue: dict[str, float] = defaultdict(float)
    spend: dict[str, tuple[float, str]] = {}
    starts: list[float] = []
    teams: dict[str, LoadRow] = {}
    breaches: dict[str, float] = defaultdict(float)
    escalations: dict[str, float] = defaultdict(float)

    def team(name: str) -> LoadRow:
        return teams.setdefault(name, LoadRow(name))

    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, float(sample.value)
                if name.endswith("_bucket"):
                    buckets[name.removesuffix("_bucket")][float(labels["le"])] += value
                elif name == "leadflow_leads_contacted_total":
                    if labels.get("within_sla") == "true":
                        s.contacts_in_sla += value
                    else:
                        s.contacts_late += value
                    team(labels.get("team", "unknown")).contacted += value
                elif name == "leadflow_sla_outcomes_total":
                    if labels.get("outcome") == "met":
                        s.sla_met += value
                    elif labels.get("outcome") == "missed":
                        s.sla_missed += value
                elif name == "leadflow_sla_breaches_total":
                    breaches[labels.get("team", "unknown")] += value
                elif name == "leadflow_sla_escalations_total":
                    escalations[labels.get("action", "unknown")] += value
                elif name == "leadflow_sla_at_risk_total":
                    s.at_risk += value
                elif name == "leadflow_leads_captured_total":
                    s.captured += value
                elif name == "leadflow_leads_merged_total":
                    s.merged += value
                elif name == "leadflow_lifecycle_transitions_total":
                    funnel[labels["source"]][labels["to"]] += value
                    if labels["from"] in TAKEN_BACK:
                        taken_back[labels["source"]][labels["from"]] += value
                    if (labels["from"], labels["to"]) == ("lead", "mql"):
                        new_mql[labels["source"]] += value
                elif name == "leadflow_won_revenue_total":
                    revenue[labels["source"]] += value
                elif name == "leadflow_source_monthly_spend":
                    # Every worker reports the configured spend: take it once (max), not summed.
                    earlier = spend.get(labels["source"], (0.0, ""))[0]
                    spend[labels["source"]] = (max(earlier, value), labels.get("currency", ""))
                elif name == "process_start_time_seconds":
                    starts.append(value)
                elif name == "leadflow_leads_assigned_total":
                    team(labels["team"]).assigned += value
                elif name == "leadflow_team_open_leads":
                    row = team(labels["team"])
                    row.open_leads = (row.open_leads or 0) + value
                elif name == "leadflow_team_free_slots":
                    row = team(labels["team"])
                    row.free_slots = (row.free_slots or 0) + value
                elif name == "leadflow_team_utilization_ratio":
                    row = team(labels["team"])  # one worker owns the team and reports it
                    row.utilization = max(row.utilization or 0.0, value)
    s.speed_to_lead = _distribution(buckets["leadflow_speed_to_lead_seconds"], SPEED_BUCKETS)
    s.system_delay = _distribution(buckets["leadflow_speed_to_lead_system_seconds"], LATENCY_BUCKETS)
    s.rep_delay = _distribution(buckets["leadflow_speed_to_lead_rep_seconds"], SPEED_BUCKETS)
    s.routing = _distribution(buckets["leadflow_lead_routing_seconds"], LATENCY_BUCKETS)
    s.breaches, s.escalations = dict(breaches), dict(escalations)
    s.new_leads = sum(stages.get("lead", 0) for stages in funnel.values())
    s.new_mql = {src: n for src, n in new_mql.items() if n}
    s.won_revenue = {src: amount for src, amount in revenue.items() if amount}
    s.spend = {src: amount for src, (amount, _) in spend.items()}
    s.currency = next((currency for _, currency in spend.values() if currency), None)
    s.window_s = now_s - min(starts) if now_s is not None and starts and now_s > min(starts) else None
    net_closes(funnel, taken_back)
    s.costs = cost_rows(funnel, s)
    s.funnel = {src: dict(stages) for src, stages in sorted(funnel.items(), key=lambda kv: -kv[1].get("lead", 0))}
    s.load = sorted(teams.values(), key=lambda r: (-r.assigned, r.name))
    return s

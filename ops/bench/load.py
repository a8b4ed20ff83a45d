"""Feed leads at a chosen rate (HTTP batches or the Kafka feed) and measure one step of load.

A step is open-loop: batches leave on a fixed schedule whatever the system answers, so a
system that falls behind shows it as a growing drain time and latency instead of silently
slowing the generator down. ``rate=None`` is the unthrottled step: every lead is offered at
once (HTTP: a bounded number of requests in flight) and what comes out measures the ceiling.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import orjson

from ops.bench.harness import API_KEY, Deployment, Sampler, Say, Tracker
from ops.bench.results import StepResult
from ops.bench.stats import LatencySummary, is_sustained, rate as per_second
from rules.capture import derive_lead_id

__all__ = ["StepPlan", "batch_schedule", "bench_lead", "lead_id_of", "Disposer", "feed", "run_step"]

#: Most HTTP requests in flight at once; beyond it an open-loop step falls behind (and says so).
_IN_FLIGHT = 32
#: Latencies kept per step for the plot (a deterministic stride over all of them).
_SAMPLE = 3000


def batch_schedule(leads: int, rate: float | None, batch: int) -> list[tuple[float, int, int]]:
    """``(seconds after start, first lead index, count)`` per batch.

    Fixed rate: batches of ``batch`` leads or fewer, so that a batch leaves at least every 50 ms
    (a 25 leads/s step sends single leads 25 times a second rather than one batch per 20 s).
    Unthrottled (``rate=None``): every batch at t=0.
    """
    if leads <= 0:
        return []
    if batch <= 0:
        raise ValueError("batch must be positive")
    size = batch if rate is None else max(1, min(batch, round(rate * 0.05)))
    out = []
    for first in range(0, leads, size):
        count = min(size, leads - first)
        at = 0.0 if rate is None else first / rate
        out.append((at, first, count))
    return out


def bench_lead(index: int, run: str, country: str | None) -> dict[str, object]:
    """A realistic B2B lead: corporate domain (so it takes the account-book hop), title, country."""
    lead: dict[str, object] = {
        "email": f"lead{index}@{run}-co{index % 997}.example",
        "first_name": "Bench", "last_name": f"Lead{index}", "company": f"Co {index % 997}",
        "title": ("VP Sales", "Head of Operations", "Engineer", "CTO")[index % 4], "source": "bench",
    }
    if country is not None:
        lead["country"] = country
    return lead


def lead_id_of(lead: dict[str, object]) -> str:
    return derive_lead_id(email=str(lead["email"]), phone=None, source="bench", external_id=None)


@dataclass(frozen=True, slots=True)
class StepPlan:
    label: str
    feed: str  # "http" | "kafka"
    rate: float | None
    leads: int
    batch: int
    drain_timeout_s: float


class Disposer:
    """Closes each lead once its webhook arrives, as an SDR would, so reps' capacity frees up and
    the team's state stays at its steady size over a long run."""

    def __init__(self, session: aiohttp.ClientSession, urls: Sequence[str], parallel: int = 8) -> None:
        self._session, self._urls = session, itertools.cycle(list(urls))
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks = [asyncio.get_running_loop().create_task(self._work()) for _ in range(parallel)]
        self.status: Counter[str] = Counter()

    def submit(self, lead_id: str, rep_id: str) -> None:
        self._queue.put_nowait(lead_id)

    async def _work(self) -> None:
        while True:
            lead_id = await self._queue.get()
            try:
                async with self._session.post(f"{next(self._urls)}/v1/leads/{lead_id}/disposition",
                                              json={"status": "disqualified", "reason": "bench"}) as response:
                    await response.read()
                    self.status[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.status[type(exc).__name__] += 1
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _feed_http(plan: StepPlan, leads: list[dict[str, object]], ids: list[str], urls: Sequence[str],
                     session: aiohttp.ClientSession, tracker: Tracker, errors: Counter[str]) -> float:
    gate = asyncio.Semaphore(_IN_FLIGHT)
    targets = itertools.cycle(list(urls))
    began = time.monotonic()
    tasks: list[asyncio.Task[None]] = []

    async def post(first: int, count: int, url: str) -> None:
        async with gate:
            now = time.time()
            for lead_id in ids[first:first + count]:
                tracker.sent_at.setdefault(lead_id, now)
            try:
                async with session.post(f"{url}/v1/leads", json={"leads": leads[first:first + count]}) as response:
                    await response.read()
                    if response.status != 202:
                        errors[f"http_{response.status}"] += count
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += count

    for at, first, count in batch_schedule(plan.leads, plan.rate, plan.batch):
        delay = began + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.get_running_loop().create_task(post(first, count, next(targets))))
    await asyncio.gather(*tasks)
    return time.monotonic() - began


async def _feed_kafka(plan: StepPlan, leads: list[dict[str, object]], ids: list[str], bootstrap: str,
                      topic: str, tracker: Tracker, errors: Counter[str]) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        began = time.monotonic()
        futures = []
        for at, first, count in batch_schedule(plan.leads, plan.rate, plan.batch):
            delay = began + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            for index in range(first, first + count):
                tracker.sent_at.setdefault(ids[index], now)
                futures.append(await producer.send(topic, orjson.dumps(leads[index]), key=ids[index].encode()))
        for outcome in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(outcome, BaseException):
                errors[type(outcome).__name__] += 1
        return time.monotonic() - began
    finally:
        await producer.stop()


async def feed(plan: StepPlan, leads: list[dict[str, object]], ids: list[str], deployment: Deployment,
               session: aiohttp.ClientSession, tracker: Tracker, errors: Counter[str]) -> float:
    """Send ``leads`` on ``plan``'s schedule over its feed; the seconds the sending took. Send times go
    to ``tracker``, and every lead not accepted to ``errors`` by cause."""
    if plan.feed == "http":
        urls = [w.url for w in deployment.workers if w.pid is not None]
        return await _feed_http(plan, leads, ids, urls, session, tracker, errors)
    return await _feed_kafka(plan, leads, ids, deployment.stack.kafka_bootstrap, f"{deployment.prefix}leads.inbound",
                             tracker, errors)


async def run_step(plan: StepPlan, deployment: Deployment, tracker: Tracker, session: aiohttp.ClientSession,
                   say: Say, *, first_index: int, teams: int) -> StepResult:
    """Feed ``plan.leads`` leads, wait until each one's webhook arrived (or the drain timeout), measure."""
    from ops.bench.harness import country_of

    run = deployment.app_id
    leads = [bench_lead(i, run, country_of(i, teams)) for i in range(first_index, first_index + plan.leads)]
    ids = [lead_id_of(lead) for lead in leads]
    urls = [w.url for w in deployment.workers if w.pid is not None]
    errors: Counter[str] = Counter()
    sampler = Sampler(lambda: [w.pid for w in deployment.workers if w.pid is not None])
    await sampler.start()
    began_wall = time.time()
    say(f"{plan.label}: feeding {plan.leads:,} leads over {plan.feed} at "
        f"{'max' if plan.rate is None else f'{plan.rate:g}/s'} to {len(urls)} worker(s)…")
    send_s = await feed(plan, leads, ids, deployment, session, tracker, errors)
    sent_end = time.time()
    accepted = plan.leads - sum(errors.values())
    last_report = time.monotonic()
    deadline = time.monotonic() + plan.drain_timeout_s
    while True:
        delivered = sum(1 for lead_id in ids if lead_id in tracker.delivered_at)
        if delivered >= accepted or time.monotonic() > deadline:
            break
        if time.monotonic() - last_report >= 2.0:
            last_report = time.monotonic()
            assigned = sum(1 for lead_id in ids if lead_id in tracker.assigned_at)
            say(f"  … {time.time() - began_wall:5.1f} s: sent {plan.leads - sum(errors.values()):,}, "
                f"assigned {assigned:,}, webhooks {delivered:,}")
        await asyncio.sleep(0.1)
    resources = await sampler.stop()
    delivered_times = [tracker.delivered_at[i] for i in ids if i in tracker.delivered_at]
    last = max(delivered_times, default=time.time())
    elapsed = max(last - began_wall, 1e-6)
    drain = max(0.0, last - sent_end)
    to_assigned = [tracker.assigned_at[i] - tracker.sent_at[i] for i in ids if i in tracker.assigned_at]
    to_webhook = [tracker.delivered_at[i] - tracker.sent_at[i] for i in ids if i in tracker.delivered_at]
    if len(delivered_times) < accepted:
        errors["not_delivered_in_time"] = accepted - len(delivered_times)
    throughput = per_second(len(delivered_times), elapsed)
    stride = max(1, len(to_webhook) // _SAMPLE)
    result = StepResult(
        label=plan.label, feed=plan.feed, workers=len(urls), offered_rate=plan.rate, leads=plan.leads,
        sent=accepted, send_s=send_s, assigned=len(to_assigned), delivered=len(delivered_times),
        elapsed_s=elapsed, drain_s=drain, throughput=throughput,
        sustained=(len(delivered_times) == plan.leads
                   and (plan.rate is None or is_sustained(plan.rate, throughput, drain))),
        capture_to_assigned=LatencySummary.of(to_assigned), capture_to_webhook=LatencySummary.of(to_webhook),
        resources=resources, errors=dict(errors), webhook_sample=[round(x, 4) for x in to_webhook[::stride]],
    )
    _report(result, say)
    return result


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.0f} ms"


def _report(r: StepResult, say: Say) -> None:
    a, w, res = r.capture_to_assigned, r.capture_to_webhook, r.resources
    cpu = "n/a (pip install -e '.[bench]')" if res.cpu_mean_pct is None else (
        f"{res.cpu_mean_pct:.0f}% mean, {res.cpu_max_pct:.0f}% max, rss {res.rss_max_mb:.0f} MB"
        + ("" if res.machine_cpu_mean_pct is None else f"; whole machine {res.machine_cpu_mean_pct:.0f}% busy"))
    say(f"{r.label}: {r.delivered:,}/{r.leads:,} delivered in {r.elapsed_s:.1f} s → {r.throughput:,.1f} leads/s "
        f"({'sustained' if r.sustained else 'NOT sustained'}; drain {r.drain_s:.1f} s)")
    say(f"  capture→assigned p50 {_ms(a.p50_s)} p95 {_ms(a.p95_s)} p99 {_ms(a.p99_s)} · "
        f"capture→webhook p50 {_ms(w.p50_s)} p95 {_ms(w.p95_s)} p99 {_ms(w.p99_s)} max {_ms(w.max_s)}")
    say(f"  worker cpu {cpu}" + (f" · errors {r.errors}" if r.errors else ""))

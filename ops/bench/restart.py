"""``leadflow bench restart``: how fast a worker is back after ``kill -9`` with a big table.

The tables are filled fast by producing their changelog records directly: one realistic lead
(captured, scored, assigned, with its SLA ladder) is built by the pure rules and encoded by the
wire codec once, then copied under ``--leads`` distinct lead ids into
``<app>-lead_state-changelog`` (~3 KB each) and ``<app>-sla_timers-changelog``, partitioned as
the lead agent's own writes are (the producer's default murmur2 of the key). That is exactly
what a worker that had routed those leads would have left in Kafka, minus the hours it took.

Then, with a verifying SDR receiver listening:

1. **cold**: a worker with an empty data dir restores every table from the changelogs
   (a new machine, a lost disk);
2. **kill -9 × N**: the worker is SIGKILLed and started again on the same data dir (RocksDB
   still has the tables; only the tail after its last flushed offset is replayed) and port, so
   with the same static-membership id (``LEADFLOW_INSTANCE_ID``, on by default; recorded in
   the JSON; ``--worker-env LEADFLOW_INSTANCE_ID=none`` measures dynamic membership).

Each start is timed to ``/readyz`` = 200, then to the first *new* lead assigned and its
webhook delivered (the SLA timer index is rebuilt from ``sla_timers`` after recovery, on the
event loop, and a lead cannot be routed while that runs). A few loaded leads are read back
through ``GET /v1/leads/{id}`` to prove the table holds them.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import orjson

from ops.bench.harness import API_KEY, Deployment, Say, Stack, Tracker, bench_config, load_average, start_receiver
from ops.bench.load import bench_lead, lead_id_of

__all__ = ["run_restart", "template_records"]

_RECEIVER_PORT = 8191


def template_records(now: datetime, lead_id: str) -> tuple[bytes, bytes]:
    """The encoded ``LeadState`` of an assigned lead and its ``SlaTimer``, both for ``lead_id``."""
    from rules import lead
    from rules.capture import CapturedLead
    from rules.commands import CaptureLead, LeadAssigned, RouteLead, RoutingDecision
    from streams.codec import encode

    policy = lead.LeadPolicy(default_team="t00")
    captured = lead.apply(None, CaptureLead(lead_id=lead_id, capture_id="bench-cap", captured_at=now, lead=CapturedLead(
        email="restart@bench-restart.example", source="bench", first_name="Bench", last_name="Restart",
        company="Bench Restart", title="VP Sales", country="DE")), now, policy)
    route = next(o.value for o in captured.outgoing if isinstance(o.value, RouteLead))
    decision = RoutingDecision(team_id="t00", strategy="weighted_round_robin", candidates=(), winner="t00r00",
                               reason="bench", decided_at=now)
    assigned = lead.apply(captured.state, LeadAssigned(
        lead_id=lead_id, route_id=route.route_id, team_id="t00", rep_id="t00r00", rep_name="t00r00",
        webhook_url="http://127.0.0.1:9/hooks/t00r00", webhook_secret=None, decision=decision, assigned_at=now),
        now, policy)
    timer = lead.next_timer(assigned.state)
    assert assigned.state is not None and timer is not None
    # Due long after the run: a million timers firing would measure the SLA agent, not a restart.
    timer = replace(timer, due_at=now + timedelta(hours=6))
    return encode(assigned.state), encode(timer)


async def _fill(bootstrap: str, app_id: str, leads: int, say: Say) -> list[str]:
    from aiokafka import AIOKafkaProducer

    now = datetime.now(timezone.utc)
    placeholder = "ld_" + "0" * 24
    state, timer = template_records(now, placeholder)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks="all")
    await producer.start()
    began, sample = time.monotonic(), []
    try:
        pending: list[asyncio.Future[object]] = []
        for index in range(leads):
            lead_id = f"ld_{index:024x}"
            key = lead_id.encode()
            pending.append(await producer.send(f"{app_id}-lead_state-changelog",
                                               state.replace(placeholder.encode(), key), key=key))
            pending.append(await producer.send(f"{app_id}-sla_timers-changelog",
                                               timer.replace(placeholder.encode(), key), key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
            if index % 100_000 == 99_999:
                say(f"  … {index + 1:,} leads written ({(index + 1) / (time.monotonic() - began):,.0f}/s)")
            if index % max(1, leads // 5) == 0:
                sample.append(lead_id)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    took = time.monotonic() - began
    say(f"tables filled: {leads:,} leads ({len(state):,} B lead_state + {len(timer)} B sla_timers each, "
        f"{leads * (len(state) + len(timer)) / 1e9:.2f} GB) in {took:.1f} s")
    return sample


async def _probe(deployment: Deployment, session: aiohttp.ClientSession, tracker: Tracker, index: int,
                 timeout: float = 300.0) -> tuple[float | None, float | None]:
    """Seconds until one new lead is assigned and until its webhook is delivered (None: not in time)."""
    lead = bench_lead(index, deployment.app_id, None)
    lead_id = lead_id_of(lead)
    began = time.monotonic()
    tracker.sent_at[lead_id] = time.time()
    url = deployment.workers[0].url
    while True:
        try:
            async with session.post(f"{url}/v1/leads", json=lead) as response:
                await response.read()
                if response.status == 202:
                    break
        except (aiohttp.ClientError, TimeoutError):
            pass
        if time.monotonic() - began > timeout:
            return None, None
        await asyncio.sleep(0.2)
    while time.monotonic() - began < timeout:
        if lead_id in tracker.delivered_at:
            assigned = tracker.assigned_at.get(lead_id)
            return (None if assigned is None else assigned - tracker.sent_at[lead_id],
                    tracker.delivered_at[lead_id] - tracker.sent_at[lead_id])
        await asyncio.sleep(0.05)
    return None, None


async def _read_back(session: aiohttp.ClientSession, url: str, sample: list[str]) -> str:
    found = 0
    for lead_id in sample:
        async with session.get(f"{url}/v1/leads/{lead_id}") as response:
            await response.read()
            found += response.status == 200
    return f"{found}/{len(sample)} loaded leads read back"


async def run_restart(*, leads: int, kills: int, partitions: int, port: int, out: Path, keep_stack: bool,
                      say: Say, worker_env: dict[str, str] | None = None) -> list[dict[str, object]]:
    from ops.bench.harness import EventReader

    out.mkdir(parents=True, exist_ok=True)
    say(f"load average before: {load_average()}")
    results: list[dict[str, object]] = []
    tracker = Tracker()
    with Stack(say, keep=keep_stack) as stack:
        config, secrets = bench_config(1, 4, 1000, _RECEIVER_PORT)
        deployment = Deployment(stack.config, out, config, partitions=partitions, extra_env=dict(worker_env or {}))
        worker = deployment.add_worker(port)
        receiver = start_receiver(secrets, tracker, _RECEIVER_PORT)
        reader = EventReader(stack.config.kafka_bootstrap, f"{deployment.prefix}lead.events", tracker)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        try:
            await receiver.start()
            say(f"creating the topics: a first worker (app id {deployment.app_id})…")
            deployment.start(worker)
            await deployment.wait_ready(worker)
            deployment.stop_all()
            sample = await _fill(stack.config.kafka_bootstrap, deployment.app_id, leads, say)
            await reader.start()
            async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as session:
                for attempt in range(kills + 1):
                    kind = "cold (empty data dir)" if attempt == 0 else f"after kill -9 #{attempt}"
                    if attempt:
                        await asyncio.sleep(random.uniform(1.0, 4.0))  # a random moment after the probe
                        deployment.kill9(worker)
                    started = time.monotonic()
                    deployment.start(worker)
                    ready = await deployment.wait_ready(worker, timeout=1800.0)
                    assigned, delivered = await _probe(deployment, session, tracker, attempt)
                    total = time.monotonic() - started
                    check = await _read_back(session, worker.url, sample)
                    row = {"start": kind, "leads": leads, "ready_s": round(ready, 2),
                           "first_lead_assigned_s": None if assigned is None else round(assigned, 3),
                           "first_webhook_s": None if delivered is None else round(delivered, 3),
                           "start_to_first_webhook_s": round(total, 2), "read_back": check,
                           "loadavg": load_average()}
                    results.append(row)
                    say(f"{kind}: ready in {ready:.1f} s; a new lead then assigned in "
                        f"{'—' if assigned is None else f'{assigned:.2f} s'}, webhook in "
                        f"{'—' if delivered is None else f'{delivered:.2f} s'} ({total:.1f} s after start); {check}")
        finally:
            deployment.stop_all()  # first: nothing awaited before it can be interrupted
            await reader.stop()
            await receiver.stop()
    path = out / f"restart-{time.strftime('%Y%m%d-%H%M%S')}.json"
    from ops.bench.runner import machine_facts
    from streams.settings import Settings

    # The worker's own setting, as it read it: static membership (LEADFLOW_INSTANCE_ID) is on unless
    # --worker-env LEADFLOW_INSTANCE_ID=none turned it off.
    instance_id = Settings.from_env(deployment.env(worker)).instance_id
    path.write_bytes(orjson.dumps({"leads": leads, "partitions": partitions, "worker_env": worker_env,
                                   "instance_id": instance_id,
                                   "machine": machine_facts(), "runs": results,
                                   "loadavg_after": load_average()}, option=orjson.OPT_INDENT_2))
    say(f"results: {path}")
    return results

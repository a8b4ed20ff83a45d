"""kill -9 under load, then a verifier (after Kafka's exactly-once system test).

Leads are fed over HTTP in batches while the worker is ``kill -9``-ed at random moments and
restarted on the same data dir, at least three times. Then a verifier reads everything that
came out, independently of the worker's own view:

* ``lead.events`` (aiokafka, from the start): every accepted lead assigned, and to exactly one
  (route, rep): a replay may repeat an event, never make a second, different assignment;
* the webhook receiver: every ``lead.assigned`` delivered at least once, verified, and all its
  deliveries for one lead carry one rep and one webhook-id;
* ``GET /v1/teams``, polled throughout: no rep ever above capacity; at the end the open leads
  add up to the assigned leads and nothing waits in the queue;
* a fast SLA on some of the leads: each escalation step (reminder, manager alert) reaches its
  receiver under one webhook-id per (lead, step), never as two different messages.

Figures (leads, kills, recovery after each kill) are printed; docs/RELIABILITY.md has a run.
Sizes are environment-tunable for a longer soak: LEADFLOW_CRASH_LEADS, LEADFLOW_CRASH_KILLS.
"""
from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import datetime
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from tests.integration.harness import Receiver, SECRET, Worker, WorkerSpec, eventually, reps_yaml

LEADS = int(os.environ.get("LEADFLOW_CRASH_LEADS", "1000"))
KILLS = int(os.environ.get("LEADFLOW_CRASH_KILLS", "3"))
REPS = 20
CAPACITY = LEADS // REPS + 20  # room for every lead: "assigned exactly once" is checkable
BATCH = 100
FEED_RATE = float(os.environ.get("LEADFLOW_CRASH_RATE", "12"))  # leads/s offered: about what one worker
# routes end to end here with webhooks and SLAs (three lead commands per lead), so kills land under load
FAST_SLA_EVERY = 10  # every 10th lead has a deadline of seconds: reminders and alerts fire


def _config(receiver: Receiver) -> str:
    reps = reps_yaml(receiver, [f"r{i:02d}" for i in range(REPS)], capacity=CAPACITY)
    receiver.secrets["manager"] = SECRET
    return f"""
routing: {{default_team: sdr}}
sla:
  policies:
    - {{name: fast, sources: [sla-fast], first_contact: 4, steps: [{{kind: remind, after: 0}}, {{kind: alert_manager, after: 3}}]}}
    - {{name: calm, first_contact: 7200, steps: [{{kind: remind, after: 0}}]}}
teams:
  - id: sdr
    manager: {{webhook_url: "{receiver.url}/hooks/manager", webhook_secret: "{SECRET}"}}
    reps:
{reps}
"""


@dataclass
class Run:
    """What the test saw while it ran; printed and checked at the end."""

    accepted: dict[str, int] = field(default_factory=dict)  # lead_id -> lead index
    events: list[dict[str, Any]] = field(default_factory=list)
    event_seen_at: list[float] = field(default_factory=list)
    kills: list[dict[str, float]] = field(default_factory=list)
    team_polls: int = 0
    over_capacity: list[Any] = field(default_factory=list)
    http_retries: int = 0

    def assignments(self) -> dict[str, tuple[str, str]]:
        """Each lead's ``(route id, rep id)`` from its ``lead.assigned`` events, checking that no
        lead was assigned twice: a replay may repeat the event, never change it."""
        seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for e in self.events:
            if e["type"] == "lead.assigned":
                seen[e["lead_id"]].add((e["data"]["route_id"], e["data"]["rep_id"]))
        doubled = {lead: a for lead, a in seen.items() if len(a) != 1}
        assert not doubled, f"leads assigned more than once: {list(doubled.items())[:5]}"
        return {lead: next(iter(a)) for lead, a in seen.items()}


async def _consume_events(spec: WorkerSpec, run: Run, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(f"{spec.app_id}.lead.events", bootstrap_servers=spec.stack.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                metadata_max_age_ms=1000)
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    run.events.append(orjson.loads(record.value))
                    run.event_seen_at.append(now)
    finally:
        await consumer.stop()


async def _feed(api: aiohttp.ClientSession, holder: dict[str, Worker], run: Run, deadline: float) -> None:
    started = time.monotonic()
    for first in range(0, LEADS, BATCH):
        # Paced: the kills land while leads are arriving, not after a burst.
        await asyncio.sleep(max(0.0, started + first / FEED_RATE - time.monotonic()))
        leads = [{"email": f"crash{i}@verify.example", "company": f"Co {i}",
                  "source": "sla-fast" if i % FAST_SLA_EVERY == 0 else "web"}
                 for i in range(first, min(first + BATCH, LEADS))]
        await post_batch(api, lambda attempt: holder["w"].url, leads, first, run, deadline=deadline, pause_s=0.3)


async def post_batch(api: aiohttp.ClientSession, url: Callable[[int], str], leads: list[dict[str, Any]],
                     first: int, run: Run, *, deadline: float, pause_s: float) -> None:
    """POST leads ``first``… as one batch until a worker takes it; ``url(attempt)`` says which.

    A worker that is down (killed) or answers 503 (Kafka busy) gets the same batch again: a
    lead already taken answers "duplicate". Records each lead in ``run.accepted``.
    """
    attempt = 0
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"feeding did not finish in time ({len(run.accepted)} accepted)")
        try:
            async with api.post(f"{url(attempt)}/v1/leads", json={"leads": leads},
                                timeout=aiohttp.ClientTimeout(total=10)) as r:
                if r.status == 202:
                    body = await r.json()
                    break
                assert r.status == 503, (r.status, await r.text())
        except (aiohttp.ClientError, TimeoutError):
            pass
        run.http_retries += 1
        attempt += 1
        await asyncio.sleep(pause_s)
    for item in body["results"]:
        assert item["status"] in ("accepted", "duplicate"), item
        run.accepted[item["lead_id"]] = first + item["index"]


async def _kill_and_restart(spec: WorkerSpec, holder: dict[str, Worker], run: Run, at: list[float],
                            t0: float) -> None:
    for when in at:
        await asyncio.sleep(max(0.0, t0 + when - time.monotonic()))
        old = holder["w"]
        events_before = len(run.events)
        old.kill()
        killed = time.monotonic()
        new = Worker(spec, port=old.port, data_dir=old.data_dir)
        holder["w"] = new
        await new.wait_ready(timeout=120)
        ready = time.monotonic()
        # Routing resumed: the first lead.assigned produced after the restart.
        await eventually(lambda: any(e["type"] == "lead.assigned" and seen > ready - 0.5
                                     for e, seen in zip(run.events[events_before:], run.event_seen_at[events_before:])),
                         timeout=90, interval=0.1, what=f"routing after kill #{len(run.kills) + 1}\n{new.log(80)}")
        resumed = next(seen for e, seen in zip(run.events[events_before:], run.event_seen_at[events_before:])
                       if e["type"] == "lead.assigned" and seen > ready - 0.5)
        run.kills.append({"at_s": round(killed - t0, 1), "ready_s": round(ready - killed, 1),
                          "routing_resumed_s": round(resumed - killed, 1)})


async def _watch_capacity(api: aiohttp.ClientSession, holder: dict[str, Worker], run: Run, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with api.get(f"{holder['w'].url}/v1/teams/sdr", timeout=aiohttp.ClientTimeout(total=3)) as r:
                if r.status == 200:
                    body = await r.json()
                    run.team_polls += 1
                    run.over_capacity += [rep for rep in body["reps"] if rep["open_leads"] > rep["capacity"]]
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.5)


@pytest.mark.timeout(600)
async def test_kill_9_under_load_loses_nothing_and_doubles_nothing(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = _config(receiver)
    run = Run()
    holder = {"w": Worker(spec)}
    stop = asyncio.Event()
    await holder["w"].wait_ready()
    consumer = asyncio.create_task(_consume_events(spec, run, stop))
    watcher = asyncio.create_task(_watch_capacity(api, holder, run, stop))
    try:
        await eventually(lambda: _team_ready(api, holder["w"]), what="the configured reps")
        t0 = time.monotonic()
        feed_span = LEADS / FEED_RATE
        rng = random.Random(os.environ.get("LEADFLOW_CRASH_SEED"))
        # Random moments while leads arrive, at least 12 s apart so each restart completes first.
        slots = [3.0 + i * max(12.0, feed_span / KILLS) for i in range(KILLS)]
        kill_at = [s + rng.uniform(0.0, 6.0) for s in slots]
        feeder = asyncio.create_task(_feed(api, holder, run, deadline=t0 + feed_span + 120))
        await _kill_and_restart(spec, holder, run, kill_at, t0)
        await feeder
        fed_s = time.monotonic() - t0
        assert len(run.accepted) == LEADS

        def assigned_leads() -> set[str]:
            return {e["lead_id"] for e in run.events if e["type"] == "lead.assigned"}

        try:
            await eventually(lambda: len(assigned_leads() & run.accepted.keys()) == LEADS, timeout=150,
                             interval=0.5, what="every accepted lead assigned")
        except AssertionError:
            missing = sorted(run.accepted.keys() - assigned_leads())
            raise AssertionError(await _diagnose(api, holder["w"], missing, run)) from None
        drained_s = time.monotonic() - t0

        # --- lead.events: exactly one assignment per lead (replays may repeat the same one) ---
        assignments = run.assignments()
        per_rep = Counter(rep for _, rep in assignments.values())
        assert max(per_rep.values()) <= CAPACITY, per_rep

        # --- the team's view: never above capacity, and it adds up at the end ---
        assert not run.over_capacity, run.over_capacity[:5]

        async def settled() -> Any:
            async with api.get(f"{holder['w'].url}/v1/teams/sdr") as r:
                body = await r.json() if r.status == 200 else None
            return body if body and body["open_leads"] == LEADS and body["queue_depth"] == 0 else None

        team = await eventually(settled, what="the team's load to add up")
        assert {r["rep_id"]: r["open_leads"] for r in team["reps"] if r["open_leads"]} == dict(per_rep)

        # --- the receiver: each assignment delivered, verified, to one rep under one id ---
        async def all_delivered() -> bool:
            return {d["payload"]["data"]["lead_id"] for d in receiver.deliveries
                    if d["payload"]["type"] == "lead.assigned"} >= run.accepted.keys()

        await eventually(all_delivered, timeout=60, what="every lead.assigned webhook delivered")
        by_lead: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for d in receiver.deliveries:
            if d["payload"]["type"] == "lead.assigned":
                assert d["verified"], d["headers"]
                by_lead[d["payload"]["data"]["lead_id"]].add((d["rep_id"], d["headers"]["webhook-id"]))
        two = {lead: s for lead, s in by_lead.items() if len(s) != 1}
        assert not two, f"an assignment reached two reps or carried two ids: {list(two.items())[:5]}"
        for lead_id, ((rep, _),) in by_lead.items():
            assert rep == assignments[lead_id][1], (lead_id, rep, assignments[lead_id])
        redelivered = sum(1 for d in receiver.deliveries if d["payload"]["type"] == "lead.assigned") - LEADS

        # --- escalations: one message per (lead, step), however often a replay sent it ---
        fast = {lead for lead, i in run.accepted.items() if i % FAST_SLA_EVERY == 0}

        def alerted() -> set[str]:
            return {d["payload"]["data"]["lead_id"] for d in receiver.deliveries if d["rep_id"] == "manager"}

        await eventually(lambda: alerted() >= fast, timeout=60, what="every fast-SLA lead's manager alert")
        await asyncio.sleep(3)  # room for anything that would fire twice
        steps: dict[tuple[str, str], set[str]] = defaultdict(set)
        for d in receiver.deliveries:
            kind = d["payload"]["type"]
            if kind in ("lead.reminder", "lead.escalated"):
                steps[(d["payload"]["data"]["lead_id"], kind)].add(d["headers"]["webhook-id"])
        # Every fast lead's remind step fired. Its webhook goes to the rep holding the lead at that
        # moment: a lead a kill kept unassigned until after its deadline is reminded to nobody.
        remind_at = {e["lead_id"]: datetime.fromisoformat(e["at"]) for e in run.events
                     if e["type"] == "lead.escalated" and e["data"].get("action") == "remind"}
        assert set(remind_at) == fast, fast - set(remind_at)
        first_assigned: dict[str, datetime] = {}
        for e in run.events:
            if e["type"] == "lead.assigned":
                at = datetime.fromisoformat(e["at"])
                first_assigned[e["lead_id"]] = min(at, first_assigned.get(e["lead_id"], at))
        unreminded = fast - {lead for lead, kind in steps if kind == "lead.reminder"}
        held = {lead for lead in unreminded if first_assigned.get(lead, remind_at[lead]) < remind_at[lead]}
        assert not held, f"held by a rep when the remind step fired, yet no reminder: {sorted(held)[:5]}"
        doubled_steps = {k: v for k, v in steps.items() if len(v) != 1}
        assert not doubled_steps, f"escalations sent as two messages: {list(doubled_steps.items())[:5]}"
        escalated = Counter((e["lead_id"], e["cycle"], e["data"]["step"]) for e in run.events
                            if e["type"] == "lead.escalated")
        calm = {lead for lead, _, _ in escalated} - fast
        assert not calm, f"leads with a 2 h deadline escalated: {sorted(calm)[:5]}"

        print(f"\ncrash verifier: {LEADS} leads fed in {fed_s:.1f} s ({run.http_retries} HTTP retries), "
              f"all assigned by {drained_s:.1f} s; {len(run.kills)} kill -9: {run.kills}; "
              f"lead.assigned redelivered {redelivered}x (same id); lead.events replayed "
              f"{sum(1 for e in run.events if e['type'] == 'lead.assigned') - LEADS} assigned / "
              f"{sum(escalated.values()) - len(escalated)} escalated duplicates; "
              f"{run.team_polls} capacity polls, never over")
        assert len(run.kills) == KILLS
    finally:
        stop.set()
        await asyncio.gather(consumer, watcher, return_exceptions=True)
        holder["w"].stop()


async def _team_ready(api: aiohttp.ClientSession, worker: Worker) -> bool:
    async with api.get(f"{worker.url}/v1/teams/sdr") as r:
        return r.status == 200 and len((await r.json())["reps"]) == REPS


async def _diagnose(api: aiohttp.ClientSession, worker: Worker, missing: list[str], run: Run) -> str:
    """What a stall looks like from outside: the stuck leads' states, the team, the worker's log."""
    lines = [f"{len(missing)} accepted lead(s) never assigned; kills: {run.kills}"]
    for lead_id in missing[:5]:
        async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
            body = await r.json(content_type=None)
        lines.append(f"{lead_id}: {r.status} routing={body.get('routing')} "
                     f"timeline={[e['kind'] for e in body.get('timeline', [])]}")
        lines.append(f"  events: {[e['type'] for e in run.events if e['lead_id'] == lead_id]}")
    async with api.get(f"{worker.url}/v1/teams/sdr") as r:
        team = await r.json(content_type=None)
    lines.append(f"team: open={team.get('open_leads')} queue={team.get('queue_depth')}")
    lines.append(worker.log(120))
    return "\n".join(lines)

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
webhook delivered. A few loaded leads are read back through ``GET /v1/leads/{id}`` to prove
the table holds them.

``--profile`` samples every (re)started worker with py-spy from its first moments until its
first new webhook, idle time included (``--idle``: the wall time, not only the CPU), into
``restart-<n>.pyspy`` (collapsed stacks) with a summary beside it; pair it with
``--worker-env LEADFLOW_LOG_LEVEL=info`` for the worker's own timeline. ``--reuse APP_ID``
(with the same ``--out`` and ``--port``) restarts a deployment an earlier run left filled —
the stack kept with ``--keep-stack`` — so that restarts with a million leads can be repeated
without the fill and the ten-minute cold restore: its first start is on the kept data dir.
``--reuse APP_ID --cold`` deletes that data dir first, so the first start is a cold restore
again (of the changelogs the earlier run filled): cold restores can be repeated, A/B, without
the fill. Each row records the restore's rate (changelog records / seconds to ready).
"""
from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import orjson

from ops.bench.harness import (API_KEY, Deployment, Say, Stack, Tracker, Worker, bench_config, load_average,
                               require_free_port, start_receiver)
from ops.bench.load import bench_lead, lead_id_of
from ops.bench.profile import parse_collapsed, pyspy_path, render_summary, stop_pyspy, summarize
from ops.stack.process import start_process

__all__ = ["run_restart", "template_records"]

#: The SDR receiver's default port (``--receiver-port``); another than ``leadflow bench load``'s.
RECEIVER_PORT = 8191


def sample_ids(leads: int) -> list[str]:
    """The loaded leads read back after each start (the same ones ``_fill`` writes)."""
    return [f"ld_{index:024x}" for index in range(0, leads, max(1, leads // 5))]


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


async def _fill(bootstrap: str, app_id: str, leads: int, say: Say) -> None:
    from aiokafka import AIOKafkaProducer

    now = datetime.now(timezone.utc)
    placeholder = "ld_" + "0" * 24
    state, timer = template_records(now, placeholder)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks="all")
    await producer.start()
    began = time.monotonic()
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
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    took = time.monotonic() - began
    say(f"tables filled: {leads:,} leads ({len(state):,} B lead_state + {len(timer)} B sla_timers each, "
        f"{leads * (len(state) + len(timer)) / 1e9:.2f} GB) in {took:.1f} s")


async def _probe(deployment: Deployment, session: aiohttp.ClientSession, tracker: Tracker, index: int, run: str,
                 timeout: float = 300.0) -> tuple[float | None, float | None]:
    """Seconds until one new lead is assigned and until its webhook is delivered (None: not in time)."""
    lead = bench_lead(index, run, None)  # ``run`` keeps it new: a lead seen before is only touched
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


def _kept_config(path: Path) -> tuple[str, dict[str, str]]:
    import yaml

    text = path.read_text()
    teams = yaml.safe_load(text)["teams"]
    return text, {rep["id"]: rep["webhook_secret"] for team in teams for rep in team["reps"]}


class _Spy:
    """py-spy on one worker from its first moments (retried until the interpreter can be read)."""

    def __init__(self, worker: Worker, output: Path) -> None:
        self.worker, self.output = worker, output
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        binary = pyspy_path()
        if binary is None:
            raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
        for _ in range(40):
            pid = self.worker.pid
            if pid is None:
                return
            self.proc = start_process([binary, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
                                       "--nolineno", "--nonblocking", "--idle", "--output", str(self.output)],
                                      log_path=self.output.with_suffix(".log"))
            await asyncio.sleep(0.3)
            if self.proc.poll() is None:
                return  # attached
            self.proc = None  # the interpreter was not up yet

    def stop(self, say: Say) -> None:
        if self.proc is None:
            say(f"profile: py-spy did not attach (see {self.output.with_suffix('.log')})")
            return
        stop_pyspy(self.proc)
        if not self.output.exists():
            say(f"profile: py-spy wrote nothing (see {self.output.with_suffix('.log')})")
            return
        summary = self.output.with_suffix(".summary.txt")
        summary.write_text(render_summary(summarize(parse_collapsed(self.output.read_text()))))
        say(f"profile: {self.output} (collapsed stacks, idle included) and {summary}")


async def run_restart(*, leads: int, kills: int, partitions: int, port: int, out: Path, keep_stack: bool,
                      say: Say, worker_env: dict[str, str] | None = None, profile: bool = False,
                      reuse: str | None = None, cold: bool = False,
                      receiver_port: int = RECEIVER_PORT) -> list[dict[str, object]]:
    from ops.bench.harness import EventReader

    if cold and reuse is None:
        raise ValueError("--cold restores a deployment kept by an earlier run: give --reuse APP_ID")
    require_free_port(port, "--port")  # one line now, not a worker that never gets ready
    require_free_port(receiver_port, "--receiver-port")
    out.mkdir(parents=True, exist_ok=True)
    from ops.bench.runner import machine_facts

    machine = machine_facts()  # the commit and the load before the run, as the load bench records them
    say(f"load average before: {machine['loadavg_before']}")
    results: list[dict[str, object]] = []
    tracker = Tracker()
    with Stack(say, keep=keep_stack) as stack:
        config, secrets = bench_config(1, 4, 1000, receiver_port)
        if reuse is not None and (out / "config.yaml").exists():
            config, secrets = _kept_config(out / "config.yaml")  # the reps' webhook secrets as stored
        deployment = Deployment(stack.config, out, config, partitions=partitions, extra_env=dict(worker_env or {}))
        if reuse is not None:
            deployment.app_id = reuse
        worker = deployment.add_worker(port)
        if reuse is not None and not worker.data_dir.is_dir():
            raise RuntimeError(f"--reuse {reuse}: no data dir {worker.data_dir} (same --out and --port as the run "
                               "that filled it?)")
        if reuse is not None and cold:
            shutil.rmtree(worker.data_dir)  # a cold restore again, of the changelogs already filled
            say(f"--cold: deleted {worker.data_dir}")
        cold_start = reuse is None or cold
        receiver = start_receiver(secrets, tracker, receiver_port)
        reader = EventReader(stack.config.kafka_bootstrap, f"{deployment.prefix}lead.events", tracker)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        sample = sample_ids(leads)
        # The probe leads' e-mails: a reused deployment has seen the earlier runs' probes already.
        probe_run = deployment.app_id if reuse is None else f"{deployment.app_id}-{time.strftime('%H%M%S')}"
        try:
            await receiver.start()
            if reuse is None:
                say(f"creating the topics: a first worker (app id {deployment.app_id})…")
                deployment.start(worker)
                await deployment.wait_ready(worker)
                deployment.stop_all()
                await _fill(stack.config.kafka_bootstrap, deployment.app_id, leads, say)
            await reader.start()
            async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as session:
                for attempt in range(kills + 1):
                    if attempt:
                        kind = f"after kill -9 #{attempt}"
                    else:
                        kind = "cold (empty data dir)" if cold_start else "start on the kept data dir"
                    if attempt:
                        await asyncio.sleep(random.uniform(1.0, 4.0))  # a random moment after the probe
                        deployment.kill9(worker)
                    started = time.monotonic()
                    deployment.start(worker)
                    spy = _Spy(worker, out / f"restart-{attempt}.pyspy") if profile else None
                    if spy is not None:
                        await spy.start()
                    try:
                        ready = await deployment.wait_ready(worker, timeout=1800.0)
                        assigned, delivered = await _probe(deployment, session, tracker, attempt, probe_run)
                        total = time.monotonic() - started
                    finally:
                        if spy is not None:
                            spy.stop(say)
                    check = await _read_back(session, worker.url, sample)
                    row = {"start": kind, "leads": leads, "ready_s": round(ready, 2),
                           "first_lead_assigned_s": None if assigned is None else round(assigned, 3),
                           "first_webhook_s": None if delivered is None else round(delivered, 3),
                           "start_to_first_webhook_s": round(total, 2), "read_back": check,
                           "loadavg": load_average()}
                    if not attempt and cold_start:
                        # lead_state + sla_timers: two changelog records per lead, all replayed to be ready
                        row["restore_records_per_s"] = round(2 * leads / ready)
                    results.append(row)
                    say(f"{kind}: ready in {ready:.1f} s; a new lead then assigned in "
                        f"{'—' if assigned is None else f'{assigned:.2f} s'}, webhook in "
                        f"{'—' if delivered is None else f'{delivered:.2f} s'} ({total:.1f} s after start); {check}"
                        + (f"; restored {row['restore_records_per_s']:,} records/s" if "restore_records_per_s" in row
                           else ""))
        finally:
            deployment.stop_all()  # first: nothing awaited before it can be interrupted
            await reader.stop()
            await receiver.stop()
    path = out / f"restart-{time.strftime('%Y%m%d-%H%M%S')}.json"
    from streams.settings import Settings

    # The worker's own setting, as it read it: static membership (LEADFLOW_INSTANCE_ID) is on unless
    # --worker-env LEADFLOW_INSTANCE_ID=none turned it off.
    instance_id = Settings.from_env(deployment.env(worker)).instance_id
    path.write_bytes(orjson.dumps({"leads": leads, "partitions": partitions, "worker_env": worker_env,
                                   "instance_id": instance_id, "app_id": deployment.app_id, "reused": reuse is not None,
                                   "machine": machine, "runs": results,
                                   "loadavg_after": load_average()}, option=orjson.OPT_INDENT_2))
    say(f"results: {path}")
    return results

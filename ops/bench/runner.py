"""``leadflow bench load``: the passthrough baseline, then each worker count's rate steps, then the
goals, the JSON and the plot. Every process started here is stopped in ``finally`` blocks, so
Ctrl-C (which cancels the run) leaves nothing behind."""
from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import orjson

from ops.bench.harness import (API_KEY, REPO, Deployment, EventReader, Say, Stack, Tracker, bench_config,
                               load_average, require_free_port, start_receiver)
from ops.bench.load import Disposer, StepPlan, run_step
from ops.bench.passthrough import run_passthrough
from ops.bench.plot import render_svg
from ops.bench.profile import parse_collapsed, render_summary, start_pyspy, stop_pyspy, summarize
from ops.bench.results import PassthroughResult, Resources, RunResult, StepResult
from ops.bench.stats import is_held, max_sustained, ratio, records_per_lead

__all__ = ["LoadOptions", "Rig", "open_rig", "run_load", "machine_facts", "topic_records"]

#: Steps of the ``paced`` search: each halves the bracket [0, the latest max step's throughput].
PACED_PROBES = 5
#: The bracket's top when no max step came before.
PACED_CEILING = 200.0


@dataclass(frozen=True, slots=True)
class LoadOptions:
    rates: list[float | str]
    feeds: list[str]
    workers: list[int]
    duration_s: float
    max_leads: int
    batch: int
    teams: int
    reps: int
    capacity: int
    partitions: int
    passthrough_records: int
    profile: bool
    dispose: bool
    drain_timeout_s: float
    port: int
    receiver_port: int
    out: Path
    keep_stack: bool
    worker_env: dict[str, str]


def machine_facts() -> dict[str, object]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=False, timeout=5).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": commit, "loadavg_before": load_average()}


async def topic_records(bootstrap: str, app_id: str) -> dict[str, int]:
    """Records in every topic of a deployment (its public topics and its changelogs)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        counts: dict[str, int] = {}
        await consumer._client.force_metadata_update()  # the topics' partitions, not only their names
        for topic in sorted(t for t in await consumer.topics() if t.startswith(app_id)):
            partitions = consumer._client.cluster.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                continue
            end, begin = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
            if (n := sum(end[tp] - begin[tp] for tp in tps)) > 0:
                counts[topic] = n
        return counts
    finally:
        await consumer.stop()


@dataclass
class Rig:
    """A running deployment and everything around it: the receiver, the ``lead.events`` reader, the
    HTTP session and (with dispose) the SDR who closes each lead once its webhook arrives."""

    deployment: Deployment
    tracker: Tracker
    session: aiohttp.ClientSession
    disposer: Disposer | None
    workdir: Path
    next_index: int = 0


@contextlib.asynccontextmanager
async def open_rig(stack: Stack, workdir: Path, *, workers: int, teams: int, reps: int, capacity: int,
                   dispose: bool, partitions: int, port: int, receiver_port: int, worker_env: dict[str, str],
                   warm_feed: str, batch: int, drain_timeout_s: float, say: Say) -> AsyncIterator[Rig]:
    """Start ``workers`` workers of a fresh deployment, wait until they are ready, warm them up (40
    leads, not recorded); on the way out stop everything it started, workers first."""
    capacity = capacity if dispose else 1000  # the config's maximum
    for index in range(workers):
        require_free_port(port + index, "--port", f" (the workers take {port}…{port + workers - 1})" if workers > 1 else "")
    workdir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker()
    receiver_config, secrets = bench_config(teams, reps, capacity, receiver_port)
    deployment = Deployment(stack.config, workdir, receiver_config, partitions=partitions, extra_env=dict(worker_env))
    receiver = start_receiver(secrets, tracker, receiver_port)
    reader = EventReader(stack.config.kafka_bootstrap, f"{deployment.prefix}lead.events", tracker)
    disposer: Disposer | None = None
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        await receiver.start()
        for index in range(workers):
            deployment.start(deployment.add_worker(port + index))
        say(f"{workers} worker(s) starting (app id {deployment.app_id}, logs in {workdir})…")
        for worker in deployment.workers:
            took = await deployment.wait_ready(worker)
            say(f"  worker :{worker.port} pid {worker.pid} ready in {took:.1f} s")
        await reader.start()
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as session:
            if dispose:
                disposer = Disposer(session, [w.url for w in deployment.workers])
                tracker.on_first_delivery = disposer.submit
            rig = Rig(deployment, tracker, session, disposer, workdir)
            # Warm-up, not recorded: first-request costs (connections, caches, topic metadata).
            warm = StepPlan(f"w{workers} warm-up", warm_feed, 20.0, 40, batch, drain_timeout_s)
            warmed = await run_step(warm, deployment, tracker, session, lambda line: None, first_index=0,
                                    teams=teams)
            say(f"warm-up: {warmed.delivered}/{warm.leads} leads delivered in {warmed.elapsed_s:.1f} s (not recorded)")
            rig.next_index = warm.leads
            yield rig
    finally:
        # Workers first, synchronously: a second Ctrl-C during the awaits below cannot skip it.
        deployment.stop_all()
        say(f"{workers} worker(s) stopped")
        if disposer is not None:
            await disposer.stop()
        await reader.stop()
        await receiver.stop()


async def _deployment_steps(options: LoadOptions, stack: Stack, workers: int, say: Say,
                            steps: list[StepResult], records: dict[str, dict[str, int]],
                            idle: dict[str, Resources]) -> None:
    async with open_rig(stack, options.out / f"w{workers}", workers=workers, teams=options.teams,
                        reps=options.reps, capacity=options.capacity, dispose=options.dispose,
                        partitions=options.partitions, port=options.port, receiver_port=options.receiver_port,
                        worker_env=options.worker_env, warm_feed=options.feeds[0], batch=options.batch,
                        drain_timeout_s=options.drain_timeout_s, say=say) as rig:
        deployment, tracker, session, disposer, workdir = (rig.deployment, rig.tracker, rig.session, rig.disposer,
                                                           rig.workdir)
        next_index = rig.next_index
        idle[f"w{workers}"] = await _idle_cpu(deployment, say)
        last_max: dict[str, float] = {}
        last_paced: dict[str, float] = {}

        async def step(feed: str, offered: float | None, leads: int, label: str) -> StepResult:
            nonlocal next_index
            plan = StepPlan(label, feed, offered, leads, options.batch, options.drain_timeout_s)
            spy = None
            if options.profile and offered is None and deployment.workers[0].pid is not None:
                spy_out = workdir / f"profile-{feed}-max.txt"
                spy = start_pyspy(deployment.workers[0].pid, spy_out)
            try:
                result = await run_step(plan, deployment, tracker, session, say, first_index=next_index,
                                        teams=options.teams)
            finally:
                if spy is not None:
                    stop_pyspy(spy)
            if spy is not None:
                _write_profile(spy_out, say)
            next_index += leads
            steps.append(result)
            if disposer is not None:
                await disposer.drain(30.0)
                await _wait_quiet(deployment, session, disposer.status.get("202", 0), say)
            await asyncio.sleep(2.0)  # let the last commits settle
            return result

        def paced(rate: float) -> tuple[float, int]:
            return rate, max(1, int(rate * options.duration_s))

        for feed in options.feeds:
            for rate in options.rates:
                prefix = f"w{workers} {feed}"
                if rate == "max":
                    result = await step(feed, None, options.max_leads, f"{prefix} max")
                    last_max[feed] = result.throughput
                elif rate == "paced":
                    # Bisect for the highest rate held at a steady pace (PACED_PROBES steps).
                    lo, hi = 0.0, last_max.get(feed, PACED_CEILING)
                    for _ in range(PACED_PROBES):
                        probe = round((lo + hi) / 2, 1)
                        result = await step(feed, *paced(probe), f"{prefix} probe={probe:g}/s")
                        held = is_held(probe, result.throughput, result.drain_s) and \
                            result.delivered == result.leads
                        say(f"  {'held' if held else 'NOT held'} at {probe:g}/s")
                        lo, hi = (probe, hi) if held else (lo, probe)
                    last_paced[feed] = lo
                    say(f"{prefix} paced max: {lo:g} leads/s held (the next probe up was not)")
                elif rate in ("half", "half-paced"):
                    base = last_max[feed] if rate == "half" else last_paced[feed]
                    offered = round(base / 2, 1)
                    await step(feed, *paced(offered), f"{prefix} {rate}={offered:g}/s")
                else:
                    assert isinstance(rate, float)
                    await step(feed, *paced(rate), f"{prefix} {rate:g}/s")
        if disposer is not None:
            say(f"dispositions answered: {dict(disposer.status)}")
        records[f"w{workers}"] = counts = await topic_records(stack.config.kafka_bootstrap, deployment.app_id)
        counts["(leads fed)"] = next_index
        total = sum(n for name, n in counts.items() if not name.startswith("("))
        top = ", ".join(f"{name.removeprefix(deployment.app_id)} {n / max(next_index, 1):.1f}"
                        for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:6]
                        if not name.startswith("("))
        say(f"kafka records: {total:,} for {next_index:,} leads = {total / max(next_index, 1):.1f} per lead "
            f"(per lead: {top}, …)")


async def _wait_quiet(deployment: Deployment, session: aiohttp.ClientSession, dispositions: int, say: Say,
                      timeout: float = 180.0) -> None:
    """Until the workers have applied every disposition accepted so far (lead agent) and the team agent
    every release they caused: the next step starts on an idle pipeline, not on the last one's tail."""
    from ops.bench.hotspot import processed_counts

    began = time.monotonic()
    lead = team = 0.0
    while time.monotonic() - began < timeout:
        lead = team = 0.0
        for worker in deployment.workers:
            if worker.pid is None:
                continue
            try:
                async with session.get(f"{worker.url}/metrics") as response:
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError):
                continue
            lead += processed_counts(text, "lead").get("DispositionLead", 0.0)
            team += processed_counts(text, "team").get("ReleaseLead", 0.0)
        if lead >= dispositions:  # releases follow within one more hop
            if time.monotonic() - began > 3:
                say(f"  (the last step's dispositions took {time.monotonic() - began:.0f} s more to apply)")
            return
        await asyncio.sleep(0.5)
    say(f"  (not quiet after {timeout:.0f} s: {lead:.0f}/{dispositions} dispositions, {team:.0f} releases applied)")


async def _idle_cpu(deployment: Deployment, say: Say, seconds: float = 8.0, settle_s: float = 2.0) -> Resources:
    """The workers' CPU and memory with no leads coming in: timers, gauges and consumer polling cost
    this much whatever the load (subtract it to get the CPU per lead). Said, and returned for the JSON."""
    from ops.bench.harness import Sampler

    await asyncio.sleep(settle_s)
    sampler = Sampler(lambda: [w.pid for w in deployment.workers if w.pid is not None])
    await sampler.start()
    await asyncio.sleep(seconds)
    idle = await sampler.stop()
    if idle.cpu_mean_pct is not None:
        say(f"idle: worker cpu {idle.cpu_mean_pct:.0f}% mean with no load ({seconds:.0f} s), "
            f"rss {idle.rss_max_mb:.0f} MB")
    return idle


def _write_profile(collapsed: Path, say: Say) -> None:
    try:
        text = collapsed.read_text()
    except FileNotFoundError:
        say(f"profile: py-spy wrote nothing (see {collapsed.with_suffix('.log')})")
        return
    summary = render_summary(summarize(parse_collapsed(text)))
    target = collapsed.with_name(collapsed.stem + "-summary.txt")
    target.write_text(summary)
    say(f"profile: {collapsed} (collapsed stacks) and {target}:")
    for line in summary.splitlines()[:14]:
        say(f"  {line}")


async def run_load(options: LoadOptions, say: Say) -> RunResult:
    options.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_facts()
    steps: list[StepResult] = []
    records: dict[str, dict[str, int]] = {}
    idle: dict[str, Resources] = {}
    passthrough: PassthroughResult | None = None
    # Every port the run will take, before anything starts: a busy one found at the second worker
    # count would end a run that already measured the first, and write nothing.
    most = max(options.workers)
    for index in range(most):
        require_free_port(options.port + index, "--port",
                          f" (the workers take {options.port}…{options.port + most - 1})" if most > 1 else "")
    require_free_port(options.receiver_port, "--receiver-port")
    with Stack(say, keep=options.keep_stack) as stack:
        if options.passthrough_records:
            passthrough = await run_passthrough(stack.config.kafka_bootstrap, options.passthrough_records,
                                                options.partitions, say)
        for workers in options.workers:
            await _deployment_steps(options, stack, workers, say, steps, records, idle)
    machine["loadavg_after"] = load_average()
    best = max_sustained((s.offered_rate, s.throughput, s.sustained) for s in steps)
    result = RunResult(
        started_at=started, machine=machine, settings=_settings(options), passthrough=passthrough, steps=steps,
        max_sustained=best, ratio_to_passthrough=ratio(best, passthrough.throughput) if passthrough else None,
        kafka_records=records, idle=idle,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = options.out / f"bench-{stamp}.json"
    svg_path = options.out / f"bench-{stamp}.svg"
    document = result.to_dict()
    json_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    svg_path.write_text(render_svg(document))
    _goals(result, say)
    say(f"results: {json_path}\nplot:    {svg_path}")
    return result


def _settings(options: LoadOptions) -> dict[str, object]:
    return {"rates": options.rates, "feeds": options.feeds, "workers": options.workers,
            "duration_s": options.duration_s, "max_leads": options.max_leads, "batch": options.batch,
            "teams": options.teams, "reps": options.reps, "capacity": options.capacity,
            "partitions": options.partitions, "dispose": options.dispose,
            "passthrough_records": options.passthrough_records, "worker_env": options.worker_env,
            "argv": sys.argv[1:]}


def _goals(result: RunResult, say: Say) -> None:
    say("")
    say("goals (measured in this run):")
    if result.passthrough is not None:
        pt = result.passthrough.throughput
        for workers in sorted({s.workers for s in result.steps}):
            best = max_sustained((s.offered_rate, s.throughput, s.sustained) for s in result.steps
                                 if s.workers == workers)
            share = ratio(best, pt)
            verdict = "n/a" if share is None else ("MET" if share >= 0.25 else "NOT met")
            say(f"  throughput, {workers} worker(s): {best:,.1f} leads/s = {share or 0:.3f}× the passthrough's "
                f"{pt:,.0f} records/s (goal ≥ 0.25×: {verdict})")
            per_lead = records_per_lead(result.kafka_records.get(f"w{workers}", {}))
            if per_lead and share is not None:
                # Context for the ratio: a lead is many records; the passthrough moves one per record.
                say(f"    per Kafka record moved: {best:,.1f} × {per_lead:.1f} records per lead = "
                    f"{best * per_lead:,.0f} records/s = {share * per_lead:.2f}× the passthrough")
    for step in result.steps:
        for marker, what in (("half=", "half the max"), ("half-paced=", "half the paced max")):
            if marker in step.label:
                p99 = step.capture_to_webhook.p99_s
                verdict = "n/a" if p99 is None else ("MET" if p99 <= 0.25 else "NOT met")
                say(f"  p99 capture→webhook at {what} ({step.label}): "
                    f"{'—' if p99 is None else f'{p99 * 1000:,.0f} ms'} (goal ≤ 250 ms: {verdict})")
    say(f"  load average before {result.machine.get('loadavg_before')}, after {result.machine.get('loadavg_after')}")

"""Routing throughput on the real stack: N leads in, how fast are they all assigned?

    python -m ops.bench.routing --leads 5000 --batch 500

Starts the local stack if needed and one worker with a bench team of 20 reps (no webhooks, so
this measures capture → intake → lead → team → lead), posts the leads as batches, and reports
(a lead counts as routed once it is assigned or waiting in the team's queue):
HTTP accept rate, time until every lead is assigned, end-to-end leads/s, and the routing latency
percentiles from the worker's own histogram (capture → assigned).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from ops.metrics import LATENCY_BUCKETS
from ops.stack import StackConfig, stack_up
from ops.stack.process import start_process, stop_process, tail

__all__ = ["main"]

_KEY = "bench-key-not-a-secret"


def _config(reps: int, capacity: int) -> str:
    lines = ["routing: {default_team: bench}", "teams:", "  - id: bench", "    reps:"]
    lines += [f"      - {{id: r{i:02d}, capacity: {capacity}}}" for i in range(reps)]
    return "\n".join(lines) + "\n"


async def _wait_ready(session: aiohttp.ClientSession, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise SystemExit("the worker did not become ready")


def _percentile(buckets: list[tuple[float, float]], q: float) -> float:
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return float("inf")


async def _histogram(session: aiohttp.ClientSession, url: str) -> list[tuple[float, float]]:
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    out = []
    for line in text.splitlines():
        if line.startswith("leadflow_lead_routing_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            out.append((float(bound), float(line.rsplit(" ", 1)[1])))
    return out


async def run(leads: int, batch: int, reps: int, capacity: int, port: int) -> None:
    stack = StackConfig.from_env()
    stack_up(stack, progress=lambda line: print(f"  {line}"))
    tmp = Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    (tmp / "config.yaml").write_text(_config(reps, capacity))
    run_id = "bench" + uuid.uuid4().hex[:8]
    env = {**os.environ, "LEADFLOW_BROKER": stack.kafka_url, "LEADFLOW_REDIS_URL": stack.redis_url,
           "LEADFLOW_CONFIG": str(tmp / "config.yaml"), "LEADFLOW_WEB_PORT": str(port),
           "LEADFLOW_DATA_DIR": str(tmp / "data"), "LEADFLOW_API_KEYS": _KEY, "LEADFLOW_APP_ID": run_id,
           "LEADFLOW_TOPIC_PREFIX": f"{run_id}.", "LEADFLOW_LOG_LEVEL": "warning", "LEADFLOW_SHUTDOWN_DELAY": "0"}
    worker = start_process([sys.executable, "-m", "leadflow", "worker"], log_path=tmp / "worker.log", env=env)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {_KEY}"}
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as session:
            await _wait_ready(session, url)
            await asyncio.sleep(2)  # the config's reps reach the team agent
            began = time.monotonic()

            async def post(first: int) -> None:
                body = {"leads": [{"email": f"bench{i}@{run_id}.example", "company": "Bench"}
                                  for i in range(first, min(first + batch, leads))]}
                async with session.post(f"{url}/v1/leads", json=body) as r:
                    assert r.status == 202, await r.text()

            await asyncio.gather(*(post(first) for first in range(0, leads, batch)))
            accepted = time.monotonic() - began
            print(f"  {leads} leads accepted over HTTP in {accepted:.2f} s ({leads / accepted:,.0f}/s)")
            last = -1
            while True:
                async with session.get(f"{url}/v1/teams/bench") as r:
                    team = await r.json() if r.status == 200 else {}
                # Routed = assigned + waiting in the queue (reps fill up at their capacity).
                routed = team.get("routed_total", 0) + team.get("queue_depth", 0)
                if routed >= leads:
                    break
                if routed // 500 != last // 500:
                    print(f"  … {routed}/{leads} assigned after {time.monotonic() - began:.1f} s")
                last = routed
                await asyncio.sleep(0.2)
            total = time.monotonic() - began
            buckets = await _histogram(session, url)
            print(f"  all {leads} routed {total:.2f} s after the first post: {leads / total:,.0f} leads/s end to end")
            print("  capture → assigned (worker histogram, bucket upper bounds): "
                  + ", ".join(f"p{int(q * 100)} ≤ {_percentile(buckets, q):g} s" for q in (0.5, 0.95, 0.99)))
            print(f"  buckets: {', '.join(str(b) for b in LATENCY_BUCKETS)}")
    finally:
        stop_process(worker, timeout=20)
        print(f"  worker log: {tmp / 'worker.log'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.routing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--capacity", type=int, default=25, help="open leads per rep (beyond: the queue)")
    parser.add_argument("--port", type=int, default=6099)
    args = parser.parse_args(argv)
    asyncio.run(run(args.leads, args.batch, args.reps, args.capacity, args.port))


if __name__ == "__main__":
    main()

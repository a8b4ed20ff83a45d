"""What a worker shows of its Redis's health, on the real stack (review s18-redis F2, F5): a full
Redis (it answers PING, refuses writes) turns ``leadflow_redis_degraded_mode`` to 1 within a
refresh, and a worker started without a reachable Redis says so in its log, naming the address."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.integration.harness import SECRET, Worker, WorkerSpec, eventually, free_port, ready_worker

#: One team and one rep; its webhook is never called (no lead is captured here).
CONFIG = ('routing: {default_team: sdr}\nteams:\n  - id: sdr\n    reps:\n'
          '      - {id: ana, capacity: 5, webhook_url: "http://127.0.0.1:9/hook", webhook_secret: "%s"}\n' % SECRET)


@dataclass
class RedisAtSpec(WorkerSpec):
    """A ``WorkerSpec`` whose worker uses another Redis URL than the stack's."""

    redis_url: str = ""

    def env(self, port: int, data_dir: Any) -> dict[str, str]:
        return {**super().env(port, data_dir), "LEADFLOW_REDIS_URL": self.redis_url}


async def _gauge(worker: Worker) -> float | None:
    async with aiohttp.ClientSession() as s, s.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    found = re.search(r"^leadflow_redis_degraded_mode (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


@pytest.mark.timeout(120)
async def test_a_full_redis_turns_the_degraded_gauge_on_and_off(spec: WorkerSpec) -> None:
    spec.config_yaml = CONFIG
    redis = aioredis.Redis(port=spec.stack.redis_port)
    before = await redis.config_get("maxmemory")
    policy = await redis.config_get("maxmemory-policy")
    try:
        async with ready_worker(spec) as worker:
            async def healthy() -> bool:
                return await _gauge(worker) == 0.0
            await eventually(healthy, timeout=15, what="the gauge at 0 with Redis healthy")
            await redis.config_set("maxmemory-policy", "noeviction")
            await redis.config_set("maxmemory", "1")  # full: writes refused (OOM), PING still answers
            assert await redis.ping()

            async def degraded() -> bool:
                return await _gauge(worker) == 1.0
            await eventually(degraded, timeout=8, interval=0.5, what="the gauge at 1 within one refresh (5 s)")
            await redis.config_set("maxmemory", before["maxmemory"])
            await eventually(healthy, timeout=30, interval=0.5, what="the gauge back at 0 once Redis takes writes")
            assert "OOM (maxmemory reached)" in worker.log(400)
    finally:
        await redis.config_set("maxmemory", before["maxmemory"])
        await redis.config_set("maxmemory-policy", policy["maxmemory-policy"])
        await redis.aclose()


@pytest.mark.timeout(120)
async def test_a_worker_without_redis_says_so_at_start_naming_where(stack: Any, tmp_path: Any) -> None:
    port = free_port()  # nothing listens there
    spec = RedisAtSpec(stack=stack, tmp=tmp_path, config_yaml=CONFIG,
                       redis_url=f"redis://:not-this-pass@127.0.0.1:{port}/0")
    async with ready_worker(spec) as worker:
        line = f"redis at 127.0.0.1:{port} failed for probe: connection failed"

        async def said() -> bool:
            return line in worker.log(400)
        await eventually(said, timeout=10, what="one line naming Redis's address")
        assert await _gauge(worker) == 1.0
        assert "not-this-pass" not in worker.log(2000)

"""A rollout step (a worker joining) keeps the workers that were ready in rotation.

Before (deploy audit, session 16): every worker's ``/readyz`` answered 503 "rebalancing" during
every rebalance, so behind a readiness-gated Service no worker was in rotation for 5-6 s per
Deployment-style rollout step, although captures worked throughout.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import Worker, WorkerSpec, eventually


async def _get(api: aiohttp.ClientSession, url: str) -> tuple[Any, str]:
    try:
        async with api.get(url, timeout=aiohttp.ClientTimeout(total=3)) as r:
            body: Any = await r.json(content_type=None)
            return r.status, str(body.get("detail", body))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__, ""


@pytest.mark.timeout(150)
async def test_a_ready_worker_stays_ready_and_takes_captures_while_another_joins(
        spec: WorkerSpec, api: aiohttp.ClientSession) -> None:
    first = Worker(spec)
    second: Worker | None = None
    try:
        await first.wait_ready()
        seen: list[tuple[float, Any, str]] = []
        captures: list[Any] = []
        polling = True

        async def poll() -> None:
            n = 0
            while polling:
                seen.append((time.monotonic(), *await _get(api, f"{first.url}/readyz")))
                n += 1
                async with api.post(f"{first.url}/v1/leads", json={"email": f"roll{n}@rollout.example"}) as r:
                    captures.append(r.status)
                await asyncio.sleep(0.05)

        poller = asyncio.create_task(poll())
        second = Worker(spec)
        await second.wait_ready()

        async def split() -> bool:
            details = [await _get(api, f"{w.url}/readyz") for w in (first, second)]
            return all(s == 200 and d[:1].isdigit() and not d.startswith("0 partition") for s, d in details)

        await eventually(split, timeout=60, what="the partitions split over both workers")
        polling = False
        await poller
        statuses = Counter(status for _, status, _ in seen)
        rebalancing = [d for _, s, d in seen if d.startswith("rebalancing")]
        print(f"first worker's /readyz while the second joined: {statuses}; {len(rebalancing)} said rebalancing; "
              f"captures {Counter(captures)}")
        assert rebalancing, "no rebalance seen: the test saw nothing"
        assert set(statuses) == {200}, [x for x in seen if x[1] != 200][:5]
        assert set(captures) == {202}, Counter(captures)
    finally:
        first.stop()
        if second is not None:
            second.stop()

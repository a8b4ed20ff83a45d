"""Static membership on the real stack: a worker back after ``kill -9`` causes no rebalance.

Two workers share the partitions. The second is SIGKILLed and started again on its port and
data dir, so it has the same instance id (``<host>-<web host>-<web port>``). The broker gives
it its old assignment back at once: the first worker never rebalances, which its ``/readyz``
shows (polled every 50 ms it stays 200 with the same partition count through the kill, the
restart and the moment the dead member's session would have expired). With dynamic membership
(``LEADFLOW_INSTANCE_ID=none``) the group rebalances twice and this test fails.
"""
from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, one_rep_config

SESSION_TIMEOUT_S = 10.0  # broker_session_timeout in streams/app.py


async def _members(spec: WorkerSpec) -> list[str]:
    """Member ids of the app's consumer group; a static member's begins with its instance id."""
    admin = AIOKafkaAdminClient(bootstrap_servers=spec.stack.kafka_bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([spec.app_id])
    finally:
        await admin.close()
    (group,) = response.to_object()["groups"]
    return sorted(member["member_id"] for member in group["members"])


async def _readiness(api: aiohttp.ClientSession, worker: Worker) -> tuple[int, str]:
    try:
        async with api.get(f"{worker.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
            body: Any = await r.json(content_type=None)
            return r.status, str(body.get("detail", body))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, repr(exc)


@pytest.mark.timeout(180)
async def test_a_worker_back_after_kill_9_takes_its_partitions_without_a_rebalance(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = one_rep_config(receiver, capacity=20)
    first = Worker(spec)
    second: Worker | None = None
    restarted: Worker | None = None
    try:
        await first.wait_ready()
        second = Worker(spec)
        await second.wait_ready()
        workers = (first, second)

        async def split() -> bool:
            states = [await _readiness(api, w) for w in workers]
            # "rebalancing: …" is ready too (a worker ready once stays so): wait for a partition count.
            return all(status == 200 and detail[:1].isdigit() and not detail.startswith("0 partition")
                       for status, detail in states)

        await eventually(split, timeout=60, what="the partitions split over both workers")
        host = socket.gethostname()
        ids = {w: f"{host}-127.0.0.1-{w.port}" for w in workers}
        before = await _members(spec)
        assert len(before) == 2 and all(any(m.startswith(ids[w] + "-") for m in before) for w in workers), before
        settled = await _readiness(api, first)

        seen: list[tuple[float, int, str]] = []
        polling = True

        async def poll_first() -> None:
            while polling:
                status, detail = await _readiness(api, first)
                seen.append((time.monotonic(), status, detail))
                await asyncio.sleep(0.05)

        poller = asyncio.create_task(poll_first())
        second.kill()
        killed = time.monotonic()
        restarted = Worker(spec, port=second.port, data_dir=second.data_dir)
        await restarted.wait_ready(timeout=90)
        ready_s = time.monotonic() - killed
        # Past the moment the killed member's session would have expired, and a little more.
        await asyncio.sleep(max(2.0, killed + SESSION_TIMEOUT_S + 3.0 - time.monotonic()))
        polling = False
        await poller

        changes = [(round(at - killed, 2), status, detail) for at, status, detail in seen
                   if (status, detail) != settled]
        assert len(seen) > 100, f"too few polls of the first worker: {len(seen)}"
        assert not changes, (f"the first worker rebalanced or lost partitions while the second restarted "
                             f"(ready {ready_s:.1f} s after the kill): {changes[:10]}")
        after = await _members(spec)
        assert len(after) == 2, after
        # Same instance ids; the restarted process is a new member under the second's id.
        assert all(any(m.startswith(ids[w] + "-") for m in after) for w in workers), after
        assert [m for m in after if m.startswith(ids[first] + "-")] == [m for m in before if m.startswith(ids[first] + "-")]
        assert set(after) != set(before), "the restarted worker must have joined as a new member"
        status, detail = await _readiness(api, restarted)
        assert status == 200 and not detail.startswith("0 partition"), detail
    finally:
        first.stop()
        for w in (second, restarted):
            if w is not None and w.proc.poll() is None:
                w.stop()

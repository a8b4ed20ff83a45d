"""API key scopes, undecodable header bytes and failed authentications on a real worker, Redis and Kafka.

The audit's three findings, tried as the audit tried them: a web-form key reading a lead and
taking over a rep, ``Authorization: Bearer \\xff`` on the wire, and wrong keys in a row.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.integration.harness import API_KEY, REPO, Worker, WorkerSpec, eventually

WEB_FORM_KEY = "it-web-form-key-0123456789"
SDR_KEY = "it-sdr-tool-key-0123456789"

CONFIG = f"""\
api_keys:
  - {{name: web-form, key: "{WEB_FORM_KEY}", scopes: [capture]}}
teams:
  - id: default
    reps:
      - {{id: loop, capacity: 5}}
"""


class ScopedSpec(WorkerSpec):
    """The harness's deployment, with a scoped key in ``LEADFLOW_API_KEYS`` besides its own."""

    def env(self, port: int, data_dir: Path) -> dict[str, str]:
        return {**super().env(port, data_dir), "LEADFLOW_API_KEYS": f"{API_KEY},{SDR_KEY}:read+work"}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_scopes_bad_header_bytes_and_wrong_keys_on_a_real_worker(spec: WorkerSpec) -> None:
    scoped = ScopedSpec(stack=spec.stack, tmp=spec.tmp, config_yaml=CONFIG)
    worker = Worker(scoped)
    try:
        await worker.wait_ready()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            # The web form's key captures, and that is all it does.
            async with http.post(f"{worker.url}/v1/leads", json={"email": "victim@example.com"},
                                 headers=_bearer(WEB_FORM_KEY)) as r:
                assert r.status == 202, await r.text()
                lead_id = (await r.json())["lead_id"]
            async with http.get(f"{worker.url}/v1/leads/{lead_id}", headers=_bearer(WEB_FORM_KEY)) as r:
                text = await r.text()
                assert r.status == 403 and "'read'" in text and "victim" not in text, text
            takeover = {"team": "default", "webhook_url": "https://attacker.example/hook",
                        "webhook_secret": "whsec_" + "A" * 43}
            async with http.put(f"{worker.url}/v1/reps/loop", json=takeover, headers=_bearer(WEB_FORM_KEY)) as r:
                assert r.status == 403 and "'admin'" in await r.text()

            # The SDR tool's key (scoped in LEADFLOW_API_KEYS) reads the lead but rewrites no rep.
            async def readable() -> bool:
                async with http.get(f"{worker.url}/v1/leads/{lead_id}", headers=_bearer(SDR_KEY)) as r:
                    assert r.status in (200, 404, 503), await r.text()
                    return r.status == 200
            await eventually(readable, timeout=30)
            async with http.put(f"{worker.url}/v1/reps/loop", json=takeover, headers=_bearer(SDR_KEY)) as r:
                assert r.status == 403 and "'admin'" in await r.text()

            async def team() -> dict[str, Any] | None:  # it exists once its first rep or lead got there
                async with http.get(f"{worker.url}/v1/teams/default", headers=_bearer(SDR_KEY)) as r:
                    assert r.status in (200, 404), await r.text()
                    return await r.json() if r.status == 200 else None
            body = await eventually(team, timeout=30, what="the team default")
            assert all("attacker" not in str(rep) for rep in body.get("reps", [])), body

            # Header bytes that are not UTF-8: a 401, not a 500.
            body = b'{"email": "a@example.com"}'
            answer = await _raw(worker.port, b"POST /v1/leads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                             b"Content-Type: application/json\r\nConnection: close\r\n"
                                             b"Content-Length: %d\r\nAuthorization: Bearer \xff\r\n\r\n%s"
                                             % (len(body), body))
            assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]

            # Wrong keys: 30 a minute from one address (one was just spent), then 429 for any key.
            statuses = []
            for n in range(30):
                async with http.get(f"{worker.url}/v1/teams/default",
                                    headers=_bearer(f"wrong-key-{n:04}-0123456789")) as r:
                    statuses.append(r.status)
            assert statuses == [401] * 29 + [429], statuses
            async with http.get(f"{worker.url}/v1/teams/default", headers=_bearer(SDR_KEY)) as r:
                assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            await asyncio.sleep(2.5)
            async with http.get(f"{worker.url}/v1/teams/default", headers=_bearer(SDR_KEY)) as r:
                assert r.status == 200
        log = worker.log_path.read_text(errors="replace")
        assert "API key 'api' has no scopes" in log, log  # the harness's unscoped key, by name
        assert API_KEY not in log and SDR_KEY not in log and WEB_FORM_KEY not in log
    finally:
        worker.stop()


def _blocked_count(metrics: str) -> float:
    [line] = [line for line in metrics.splitlines() if line.startswith('leadflow_api_auth_failures_total{reason="blocked"}')]
    return float(line.split()[-1])


async def test_an_address_blocked_on_one_worker_is_refused_by_the_other_through_redis(spec: WorkerSpec) -> None:
    # The audit's gap: the count was shared, the block was not, so the other worker answered a
    # right key from a blocked address (an extra guess per worker and period).
    scoped = ScopedSpec(stack=spec.stack, tmp=spec.tmp, config_yaml=CONFIG)
    first, second = Worker(scoped), Worker(scoped)
    redis = aioredis.Redis.from_url(spec.stack.redis_url)
    try:
        await asyncio.gather(first.wait_ready(), second.wait_ready())
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            async def team_seeded() -> bool:  # a right key is answered (404 until the config's team is in)
                async with http.get(f"{second.url}/v1/teams/default", headers=_bearer(SDR_KEY)) as r:
                    assert r.status in (200, 404, 503), await r.text()
                    return r.status == 200
            await eventually(team_seeded, timeout=30)
            statuses = []
            for n in range(31):
                async with http.get(f"{first.url}/v1/teams/default",
                                    headers=_bearer(f"wrong-key-{n:04}-0123456789")) as r:
                    statuses.append(r.status)
            assert statuses == [401] * 30 + [429], statuses
            # The second worker never saw a wrong key from 127.0.0.1: it refuses the right one.
            for worker in (second, first):
                async with http.get(f"{worker.url}/v1/teams/default", headers=_bearer(SDR_KEY)) as r:
                    assert r.status == 429 and 1 <= int(r.headers["Retry-After"]) <= 2, (r.status, await r.text())
                async with http.post(f"{worker.url}/v1/leads", json={"email": "blocked@example.com"},
                                     headers=_bearer(WEB_FORM_KEY)) as r:
                    assert r.status == 429, await r.text()
            # In Redis, with a TTL: the count is the block, and it goes away by itself.
            key = f"{scoped.app_id}:rate:auth-failures:127.0.0.1"
            assert 0 < await redis.pttl(key) <= 60_000
            for worker, blocked in ((first, 3), (second, 2)):
                async with http.get(f"{worker.url}/metrics") as r:
                    text = await r.text()
                assert _blocked_count(text) == blocked, text
                assert "wrong-key-" not in text and "127.0.0.1" not in text
            await asyncio.sleep(2.5)
            async with http.get(f"{second.url}/v1/teams/default", headers=_bearer(SDR_KEY)) as r:
                assert r.status == 200, await r.text()
    finally:
        await redis.aclose()
        first.stop()
        second.stop()


class BehindBalancer(ScopedSpec):
    """The deployment behind a load balancer at 127.0.0.1 (the tests' own address)."""

    def env(self, port: int, data_dir: Path) -> dict[str, str]:
        return {**super().env(port, data_dir), "LEADFLOW_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}


async def test_behind_a_trusted_balancer_wrong_keys_are_counted_by_the_forwarded_address(spec: WorkerSpec) -> None:
    worker = Worker(BehindBalancer(stack=spec.stack, tmp=spec.tmp, config_yaml=CONFIG))
    redis = aioredis.Redis.from_url(spec.stack.redis_url)
    guesser, neighbour = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.9"}
    try:
        await worker.wait_ready()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            statuses = []
            for n in range(31):
                async with http.get(f"{worker.url}/v1/teams/default",
                                    headers={**guesser, **_bearer(f"wrong-key-{n:04}-0123456789")}) as r:
                    statuses.append(r.status)
            assert statuses == [401] * 30 + [429], statuses
            async with http.post(f"{worker.url}/v1/leads", json={"email": "guesser@example.com"},
                                 headers={**guesser, **_bearer(WEB_FORM_KEY)}) as r:
                assert r.status == 429, await r.text()
            # The client beside it, behind the same balancer, is not blocked.
            async with http.post(f"{worker.url}/v1/leads", json={"email": "neighbour@example.com"},
                                 headers={**neighbour, **_bearer(WEB_FORM_KEY)}) as r:
                assert r.status == 202, await r.text()
        assert await redis.exists(f"{worker.spec.app_id}:rate:auth-failures:203.0.113.7")
        assert not await redis.exists(f"{worker.spec.app_id}:rate:auth-failures:127.0.0.1")
    finally:
        await redis.aclose()
        worker.stop()


def test_a_bad_trusted_proxy_stops_the_worker_naming_it(spec: WorkerSpec) -> None:
    env = {**spec.env(6066, spec.tmp / "data"), "LEADFLOW_TRUSTED_PROXIES": "10.0.0.0/8,lb.internal"}
    done = subprocess.run([sys.executable, "-m", "leadflow", "worker", "--check-config"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "environment variable LEADFLOW_TRUSTED_PROXIES: 'lb.internal' is not an IP address" in done.stderr


@pytest.mark.parametrize(("keys", "needle"), [
    ("short-key", "key 1 has 9 characters; at least 16"),
    (f"{API_KEY}:reed", "key 1: after its last ':' expected scopes"),
])
def test_a_bad_leadflow_api_keys_stops_the_worker_at_once(spec: WorkerSpec, keys: str, needle: str) -> None:
    env = {**spec.env(6066, spec.tmp / "data"), "LEADFLOW_API_KEYS": keys}
    done = subprocess.run([sys.executable, "-m", "leadflow", "worker", "--check-config"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "LEADFLOW_API_KEYS" in done.stderr and needle in done.stderr, done.stderr
    assert "short-key" not in done.stderr and API_KEY not in done.stderr

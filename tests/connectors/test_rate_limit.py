"""Per-key rate limits: the GCRA decision, the Lua script against a real redis-server, 429s, Redis down."""
from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from connectors.api import ApiContext, mount_api
from connectors.auth import Keyring
from connectors.capture_store import CaptureStore
from connectors.rate_limit import GCRA_LUA, FailedAuthLimit, LocalLimiter, RateLimiter, gcra
from ops.metrics import Metrics
from ops.stack.errors import StackError
from ops.stack.redis import find_redis_server
from sla.clock import FakeClock
from tests.connectors.conftest import AUTH, KEYS, Client, FakeEngine, FakeRedis
from tests.connectors.test_api import error_of, sample

PARTNER = {"Authorization": f"Bearer {KEYS['partner']}"}
MINUTE_US = 60_000_000


class GcraRedis(FakeRedis):
    """``FakeRedis`` that runs the limiter's script by its Python twin, NOSCRIPT included."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: set[str] = set()
        self.calls = 0

    def _run(self, key: str, now: int, interval: int, burst: int) -> list[int]:
        self.calls += 1
        stored = self.data.get(key)
        allowed, new_tat, wait, remaining = gcra(int(stored) if stored else None, now, interval, burst)
        if new_tat is not None:
            self.data[key] = str(new_tat).encode()
        return [int(allowed), wait, remaining]

    async def evalsha(self, sha: str, numkeys: int, key: str, *args: int) -> list[int]:
        if sha not in self.scripts:
            raise NoScriptError("NOSCRIPT No matching script.")
        return self._run(key, *args)

    async def eval(self, script: str, numkeys: int, key: str, *args: int) -> list[int]:
        self.scripts.add(hashlib.sha1(script.encode()).hexdigest())
        return self._run(key, *args)


class DownGcraRedis(GcraRedis):
    async def evalsha(self, sha: str, numkeys: int, key: str, *args: int) -> list[int]:
        raise RedisConnectionError("Connection refused")


class SlowGcraRedis(GcraRedis):
    async def evalsha(self, sha: str, numkeys: int, key: str, *args: int) -> list[int]:
        await asyncio.sleep(1)
        raise AssertionError("the limiter should have given up already")


Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
async def serve(engine: FakeEngine, metrics: Metrics, clock: FakeClock) -> AsyncIterator[Serve]:
    """The API with a rate limiter over ``limiter_redis`` and the given limits."""
    async with AsyncExitStack() as stack:
        async def make(limiter_redis: Any, limits: dict[str, int], **options: Any) -> Client:
            limiter = RateLimiter(limiter_redis, timeout_s=0.05,
                                  on_degraded=lambda op: metrics.redis_degraded.labels(op).inc())
            ctx = ApiContext(engine=engine, keyring=Keyring({}, KEYS.items()), store=CaptureStore(FakeRedis()),  # type: ignore[arg-type]
                             clock=clock, metrics=metrics, rate_limiter=limiter, rate_limits=limits, **options)
            app = web.Application()
            mount_api(app, ctx)
            client: Client = TestClient(TestServer(app))
            await client.start_server()
            stack.push_async_callback(client.close)
            return client
        yield make


# --- the decision ---------------------------------------------------------------------------


def test_gcra_allows_a_burst_of_the_limit_then_one_per_interval() -> None:
    interval, burst, now = MINUTE_US // 3, 3, 1_000_000_000
    tat = None
    decisions = []
    for _ in range(4):
        allowed, new_tat, wait, remaining = gcra(tat, now, interval, burst)
        decisions.append((allowed, wait, remaining))
        tat = new_tat if new_tat is not None else tat
    assert decisions == [(True, 0, 2), (True, 0, 1), (True, 0, 0), (False, interval, 0)]
    # One interval later exactly one more passes; the allowance refills at the limit's rate.
    assert gcra(tat, now + interval, interval, burst)[0] is True
    assert gcra(tat, now + interval - 1, interval, burst)[:3:2] == (False, 1)
    # After a quiet minute the whole burst is back.
    assert gcra(tat, now + MINUTE_US, interval, burst)[3] == burst - 1


@pytest.mark.parametrize("per_minute", [1, 7, 60, 600, 6000])
def test_over_a_long_run_the_rate_is_the_limit(per_minute: int) -> None:
    interval = max(1, MINUTE_US // per_minute)
    tat, now, allowed = None, 0, 0
    step = interval // 4 or 1
    while now < 10 * MINUTE_US:
        ok, new_tat, _, _ = gcra(tat, now, interval, per_minute)
        if ok:
            allowed, tat = allowed + 1, new_tat
        now += step
    # Ten minutes: ten minutes' worth plus at most the initial burst.
    assert 10 * per_minute <= allowed <= 11 * per_minute


# --- the script, for real -------------------------------------------------------------------


@pytest.fixture
async def real_redis(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    """A private redis-server on a unix socket, for the Lua script (the fakes cannot run Lua).

    Installed the way ``leadflow stack up`` installs it when the machine lacks it: on a fresh CI
    machine these tests run before the integration tests start the stack, and skipping them
    there would hide them exactly where they matter.
    """
    try:
        binary = find_redis_server(progress=lambda line: None)
    except StackError as exc:
        pytest.fail(f"redis-server is needed for the rate limiter's Lua script: {exc}")
    socket = tmp_path / "redis.sock"
    process = subprocess.Popen([str(binary), "--port", "0", "--unixsocket", str(socket), "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = aioredis.Redis(unix_socket_path=str(socket))
    try:
        for _ in range(200):
            if socket.exists():
                try:
                    await client.ping()
                    break
                except RedisConnectionError:
                    pass
            await asyncio.sleep(0.01)
        else:
            pytest.fail("redis-server did not start")
        yield client
    finally:
        await client.aclose()
        process.terminate()
        process.wait(timeout=5)


@pytest.mark.timeout(600)  # on a fresh machine the fixture installs redis-server first
async def test_the_lua_script_decides_like_its_python_twin(real_redis: aioredis.Redis, clock: FakeClock) -> None:
    limiter = RateLimiter(real_redis, timeout_s=2)
    per_minute = 7
    interval = MINUTE_US // per_minute
    tat: int | None = None
    for step in [0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 8.6, 8.6, 0.5, 30, 61, 0, 0, 120] + [0] * 10:
        clock.advance(step)
        now = int(clock.now().timestamp() * 1_000_000)
        allowed, new_tat, wait, remaining = gcra(tat, now, interval, per_minute)
        tat = new_tat if new_tat is not None else tat
        decision = await limiter.acquire("web-form", per_minute, clock.now())
        expected_retry = 0 if allowed else max(1, -(-wait // 1_000_000))
        assert (decision.allowed, decision.retry_after_s, decision.remaining) == (allowed, expected_retry, remaining)
        assert not decision.degraded
    stored = await real_redis.get("leadflow:rate:web-form")
    assert stored is not None and int(stored) == tat  # integral microseconds, not 1.7e+15
    assert 0 < await real_redis.pttl("leadflow:rate:web-form") <= 60_000  # the key expires when idle


@pytest.mark.timeout(600)  # on a fresh machine the fixture installs redis-server first
async def test_the_script_is_loaded_once_then_called_by_its_sha(real_redis: aioredis.Redis, clock: FakeClock) -> None:
    await real_redis.script_flush()
    limiter = RateLimiter(real_redis, timeout_s=2)
    await limiter.acquire("partner", 5, clock.now())  # NOSCRIPT, then EVAL
    sha = hashlib.sha1(GCRA_LUA.encode()).hexdigest()
    assert await real_redis.script_exists(sha) == [True]
    assert (await limiter.acquire("partner", 5, clock.now())).remaining == 3


# --- over HTTP -----------------------------------------------------------------------------


async def test_a_key_over_its_limit_gets_429_with_retry_after(
        serve: Serve, engine: FakeEngine, clock: FakeClock) -> None:
    client = await serve(GcraRedis(), {"web-form": 3})
    for n in range(3):
        response = await client.post("/v1/leads", json={"email": f"a{n}@example.com"}, headers=AUTH)
        assert response.status == 202
    refused = await client.post("/v1/leads", json={"email": "late@example.com"}, headers=AUTH)
    error = await error_of(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "20"  # 3 per minute: one every 20 s
    assert "3 requests per minute" in error["message"]
    assert len(engine.captured) == 3

    # Another key has its own allowance (here: none configured, so unlimited).
    assert (await client.post("/v1/leads", json={"email": "p@example.com"}, headers=PARTNER)).status == 202
    # Reads are not limited.
    assert (await client.get("/v1/teams/none", headers=AUTH)).status == 404

    clock.advance(19)
    assert (await client.post("/v1/leads", json={"email": "x@example.com"}, headers=AUTH)).status == 429
    clock.advance(1)
    assert (await client.post("/v1/leads", json={"email": "x@example.com"}, headers=AUTH)).status == 202


async def test_an_unknown_key_is_401_and_costs_no_key_anything(serve: Serve) -> None:
    redis = GcraRedis()
    client = await serve(redis, {"web-form": 1})
    response = await client.post("/v1/leads", json={"email": "a@example.com"},
                                 headers={"Authorization": "Bearer nope"})
    await error_of(response, 401, "unauthorized")
    # Only the client's failed authentications are counted (tests/connectors/test_api_scopes.py).
    assert list(redis.data) == ["leadflow:rate:auth-failures:127.0.0.1"]


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("post", "/v1/leads", {"json": {"email": "a@example.com"}}),
    ("post", "/v1/forms/contact", {"data": {"email": "a@example.com"}}),
    ("post", "/v1/leads/import", {"data": b"email\na@example.com\n", "headers": {"Content-Type": "text/csv"}}),
    ("put", "/v1/reps/rep-ana", {"json": {"team": "emea"}}),
    ("post", "/v1/leads/ld_000000000000000000000000/disposition", {"json": {"status": "nurture"}}),
])
async def test_every_write_endpoint_is_limited(serve: Serve, method: str, path: str, kwargs: dict[str, Any]) -> None:
    client = await serve(GcraRedis(), {"web-form": 1})
    headers = {**AUTH, **kwargs.pop("headers", {})}
    await getattr(client, method)(path, headers=headers, **kwargs)
    second = await getattr(client, method)(path, headers=headers, **kwargs)
    await error_of(second, 429, "rate_limited")
    assert second.headers["Retry-After"] == "60"


@pytest.mark.parametrize("redis", [DownGcraRedis(), SlowGcraRedis()], ids=["down", "slow"])
async def test_without_redis_the_limit_holds_per_worker_and_it_is_counted(
        serve: Serve, engine: FakeEngine, metrics: Metrics, clock: FakeClock, redis: GcraRedis) -> None:
    # Review s18-redis F3: it was open (every request passed) for as long as Redis could not answer,
    # a wrong LEADFLOW_REDIS_URL included. Now the worker counts in its memory: the same limit.
    client = await serve(redis, {"web-form": 2})
    statuses = [(await client.post("/v1/leads", json={"email": f"a{n}@example.com"}, headers=AUTH)).status
                for n in range(4)]
    assert statuses == [202, 202, 429, 429]
    assert len(engine.captured) == 2
    assert sample(metrics, "leadflow_redis_degraded_total", operation="rate_limit") == 4
    clock.advance(30)  # one more every 30 s, as in Redis
    assert (await client.post("/v1/leads", json={"email": "b@example.com"}, headers=AUTH)).status == 202


def test_a_limit_below_one_is_a_bug_not_a_silent_block() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(RateLimiter(GcraRedis()).acquire("x", 0, FakeClock().now()))


async def test_without_redis_wrong_keys_from_many_addresses_cannot_reset_a_keys_count(clock: FakeClock) -> None:
    # Review s18-a, finding 6: API keys and failed-auth addresses shared one LocalLimiter of 10,000
    # subjects, so 10,000 wrong keys from as many addresses pushed a key's count out: a full burst again.
    limiter, failed_auth = RateLimiter(DownGcraRedis()), FailedAuthLimit()
    assert [(await limiter.acquire("web-form", 3, clock.now())).allowed for _ in range(4)] == [True] * 3 + [False]
    for n in range(10_001):
        await failed_auth.failed(f"2001:db8:{n:x}::/64", clock.now(), limiter)
    assert not (await limiter.acquire("web-form", 3, clock.now())).allowed


def test_the_local_count_forgets_the_subject_used_least_recently(clock: FakeClock) -> None:
    local = LocalLimiter(max_subjects=2)
    assert local.acquire("a", 1, clock.now()).allowed and local.acquire("b", 1, clock.now()).allowed
    assert not local.acquire("a", 1, clock.now()).allowed  # refused, but used now: "b" is the older
    assert local.acquire("c", 1, clock.now()).allowed
    assert not local.acquire("a", 1, clock.now()).allowed  # still counted
    assert local.acquire("b", 1, clock.now()).allowed  # forgotten: a full allowance again
    assert len(local) == 2


def test_a_full_local_count_takes_a_new_subject_in_constant_time(clock: FakeClock) -> None:
    # Review s18-a, finding 6: once full of live entries, each new subject scanned all 10,000 (230 us).
    local = LocalLimiter()
    for n in range(10_000):
        local.acquire(f"a{n}", 30, clock.now())
    started = time.perf_counter()
    for n in range(20_000):
        assert local.acquire(f"b{n}", 30, clock.now()).allowed
    assert time.perf_counter() - started < 1.0  # ~3 us each; the scan took ~4.6 s
    assert len(local) == 10_000

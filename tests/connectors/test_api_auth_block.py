"""The failed-authentication block is shared by the workers through Redis, and per worker without it.

The audit's gap: the count of failed authentications was shared, the block was not, so each
other worker answered a right key from a blocked address (a guesser's extra guess per worker and
period). Two ``serve()`` apps over one Redis stand for two workers; tests/integration/test_api_auth.py
does the same with two real workers and a real Redis.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError

from connectors.api import ApiContext, mount_api
from connectors.api.client_address import TrustedProxies
from connectors.capture_store import CaptureStore
from connectors.rate_limit import FailedAuthLimit, RateLimiter, gcra
from connectors.redis_guard import RedisGuard
from ops.metrics import Metrics
from sla.clock import FakeClock
from tests.connectors.conftest import Client, FakeEngine, FakeRedis
from tests.connectors.test_api import error_of, sample
from tests.connectors.test_api_scopes import bearer, keyring
from tests.connectors.test_rate_limit import GcraRedis

WRONG = {"Authorization": "Bearer wrong-key-0000-xxxxxxxx"}
MINUTE_US = 60_000_000


class CountingRedis(GcraRedis):
    """``GcraRedis`` that counts the block lookups (GETs) too."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return await super().get(key)


class DownRedis(CountingRedis):
    """Refuses every connection, as a stopped redis-server does."""

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        raise RedisConnectionError("Connection refused")

    async def evalsha(self, sha: str, numkeys: int, key: str, *args: int) -> list[int]:
        raise RedisConnectionError("Connection refused")


class HungRedis(CountingRedis):
    """Accepts the connection and never answers."""

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        await asyncio.sleep(10)
        raise AssertionError("the lookup should have given up already")


Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
async def serve(engine: FakeEngine, metrics: Metrics, clock: FakeClock) -> AsyncIterator[Serve]:
    """One worker's API over ``redis`` (its own ``FailedAuthLimit``, as each worker has)."""
    async with AsyncExitStack() as stack:
        async def make(redis: Any, per_minute: int = 3, redis_pause_s: float = 5.0, **options: Any) -> Client:
            # Each worker has its own Redis guard, on the test's clock.
            guard = RedisGuard(timeout_s=0.05, pause_s=redis_pause_s, clock=lambda: clock.now().timestamp())
            limiter = RateLimiter(redis, timeout_s=0.05, on_degraded=lambda op: metrics.redis_degraded.labels(op).inc(),
                                  guard=guard)
            ctx = ApiContext(engine=engine, keyring=keyring(), store=CaptureStore(FakeRedis()),  # type: ignore[arg-type]
                             clock=clock, metrics=metrics, rate_limiter=limiter,
                             failed_auth=FailedAuthLimit(per_minute=per_minute), **options)
            app = web.Application()
            mount_api(app, ctx)
            client: Client = TestClient(TestServer(app))
            await client.start_server()
            stack.push_async_callback(client.close)
            return client
        yield make


async def _capture(client: Client) -> Any:
    return await client.post("/v1/leads", json={"email": "a@example.com"}, headers=bearer("web-form"))


# --- over HTTP, two workers ----------------------------------------------------------------


async def test_a_block_reached_on_one_worker_refuses_a_right_key_on_every_other(
        serve: Serve, engine: FakeEngine, metrics: Metrics, clock: FakeClock) -> None:
    redis = CountingRedis()
    first, second, third = await serve(redis), await serve(redis), await serve(redis)
    for _ in range(3):
        assert (await first.get("/v1/teams/emea", headers=WRONG)).status == 401
    refused = await first.get("/v1/teams/emea", headers=WRONG)
    await error_of(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "20"
    # The other workers never saw a failure from the address: they refuse its right key all the same,
    # and tell it the same wait, without running the request.
    for worker in (second, third):
        blocked = await _capture(worker)
        error = await error_of(blocked, 429, "rate_limited")
        assert blocked.headers["Retry-After"] == "20" and "failed authentications" in error["message"]
    assert engine.captured == []
    # A wrong key there is refused too, by the same count (nothing more is counted).
    await error_of(await second.get("/v1/teams/emea", headers=WRONG), 429, "rate_limited")
    assert sample(metrics, "leadflow_api_auth_failures_total", reason="blocked") == 4
    # The block ends with the count: 20 s later (60 s / 3) a right key passes everywhere.
    clock.advance(20)
    assert (await _capture(third)).status == 202
    assert (await _capture(second)).status == 202


async def test_a_block_found_in_redis_is_remembered_and_a_request_without_a_key_asks_nothing(
        serve: Serve, clock: FakeClock) -> None:
    redis = CountingRedis()
    first, second = await serve(redis), await serve(redis)
    assert (await _capture(second)).status == 202
    assert redis.gets == 1  # a right key: one lookup
    for _ in range(4):
        await first.get("/v1/teams/emea", headers=WRONG)
    gets = redis.gets  # the wrong keys asked nothing: each one's count is its answer
    assert gets == 1
    await error_of(await _capture(second), 429, "rate_limited")
    await error_of(await _capture(second), 429, "rate_limited")
    assert redis.gets == gets + 1  # found once, then known to this worker until it ends
    await error_of(await second.get("/v1/teams/emea"), 401, "unauthorized")  # no key: guesses nothing
    assert redis.gets == gets + 1


async def test_below_the_limit_a_right_key_passes_on_every_worker(serve: Serve) -> None:
    redis = CountingRedis()
    first, second = await serve(redis), await serve(redis)
    for _ in range(2):
        assert (await first.get("/v1/teams/emea", headers=WRONG)).status == 401
    assert (await _capture(second)).status == 202
    assert (await first.get("/v1/teams/emea", headers=WRONG)).status == 401  # the third: still allowed
    await error_of(await _capture(second), 429, "rate_limited")  # and now it is spent


async def test_without_redis_a_right_key_passes_and_wrong_ones_are_limited_per_worker(
        serve: Serve, engine: FakeEngine, metrics: Metrics, clock: FakeClock) -> None:
    redis = DownRedis()
    first, second = await serve(redis), await serve(redis)
    assert (await _capture(first)).status == 202  # never every request refused
    assert sample(metrics, "leadflow_redis_degraded_total", operation="failed_auth_block") == 1
    statuses = [(await first.get("/v1/teams/emea", headers=WRONG)).status for _ in range(5)]
    assert statuses == [401] * 3 + [429] * 2  # never unlimited: the worker counts in its memory
    await error_of(await _capture(first), 429, "rate_limited")
    assert (await _capture(second)).status == 202  # the other worker cannot know: per worker now
    assert len(engine.captured) == 2


async def test_after_a_failed_lookup_redis_is_left_alone_for_a_while(
        serve: Serve, metrics: Metrics, clock: FakeClock) -> None:
    redis = HungRedis()
    client = await serve(redis, redis_pause_s=5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):
        assert (await _capture(client)).status == 202
    assert redis.gets == 1 and loop.time() - started < 1  # one request waited the 0.05 s timeout
    clock.advance(5)
    assert (await _capture(client)).status == 202
    assert redis.gets == 2
    # Every lookup went without Redis: the one that waited and the five not asked.
    assert sample(metrics, "leadflow_redis_degraded_total", operation="failed_auth_block") == 6


# --- behind a load balancer -------------------------------------------------------------

#: The test server's peer is 127.0.0.1: the load balancer in front of the workers.
BALANCER = TrustedProxies.parse("127.0.0.0/8")


def _from(address: str, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` as the balancer passes them on for a client at ``address`` (it appends its peer)."""
    return {**headers, "X-Forwarded-For": address}


async def test_behind_a_trusted_balancer_a_guesser_blocks_itself_not_the_clients_beside_it(
        serve: Serve, engine: FakeEngine, clock: FakeClock) -> None:
    redis = CountingRedis()
    first, second = await serve(redis, trusted_proxies=BALANCER), await serve(redis, trusted_proxies=BALANCER)
    for _ in range(3):
        assert (await first.get("/v1/teams/emea", headers=_from("203.0.113.7", WRONG))).status == 401
    await error_of(await first.get("/v1/teams/emea", headers=_from("203.0.113.7", WRONG)), 429, "rate_limited")
    # The guesser's right key is refused on every worker, as without a balancer ...
    await error_of(await second.post("/v1/leads", json={"email": "a@example.com"},
                                     headers=_from("203.0.113.7", bearer("web-form"))), 429, "rate_limited")
    # ... and a client beside it, through the same balancer, is not: its own count is untouched.
    for worker in (first, second):
        answer = await worker.post("/v1/leads", json={"email": "b@example.com"},
                                   headers=_from("198.51.100.9", bearer("web-form")))
        assert answer.status == 202, await answer.text()
    assert (await first.get("/v1/teams/emea", headers=_from("198.51.100.9", WRONG))).status == 401
    # The guesser gains nothing by writing another address before the one the balancer appends.
    spoofed = _from("198.51.100.9, 203.0.113.7", bearer("web-form"))
    await error_of(await second.post("/v1/leads", json={"email": "a@example.com"}, headers=spoofed), 429,
                   "rate_limited")
    # An IPv6 client is one by its /64, forwarded or not.
    for _ in range(3):
        await first.get("/v1/teams/emea", headers=_from("2001:db8:1:2::7", WRONG))
    await error_of(await first.get("/v1/teams/emea", headers=_from("2001:db8:1:2::8", WRONG)), 429, "rate_limited")
    assert (await first.get("/v1/teams/emea", headers=_from("2001:db8:1:3::8", WRONG))).status == 401


@pytest.mark.parametrize("trusted", [TrustedProxies(), TrustedProxies.parse("10.0.0.0/8")])
async def test_an_x_forwarded_for_from_a_peer_that_is_no_trusted_proxy_is_ignored(
        serve: Serve, trusted: TrustedProxies) -> None:
    client = await serve(CountingRedis(), trusted_proxies=trusted)  # the peer, 127.0.0.1, is not trusted
    statuses = [(await client.get("/v1/teams/emea", headers=_from(f"198.51.100.{n}", WRONG))).status
                for n in range(5)]
    assert statuses == [401] * 3 + [429] * 2  # a new address each time bought no new guesses


# --- the parts --------------------------------------------------------------------------


async def test_peek_tells_what_acquire_would_and_takes_nothing(clock: FakeClock) -> None:
    redis = GcraRedis()
    limiter = RateLimiter(redis)
    for _ in range(2):
        await limiter.acquire("auth-failures:203.0.113.7", 3, clock.now())
    before = dict(redis.data)
    peeked = await limiter.peek("auth-failures:203.0.113.7", 3, clock.now(), operation="x")
    assert peeked is not None and (peeked.allowed, peeked.remaining) == (True, 0)  # as acquire would answer
    assert redis.data == before
    await limiter.acquire("auth-failures:203.0.113.7", 3, clock.now())
    peeked = await limiter.peek("auth-failures:203.0.113.7", 3, clock.now(), operation="x")
    assert peeked is not None and (peeked.allowed, peeked.retry_after_s) == (False, 20)
    unknown = await limiter.peek("auth-failures:198.51.100.1", 3, clock.now(), operation="x")
    assert unknown is not None and unknown.allowed


@pytest.mark.parametrize("failures", [0, 1, 29, 30, 31, 45])
def test_blocked_means_the_next_failure_would_be_refused(failures: int) -> None:
    # The block is the count's own state: refused exactly when the allowance (30, then one every 2 s) is spent.
    interval = MINUTE_US // 30
    tat: int | None = None
    for _ in range(failures):
        allowed, new_tat, _, _ = gcra(tat, 0, interval, 30)
        tat = new_tat if allowed else tat
    allowed, _, wait, _ = gcra(tat, 0, interval, 30)
    assert allowed == (failures < 30)
    assert wait == (0 if failures < 30 else 2_000_000)


async def test_a_full_local_block_list_forgets_the_addresses_whose_block_ended(clock: FakeClock) -> None:
    limit = FailedAuthLimit(per_minute=1, max_addresses=2)
    for address in ("a", "b"):
        await limit.failed(address, clock.now(), None)
        assert not (await limit.failed(address, clock.now(), None)).allowed
    assert limit.blocked_for("a", clock.now()) == 60
    clock.advance(61)
    await limit.failed("c", clock.now(), None)
    assert not (await limit.failed("c", clock.now(), None)).allowed
    assert limit.blocked_for("c", clock.now()) == 60
    assert limit.blocked_for("a", clock.now()) is None and limit.blocked_for("b", clock.now()) is None

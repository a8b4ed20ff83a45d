"""The worker's one Redis guard (connectors/redis_guard.py): a hung Redis costs one wait, not one per
call and capture; one time budget per request; failures that are not a PING's (OOM) show; the log
says what failed and where, once (review s18-redis, findings 1, 2 and 5)."""
from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError

from connectors.api import ApiContext, mount_api
from connectors.auth import Keyring
from connectors.capture_store import CaptureStore
from connectors.enrichment.cache import CacheUnavailable, EnrichmentCache
from connectors.rate_limit import FailedAuthLimit, RateLimiter
from connectors.redis_guard import RedisGuard, RedisUnavailable, guard_for
from ops.metrics import Metrics
from sla.clock import FakeClock
from streams.log_rate_limit import RepeatLimit
from tests.connectors.conftest import AUTH, KEYS, FakeEngine
from tests.connectors.test_api import sample
from tests.connectors.test_rate_limit import real_redis  # noqa: F401  (a fixture)


class BlackHole:
    """A TCP server that accepts connections and never answers, as a hung Redis (``DEBUG SLEEP``,
    ``CLIENT PAUSE``, a frozen host) looks to a client."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self._writers.append(writer)
        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def hung() -> AsyncIterator[tuple[aioredis.Redis, BlackHole]]:
    hole = BlackHole()
    async with hole as port:
        # As streams/resources.py builds the worker's client.
        client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1.0, socket_timeout=1.0)
        try:
            yield client, hole
        finally:
            await client.aclose()


async def test_a_hung_redis_costs_one_wait_not_one_per_call_and_capture(
        hung: tuple[aioredis.Redis, BlackHole], metrics: Metrics, clock: FakeClock) -> None:
    # Before: each capture with an Idempotency-Key and a rate-limited key waited 1 s on each of
    # claim, rate limit, seen and remember: 4 s a capture, ~40 s for these ten.
    client, hole = hung
    count = lambda op: metrics.redis_degraded.labels(op).inc()  # noqa: E731
    engine = FakeEngine()
    ctx = ApiContext(engine=engine, keyring=Keyring({}, KEYS.items()),
                     store=CaptureStore(client, timeout_s=1.0, on_degraded=count), clock=clock, metrics=metrics,
                     rate_limiter=RateLimiter(client, timeout_s=1.0, on_degraded=count), rate_limits={"web-form": 100})
    app = web.Application()
    mount_api(app, ctx)
    async with TestClient(TestServer(app)) as http:
        started = time.monotonic()
        for n in range(10):
            response = await http.post("/v1/leads", json={"email": f"a{n}@example.com"},
                                       headers={**AUTH, "Idempotency-Key": f"k{n}"})
            assert response.status == 202, await response.text()
        took = time.monotonic() - started
    assert took < 3, f"10 captures took {took:.1f} s"
    assert len(engine.captured) == 10  # nothing lost: degraded mode as before
    assert sample(metrics, "leadflow_redis_degraded_total", operation="seen") == 10  # each still counted
    assert guard_for(client).down and hole.connections <= 2  # no reconnect storm either


async def test_one_request_loses_at_most_its_budget_to_redis() -> None:
    guard = RedisGuard(timeout_s=1.0, request_budget_s=1.0)

    async def hangs() -> str:  # Redis does not answer; each caller gives up after its own 0.4 s
        await asyncio.sleep(60)
        return "ok"

    async def request() -> list[str]:
        answers = []
        for n in range(5):
            try:
                answers.append(await guard.call(f"op{n}", hangs, 0.4))
            except RedisUnavailable as exc:
                answers.append(exc.kind)
        return answers

    started = time.monotonic()
    answers = await asyncio.create_task(request())
    assert time.monotonic() - started < 1.2  # not 5 x 0.4 s
    assert answers[:3] == ["timeout"] * 3  # 0.4 + 0.4 + the 0.2 left
    assert all(kind == "request's Redis budget spent" for kind in answers[3:])
    assert not guard.down  # timeouts shorter than the guard's say nothing sure: the next request asks

    async def answers_at_once() -> str:
        return "ok"
    assert await asyncio.create_task(guard.call("next", answers_at_once)) == "ok"


async def test_calls_redis_answered_cost_the_budget_nothing() -> None:
    # Review s18-a, finding 1: the budget counted answered calls too, so a CSV import (one request,
    # 500 round trips) against a healthy Redis went without it once 1 s of them had added up.
    guard = RedisGuard(timeout_s=1.0, request_budget_s=0.2)

    async def answers() -> str:
        await asyncio.sleep(0.01)
        return "ok"

    async def request() -> list[str]:
        return [await guard.call("seen", answers) for _ in range(50)]  # 0.5 s answered, over the 0.2 s

    assert await asyncio.create_task(request()) == ["ok"] * 50
    assert not guard.degraded()


async def test_a_slow_redis_costs_a_request_its_budget_not_every_calls_answer_time() -> None:
    # Review s18-d: with only failed calls charged, a Redis answering each call in 0.8 s (under the
    # 1 s timeout) made every keyed capture wait 4 s (five calls in a row), and nothing showed it.
    guard = RedisGuard(timeout_s=1.0, request_budget_s=1.0)

    async def slow() -> str:
        await asyncio.sleep(0.8)
        return "ok"

    async def request() -> list[str]:
        said = []
        for _ in range(5):
            try:
                said.append(await guard.call("seen", slow))
            except RedisUnavailable:
                said.append("without")
        return said

    started = time.monotonic()
    said = await asyncio.create_task(request())
    assert time.monotonic() - started < 2.0  # was 4.0
    assert said[0] == "ok" and said[-1] == "without"
    assert guard.degraded()  # the gauge shows it (the first answer was slow; the budget cut the next short)
    assert not guard.down  # it answers: no pause for the other requests


async def test_a_busy_event_loop_does_not_make_a_request_skip_remember(
        real_redis: aioredis.Redis, metrics: Metrics, clock: FakeClock) -> None:  # noqa: F811
    # Review s18-a, finding 2: with the loop 0.45 s late (below LeadflowEventLoopLagHigh's 0.5 s) the
    # request's 1 s ran out on calls Redis answered at once; its answer was not kept, and the retry
    # with the same key got 409 for the claim's 30 s.
    count = lambda op: metrics.redis_degraded.labels(op).inc()  # noqa: E731
    guard = RedisGuard(timeout_s=1.0, request_budget_s=1.0, pause_s=5.0)  # as streams/resources.py
    ctx = ApiContext(engine=FakeEngine(), keyring=Keyring({}, KEYS.items()),
                     store=CaptureStore(real_redis, timeout_s=1.0, on_degraded=count, guard=guard), clock=clock,
                     metrics=metrics, rate_limits={"web-form": 1000}, failed_auth=FailedAuthLimit(),
                     rate_limiter=RateLimiter(real_redis, timeout_s=1.0, on_degraded=count, guard=guard))
    app = web.Application()
    mount_api(app, ctx)
    stop = False

    async def busy() -> None:  # other work on the loop: 0.45 s of CPU between two yields
        while not stop:
            time.sleep(0.45)
            await asyncio.sleep(0.001)

    key = {**AUTH, "Idempotency-Key": "k1"}
    async with TestClient(TestServer(app)) as http:
        await http.post("/v1/leads", json={"email": "warm@example.com"}, headers=AUTH)  # connections made
        hog = asyncio.create_task(busy())
        await asyncio.sleep(0.01)
        first = await http.post("/v1/leads", json={"email": "ana@example.com"}, headers=key)
        stop = True
        await hog
        retry = await http.post("/v1/leads", json={"email": "ana@example.com"}, headers=key)
        assert first.status == 202, await first.text()
        assert retry.status == 202, await retry.text()
        assert retry.headers.get("Idempotent-Replayed") == "true"
        assert await retry.json() == await first.json()
    assert sample(metrics, "leadflow_redis_degraded_total", operation="idempotency_set") == 0
    assert not guard.degraded()


@pytest.mark.timeout(300)
async def test_a_large_csv_import_against_a_healthy_redis_marks_every_row_seen(
        real_redis: aioredis.Redis, metrics: Metrics, clock: FakeClock) -> None:  # noqa: F811
    # Review s18-a, finding 1: imported twice, 100,000 rows: the second time 79,200 said "accepted"
    # (only 24,400 marked), with 775 degraded operations counted and the gauge at 1, Redis healthy.
    count = lambda op: metrics.redis_degraded.labels(op).inc()  # noqa: E731
    guard = RedisGuard(timeout_s=1.0, request_budget_s=1.0, pause_s=5.0)
    ctx = ApiContext(engine=FakeEngine(), keyring=Keyring({}, KEYS.items()),
                     store=CaptureStore(real_redis, timeout_s=1.0, on_degraded=count, guard=guard), clock=clock,
                     metrics=metrics,
                     rate_limiter=RateLimiter(real_redis, timeout_s=1.0, on_degraded=count, guard=guard))
    app = web.Application(client_max_size=64 * 1024 * 1024)
    mount_api(app, ctx)
    rows = 100_000
    body = ("email\n" + "".join(f"p{n}@example.com\n" for n in range(rows))).encode()
    async with TestClient(TestServer(app)) as http:
        summaries = []
        for _ in range(2):
            response = await http.post("/v1/leads/import", data=io.BytesIO(body), headers={**AUTH, "Content-Type": "text/csv"})
            assert response.status == 202
            summaries.append(orjson.loads((await response.read()).splitlines()[-1])["summary"])
    assert summaries[0]["accepted"] == rows
    assert summaries[1] == {"rows": rows, "accepted": 0, "duplicate": rows, "rejected": 0}
    assert sample(metrics, "leadflow_redis_degraded_total", operation="seen") == 0
    assert not guard.degraded()


async def test_an_answer_to_a_call_older_than_the_outage_does_not_end_it() -> None:
    # Review s18-a, finding 2 (the burst): a call in flight when another gave up answered later and
    # ended the pause at once ("answers again after 0 s").
    now = [0.0]
    guard = RedisGuard(pause_s=5.0, clock=lambda: now[0])
    release = asyncio.Event()

    async def late() -> str:
        await release.wait()
        return "OK"

    async def refused() -> None:
        raise RedisConnectionError("Connection reset by peer")

    older = asyncio.create_task(guard.call("seen", late))
    await asyncio.sleep(0)
    now[0] = 1.0
    with pytest.raises(RedisUnavailable):
        await guard.call("seen", refused)
    release.set()
    assert await older == "OK"
    assert guard.down  # the pause holds: the probe at 6 s decides
    now[0] = 6.0
    assert await guard.call("seen", late) == "OK" and not guard.down


async def test_the_enrichment_cache_keeps_the_pause_of_a_hung_redis(hung: tuple[aioredis.Redis, BlackHole]) -> None:
    # Review s18-a, finding 4: once the first pause was over every lookup (100 ms) was the probe, its
    # timeout did not pause again: 66 of them asked a hung Redis in 15 s, each a new connection.
    client, hole = hung
    guard = RedisGuard(timeout_s=1.0, request_budget_s=1.0, pause_s=1.0)  # the worker's, but a 1 s pause
    store, cache = CaptureStore(client, timeout_s=1.0, guard=guard), EnrichmentCache(client, guard=guard)
    assert await store.mark_seen(["ld_1"]) == [False]  # 1 s: the guard goes without Redis
    assert guard.down and hole.connections == 1
    started, asked = time.monotonic(), 0
    while time.monotonic() - started < 4.0:  # the intake: a batch every 50 ms
        try:
            await cache.get_many([("pdl", "corp.example")], 2.0)
        except CacheUnavailable as exc:
            asked += "not asked" not in str(exc)
        await asyncio.sleep(0.05)
    assert guard.down
    assert asked <= 5 and hole.connections <= 6  # one probe a pause (before: ~25 and ~25)


async def test_an_error_reply_ends_the_outage_and_still_shows(real_redis: aioredis.Redis) -> None:  # noqa: F811
    # Review s18-a, finding 5: after a hang, a Redis that answered but refused writes (OOM) kept the
    # guard down for good: the worker's probe is a write, and reads Redis would answer were skipped.
    now = [0.0]
    guard = RedisGuard(timeout_s=2.0, pause_s=5.0, clock=lambda: now[0])
    store = CaptureStore(real_redis, timeout_s=2.0, guard=guard)
    await real_redis.set("leadflow:idem:x", b'{"status":202,"body":"{}","fingerprint":"f"}')

    async def lost() -> None:
        raise RedisConnectionError("Connection lost")

    with pytest.raises(RedisUnavailable):
        await guard.call("idempotency_get", lost)
    assert guard.down
    await real_redis.config_set("maxmemory-policy", "noeviction")
    await real_redis.config_set("maxmemory", "1")
    now[0] = 5.0
    assert not await store.probe()  # the worker's 5 s check, a write: OOM
    assert not guard.down and guard.last_kind == "OOM (maxmemory reached)"
    assert await guard.call("idempotency_get", lambda: real_redis.get("leadflow:idem:x")) is not None
    assert guard.degraded()  # writes fail: the gauge still says so
    now[0] = 30.0
    assert not await store.probe() and guard.degraded()  # and goes on saying so while they do


@pytest.fixture(autouse=True)
def _no_repeat_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard's logger as a fresh process has it: a worker's Resources (built by other tests)
    puts a RepeatLimit on it, which would hold back a template another test logged just before."""
    monkeypatch.setattr(logging.getLogger("connectors.redis_guard"), "filters", [])


async def test_after_a_failure_one_probe_at_a_time_finds_redis_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    guard = RedisGuard(address="10.0.0.5:6380", pause_s=5.0, clock=lambda: now[0])
    calls = 0
    release = asyncio.Event()

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise RedisConnectionError("Connection refused")

    async def answers() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "PONG"

    with caplog.at_level(logging.INFO, logger="connectors.redis_guard"):
        with pytest.raises(RedisUnavailable):
            await guard.call("seen", refused)
        for _ in range(100):
            with pytest.raises(RedisUnavailable, match="not asked"):
                await guard.call("seen", refused)
        assert calls == 1 and guard.down and guard.degraded()
        now[0] = 5.0
        probe = asyncio.create_task(guard.call("seen", answers))
        await asyncio.sleep(0)
        with pytest.raises(RedisUnavailable, match="not asked"):  # the probe is out: the others wait
            await guard.call("seen", answers)
        release.set()
        assert await probe == "PONG" and calls == 2 and not guard.down
        assert await guard.call("seen", answers) == "PONG"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["redis at 10.0.0.5:6380 failed for seen: connection failed; going on without it, next try in 5 s",
                     "redis at 10.0.0.5:6380 answers again after 5 s; 102 operations went without it"]


async def test_a_full_redis_shows_though_it_answers_ping(real_redis: aioredis.Redis) -> None:  # noqa: F811
    # Review s18-redis F2: with maxmemory reached (noeviction) every write failed, PING answered,
    # and the degraded-mode gauge (a PING) stayed 0.
    store = CaptureStore(real_redis, timeout_s=2.0)
    assert await store.probe() and not store.guard.degraded()
    await real_redis.config_set("maxmemory", "1")
    await real_redis.config_set("maxmemory-policy", "noeviction")
    assert await real_redis.ping()
    assert await store.mark_seen(["ld_1"]) == [False]
    assert store.guard.degraded() and store.guard.last_kind == "OOM (maxmemory reached)"
    assert not store.guard.down  # an error reply costs no time: reads go on
    assert not await store.probe()


async def test_the_enrichment_cache_shares_the_guard_and_says_what_failed() -> None:
    class Refusing:
        async def mget(self, keys: list[str]) -> list[Any]:
            raise OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")

        def register_script(self, script: str) -> None:
            return None

    client = Refusing()
    cache = EnrichmentCache(client)  # type: ignore[arg-type]
    assert cache.guard is guard_for(client) is CaptureStore(client).guard  # type: ignore[arg-type]
    with pytest.raises(CacheUnavailable, match=r"redis at redis: OOM \(maxmemory reached\)"):
        await cache.get_many([("pdl", "corp.example")], 1.0)


async def test_a_flood_of_failures_logs_a_line_or_two_and_names_no_password(
        caplog: pytest.LogCaptureFixture) -> None:
    # Review s18-redis F5: one WARNING per operation per request (347 lines for ~100 requests).
    client = aioredis.Redis.from_url("redis://:s3cret-pass@127.0.0.1:1/0", socket_connect_timeout=0.2)
    guard = guard_for(client, pause_s=0.0)  # never pausing: every call fails on its own
    store = CaptureStore(client, guard=guard)
    logger = logging.getLogger("connectors.redis_guard")
    limit = RepeatLimit()
    logger.addFilter(limit)  # what streams/resources.py puts on it
    try:
        with caplog.at_level(logging.WARNING, logger="connectors.redis_guard"):
            for _ in range(200):
                assert await store.mark_seen(["ld_1"]) == [False]
    finally:
        logger.removeFilter(limit)
        await client.aclose()
    lines = [r.getMessage() for r in caplog.records]
    assert 1 <= len(lines) <= 2
    assert "127.0.0.1:1" in lines[0] and "connection failed" in lines[0]
    assert "s3cret" not in caplog.text


async def test_a_lead_marked_by_this_same_capture_is_not_seen_before(real_redis: aioredis.Redis) -> None:  # noqa: F811
    # Review s18-redis F4: a retry (same Idempotency-Key, so the same capture id) whose stored answer
    # Redis had lost found the first attempt's "seen" marker and was answered "duplicate" for a lead
    # the client had never got an answer for.
    store = CaptureStore(real_redis, timeout_s=2.0)
    assert await store.mark_seen(["ld_1", "ld_2"], ["cap_a", "cap_b"]) == [False, False]
    assert await store.mark_seen(["ld_1", "ld_2"], ["cap_a", "cap_c"]) == [False, True]  # a retry; another capture
    assert await store.mark_seen(["ld_1"]) == [True]  # without a capture id (the Kafka feed): any marker counts
    assert await store.mark_seen(["ld_3"]) == [False]
    assert await store.mark_seen(["ld_3"], ["cap_d"]) == [True]


async def test_a_full_connection_pool_does_not_pause_a_healthy_redis(real_redis: aioredis.Redis) -> None:  # noqa: F811
    # 300 requests at once: redis-py's pool (100 connections by default) refused the 101st call with
    # MaxConnectionsError, a ConnectionError, and the guard went without a healthy Redis for 5 s.
    path = real_redis.connection_pool.connection_kwargs["path"]
    client = aioredis.Redis(unix_socket_path=path, max_connections=2)
    guard = RedisGuard(timeout_s=2.0, pause_s=5.0)
    try:
        answers = await asyncio.gather(*[guard.call("seen", lambda: client.blpop(["nothing"], timeout=0.2))
                                         for _ in range(6)], return_exceptions=True)
        assert answers.count(None) == 2  # two connections: two calls asked Redis (a BLPOP that timed out)
        assert {str(a) for a in answers if a is not None} == {"seen: the worker's Redis connection pool is full"}
        assert not guard.down
        assert await guard.call("seen", lambda: client.ping()) is True
    finally:
        await client.aclose()


async def test_the_workers_client_answers_a_burst_larger_than_its_pool(real_redis: aioredis.Redis) -> None:  # noqa: F811
    # Review s18-d: redis-py's pool refused the 101st call in flight ("Too many connections"), and
    # 27 of 300 requests at once on a healthy Redis kept no idempotency record. The worker's client
    # (a blocking pool) makes a call wait for a connection instead.
    from streams.resources import REDIS_CONNECTIONS, redis_client
    client = redis_client(f"unix://{real_redis.connection_pool.connection_kwargs['path']}")
    guard = RedisGuard(timeout_s=1.0)
    try:
        calls = 3 * REDIS_CONNECTIONS
        answers = await asyncio.gather(*[guard.call("remember", lambda i=i: client.set(f"k{i}", b"1", ex=60))
                                         for i in range(calls)], return_exceptions=True)
        assert [a for a in answers if a is not True] == []
        assert not guard.degraded()
    finally:
        await client.aclose()

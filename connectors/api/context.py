"""Everything a handler needs, built once per process and stored on the aiohttp app."""
from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from connectors.api.client_address import FORWARDED_FOR, TrustedProxies
from connectors.api.errors import ApiError
from connectors.api.ports import EnginePort
from connectors.auth import SCOPES, ApiKey, Keyring, Scope
from connectors.capture_store import CaptureStore
from connectors.lead_input import FieldError
from connectors.crm import EventsAuth
from connectors.providers import Providers
from connectors.rate_limit import FailedAuthLimit, RateLimiter
from ops.metrics import Metrics
from rules.qualification import DEFAULT_FRAMEWORKS, Framework
from sla.clock import Clock

__all__ = ["ApiContext", "CONTEXT", "Unauthenticated", "ScopeRefused", "AuthBlocked", "context", "authenticate",
           "enforce_rate_limit", "guard_failed_auth", "client_address", "read_json", "lead_owner", "read_object"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiContext:
    engine: EnginePort
    keyring: Keyring
    store: CaptureStore
    clock: Clock
    metrics: Metrics
    max_batch: int = 500
    webhook_allow_private: bool = False
    #: Hosts a form post may redirect the browser to (``?redirect=`` / ``_redirect``); empty: none.
    allowed_redirect_hosts: frozenset[str] = frozenset()
    #: Most data rows one CSV import may hold.
    max_import_rows: int = 100_000
    #: Requests per minute by caller: API key name, or ``provider:<name>``; absent: unlimited.
    rate_limits: Mapping[str, int] = field(default_factory=dict)
    #: Enforces ``rate_limits`` in Redis; ``None``: no limits at all.
    rate_limiter: RateLimiter | None = None
    #: Failed authentications per client address (``rate_limiter``'s Redis, this process's memory without it).
    failed_auth: FailedAuthLimit = field(default_factory=FailedAuthLimit)
    #: The lead providers whose webhooks this worker accepts.
    providers: Providers = Providers()
    #: Qualification frameworks by name, for ``POST /v1/leads/{id}/qualification``.
    frameworks: Mapping[str, Framework] = field(default_factory=lambda: dict(DEFAULT_FRAMEWORKS))
    #: The signing secret and timestamp tolerance of ``POST /v1/crm/events``; ``None``: not accepted here.
    crm_events: EventsAuth | None = None
    #: The config's ``routing.regions`` (name -> countries): a rep territory naming one is expanded.
    regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Proxies whose ``X-Forwarded-For`` names the client (``LEADFLOW_TRUSTED_PROXIES``); none: the peer is.
    trusted_proxies: TrustedProxies = TrustedProxies()


CONTEXT = web.AppKey("leadflow_api", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


class Unauthenticated(ApiError):
    """The ``401`` for a missing or unknown key; counted by ``guard_failed_auth`` when a key was sent."""

    def __init__(self) -> None:
        super().__init__(401, "unauthorized", "missing or unknown API key; send 'Authorization: Bearer <key>'",
                         headers={"WWW-Authenticate": 'Bearer realm="leadflow"'})


class ScopeRefused(ApiError):
    """The ``403`` for a known key that lacks the route's scope (not a failed authentication)."""

    def __init__(self, caller: ApiKey, scope: Scope) -> None:
        super().__init__(403, "forbidden", f"API key {caller.name!r} lacks the {scope!r} scope this request needs "
                         f"(its scopes: {', '.join(s for s in SCOPES if caller.allows(s)) or 'none'})",
                         headers={"WWW-Authenticate": f'Bearer realm="leadflow", error="insufficient_scope", '
                                                      f'scope="{scope}"'})


class AuthBlocked(ApiError):
    """The ``429`` for a client address over its failed authentications (``guard_failed_auth``)."""

    def __init__(self, per_minute: int, wait_s: int) -> None:
        super().__init__(429, "rate_limited", f"more than {per_minute} failed authentications per minute from this "
                         f"address; retry in {wait_s} s", headers={"Retry-After": str(wait_s)})


def authenticate(request: web.Request, scope: Scope) -> ApiKey:
    """The caller, who must hold ``scope``: a ``401`` without a known key, a ``403`` naming the scope.

    Every route names its scope (connectors/auth.py, and ``_SCOPES`` in openapi.py)."""
    caller = context(request).keyring.authenticate(request.headers.get("Authorization"))
    if caller is None:
        raise Unauthenticated()
    if not caller.allows(scope):
        raise ScopeRefused(caller, scope)
    return caller


async def guard_failed_auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                            ) -> web.StreamResponse:
    """Run ``handler``, holding the client's failed authentications to ``ctx.failed_auth``, and count
    each refusal in ``leadflow_api_auth_failures_total`` by reason.

    Only requests that send an ``Authorization`` header count and can be refused: one without cannot
    guess a key, and the provider and CRM webhooks are authenticated by their signatures instead.
    A right key is answered only once Redis says its address is not over the limit on any worker
    (``FailedAuthLimit.shared_block``); a wrong one is refused by its own count. The client is
    ``client_address``: the connection's peer, or behind a trusted proxy the address it forwarded.
    """
    ctx = context(request)
    header = request.headers.get("Authorization")
    try:
        if header is None:
            return await handler(request)
        return await _held(ctx, request, header, handler)
    except Unauthenticated:
        ctx.metrics.auth_failures.labels("missing_key" if header is None else "invalid_key").inc()
        raise
    except ScopeRefused:
        ctx.metrics.auth_failures.labels("scope_refused").inc()
        raise
    except AuthBlocked:
        ctx.metrics.auth_failures.labels("blocked").inc()
        raise


async def _held(ctx: ApiContext, request: web.Request, header: str,
                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    address = client_address(request)
    wait = ctx.failed_auth.blocked_for(address, ctx.clock.now())
    if wait is None and ctx.keyring.authenticate(header) is not None:
        wait = await ctx.failed_auth.shared_block(address, ctx.clock.now(), ctx.rate_limiter)
    if wait is None:
        try:
            return await handler(request)
        except Unauthenticated:
            decision = await ctx.failed_auth.failed(address, ctx.clock.now(), ctx.rate_limiter)
            if decision.allowed:
                raise
            wait = decision.retry_after_s
    raise AuthBlocked(ctx.failed_auth.per_minute, wait)


def client_address(request: web.Request) -> str:
    """The address the API keys a client by: the connection's peer, or, when the peer is one of
    ``ctx.trusted_proxies``, the client address they forwarded in ``X-Forwarded-For``
    (``TrustedProxies.client``; a header from any other peer is ignored: anyone can write one).
    An IPv6 client is keyed by its /64, which one host may hold whole."""
    proxies = context(request).trusted_proxies
    remote = request.remote
    if proxies:
        remote = proxies.client(remote, request.headers.getall(FORWARDED_FOR, []))
    return _client(remote)


def _client(remote: str | None) -> str:
    try:
        ip = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or "unknown"  # a unix socket, or a test transport
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


async def enforce_rate_limit(request: web.Request, subject: str) -> None:
    """Count one request for ``subject``; a ``429`` with ``Retry-After`` when over its limit."""
    ctx = context(request)
    limit = ctx.rate_limits.get(subject)
    if limit is None or ctx.rate_limiter is None:
        return
    decision = await ctx.rate_limiter.acquire(subject, limit, ctx.clock.now())
    if not decision.allowed:
        raise ApiError(429, "rate_limited",
                       f"more than {limit} requests per minute for {subject}; retry in {decision.retry_after_s} s",
                       headers={"Retry-After": str(decision.retry_after_s)})


async def read_json(request: web.Request) -> object:
    """The request's JSON body, or a 4xx naming the problem (size limits come from the app)."""
    # aiohttp reports a missing header as application/octet-stream; treat it like an empty one.
    ctype = request.content_type if request.headers.get("Content-Type") else ""
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"expected Content-Type application/json, got {ctype}")
    body = await request.read()
    if not body.strip():
        raise ApiError(400, "malformed_json", "the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc.msg} at position {exc.pos}") from None


async def lead_owner(request: web.Request, scope: Scope) -> tuple[ApiContext, str, web.Response | None]:
    """Authenticate a ``/v1/leads/{lead_id}/...`` request for ``scope`` and relay it to the lead's owner.

    Returns the context, the lead id, and the owner's answer when the request was relayed
    (the handler returns it as is); ``None`` means this worker owns the lead.
    """
    authenticate(request, scope)
    ctx = context(request)
    lead_id = request.match_info["lead_id"]
    return ctx, lead_id, await ctx.engine.forward_to_owner("lead", lead_id, request)


async def read_object(request: web.Request, allowed: frozenset[str]) -> tuple[dict[str, Any], list[FieldError]]:
    """The JSON object body, and an ``unknown field`` error for each key not in ``allowed``."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid", "expected a JSON object", [FieldError("(body)", "expected an object")])
    return body, [FieldError(k, "unknown field") for k in sorted(set(body) - allowed)]

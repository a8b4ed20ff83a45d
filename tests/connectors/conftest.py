"""Fakes for the HTTP API tests: an in-memory engine and Redis, lead/team states, and a client factory."""
from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from connectors.api import ApiContext, mount_api
from connectors.api.ports import Entity, Readiness
from connectors.auth import Keyring
from connectors import capture_store
from connectors.capture_store import CaptureStore
from connectors.lead_input import validate_lead
from leadflow.errors import TransientError
from ops.metrics import Metrics
from rules.account_book import AccountCommand
from rules.accounts import Account
from rules.commands import (
    Candidate,
    CaptureLead,
    DispositionLead,
    LeadAssigned,
    LeadCommand,
    RepCommand,
    RepProfile,
    RoutingDecision,
)
from rules.lead import LeadPolicy, LeadState
from rules.lead import apply as apply_to_lead
from rules.reps import RepEntry
from rules.roster import RepState
from rules.team import Lane, TeamState
from sla.clock import FakeClock

__all__ = [
    "AUTH",
    "Client",
    "KEYS",
    "REP_SECRET",
    "build_app",
    "ClientFactory",
    "DownRedis",
    "FakeEngine",
    "FakeRedis",
    "lead_state",
    "team_state",
]

#: API key name -> key; the name is the default lead source.
KEYS = {"web-form": "key-web-form-0123456789", "partner": "key-partner-0123456789"}
AUTH = {"Authorization": f"Bearer {KEYS['web-form']}"}
REP_SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


# --- the engine ------------------------------------------------------------------------


@dataclass
class FakeEngine:
    """An ``EnginePort`` that keeps what it was sent and serves the state a test puts in."""

    leads: dict[str, LeadState] = field(default_factory=dict)
    teams: dict[str, TeamState] = field(default_factory=dict)
    reps: dict[str, RepEntry] = field(default_factory=dict)
    captured: list[tuple[str, bytes]] = field(default_factory=list)
    lead_commands: list[tuple[str, LeadCommand]] = field(default_factory=list)
    rep_commands: list[tuple[str, RepCommand]] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    account_commands: list[tuple[str, AccountCommand]] = field(default_factory=list)
    forwarded: list[tuple[Entity, str]] = field(default_factory=list)
    ready: Readiness = Readiness(True, "3 partition(s) assigned, tables recovered")
    capture_error: TransientError | None = None

    async def capture(self, records: list[tuple[str, bytes]]) -> None:
        if self.capture_error is not None:
            raise self.capture_error
        self.captured.extend(records)

    async def send_lead_command(self, lead_id: str, command: LeadCommand) -> None:
        self.lead_commands.append((lead_id, command))

    async def send_rep_command(self, rep_id: str, command: RepCommand) -> None:
        self.rep_commands.append((rep_id, command))

    async def send_account_command(self, domain: str, command: AccountCommand) -> None:
        self.account_commands.append((domain, command))

    def account(self, domain: str) -> Account | None:
        return self.accounts.get(domain)

    async def forward_to_owner(self, entity: Entity, key: str, request: web.Request) -> web.Response | None:
        self.forwarded.append((entity, key))
        return None  # this worker owns everything

    def lead(self, lead_id: str) -> LeadState | None:
        return self.leads.get(lead_id)

    def team_sla(self, team_id: str) -> dict[str, dict[str, object]]:
        return {"minute": {"arrival": 1, "breach": 0, "compliance": None}, "hour": {"arrival": 1}}

    def team(self, team_id: str) -> TeamState | None:
        return self.teams.get(team_id)

    def rep(self, rep_id: str) -> RepEntry | None:
        return self.reps.get(rep_id)

    def readiness(self) -> Readiness:
        return self.ready


# --- Redis -----------------------------------------------------------------------------


class FakeRedis:
    """The slice of ``redis.asyncio.Redis`` that ``CaptureStore`` uses, in memory (TTLs ignored)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def set(self, key: str, value: bytes, *, ex: int | None = None, nx: bool = False) -> bool | None:
        if nx and key in self.data:
            return None  # what redis answers when NX refuses
        self.data[key] = value
        return True

    async def delete(self, *keys: str) -> int:
        return sum(1 for key in keys if self.data.pop(key, None) is not None)

    def pipeline(self, transaction: bool = True) -> _FakePipeline:
        return _FakePipeline(self)

    def register_script(self, script: str) -> Callable[..., Awaitable[Any]]:
        """redis-py's ``register_script`` for ``CaptureStore``'s idempotency scripts: each done here
        in Python, read then write with no await between that another request could run in, as
        the Lua is atomic in Redis (tests/integration/test_idempotency.py runs the Lua itself)."""
        impl = {capture_store._CLAIM: self._claim_script, capture_store._REMEMBER: self._remember_script,
                capture_store._RELEASE: self._release_script}[script]

        async def call(keys: list[str], args: list[Any]) -> Any:
            return await impl(keys[0], *args)
        return call

    async def _claim_script(self, name: str, pending: bytes, over_doubt: bytes, fingerprint: str, ttl: int) -> bytes | None:
        raw = await self.get(name)
        if raw is not None:
            cur = orjson.loads(raw)
            if not (cur.get("unconfirmed") is True and "pending" not in cur and cur.get("fingerprint") == fingerprint):
                return raw
            pending = over_doubt
        await self.set(name, pending, ex=ttl)
        return None

    async def _remember_script(self, name: str, token: str, value: bytes, ttl: int) -> int:
        raw = await self.get(name)
        if raw is not None and orjson.loads(raw).get("pending") != token:
            return 0
        await self.set(name, value, ex=ttl)
        return 1

    async def _release_script(self, name: str, token: str, record: bytes, ttl: int, in_doubt: str) -> int:
        raw = await self.get(name)
        if raw is None:
            if in_doubt == "1":
                await self.set(name, record, ex=ttl)
            return 0
        cur = orjson.loads(raw)
        if cur.get("pending") != token:
            return 0
        if in_doubt == "1" or cur.get("unconfirmed") is True:
            await self.set(name, record, ex=ttl)
        else:
            await self.delete(name)
        return 1

    async def ping(self) -> bool:
        return True


class _FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self._redis = redis
        self._queued: list[tuple[str, bytes | None, dict[str, Any]]] = []  # a value None: a GET

    async def __aenter__(self) -> _FakePipeline:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._queued.clear()

    def set(self, key: str, value: bytes, **options: Any) -> _FakePipeline:
        self._queued.append((key, value, options))
        return self

    def get(self, key: str) -> _FakePipeline:
        self._queued.append((key, None, {}))
        return self

    async def execute(self) -> list[bool | bytes | None]:
        return [await (self._redis.get(key) if value is None else self._redis.set(key, value, **options))
                for key, value, options in self._queued]


class DownRedis(FakeRedis):
    """Redis that is not there: every round trip fails the way redis-py fails when it cannot connect."""

    async def get(self, key: str) -> bytes | None:
        raise RedisConnectionError("Connection refused")

    async def set(self, key: str, value: bytes, *, ex: int | None = None, nx: bool = False) -> bool | None:
        raise RedisConnectionError("Connection refused")

    async def delete(self, *keys: str) -> int:
        raise RedisConnectionError("Connection refused")

    async def ping(self) -> bool:
        raise RedisConnectionError("Connection refused")


# --- state a test puts in the engine ------------------------------------------------------


def lead_state(email: str, at: datetime, *, assigned_to: str | None = None, closed: bool = False) -> LeadState:
    """A lead built by the real transitions: captured, optionally assigned, optionally dispositioned."""
    valid = validate_lead({"email": email, "country": "ES"}, default_source="web-form", channel="api")
    policy = LeadPolicy()
    state = apply_to_lead(None, CaptureLead(lead_id=valid.lead_id, capture_id="cap-1", captured_at=at,
                                            lead=valid.lead), at, policy).state
    assert state is not None
    if assigned_to is not None:
        decision = RoutingDecision(
            team_id=state.team_id, strategy="weighted_round_robin", winner=assigned_to, reason="most credit",
            candidates=(Candidate(rep_id=assigned_to, eligible=True, open_leads=0, capacity=5),
                        Candidate(rep_id="rep-off", eligible=False, reasons=("offline",))),
            decided_at=at)
        state = apply_to_lead(state, LeadAssigned(
            lead_id=state.lead_id, route_id=state.route_id, team_id=state.team_id, rep_id=assigned_to,
            rep_name="Ana", webhook_url="https://hooks.example.com/a", webhook_secret=REP_SECRET,
            decision=decision, assigned_at=at), at, policy).state
    if closed:
        state = apply_to_lead(state, DispositionLead(lead_id=valid.lead_id, status="nurture", reason="later",
                                                     rep_id=None, at=at), at, policy).state
    assert state is not None
    return state


def team_state(team_id: str, at: datetime) -> TeamState:
    """A team with one available rep holding a lead (with a webhook secret) and one offline rep."""
    ana = RepProfile(rep_id="rep-ana", team_id=team_id, name="Ana", capacity=3, languages=("es",),
                     webhook_url="https://hooks.example.com/ana", webhook_secret=REP_SECRET)
    bo = RepProfile(rep_id="rep-bo", team_id=team_id, name="Bo")
    return TeamState(team_id=team_id, lanes=(Lane(priority=2, head=4, tail=6),), routed_total=9, reps={
        "rep-ana": RepState(profile=ana, presence="available", assigned_total=9, last_assigned_at=at, load=1),
        "rep-bo": RepState(profile=bo, presence="offline"),
    })


# --- fixtures ---------------------------------------------------------------------------

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def build_app(engine: FakeEngine, metrics: Metrics, clock: FakeClock, *, redis: FakeRedis | None = None,
              client_max_size: int = 64 * 1024, max_batch: int = 10, **context: Any) -> web.Application:
    """The API exactly as a worker mounts it, over the fakes; ``context`` sets other ApiContext fields."""
    store = CaptureStore(redis or FakeRedis(),  # type: ignore[arg-type]
                         on_degraded=lambda op: metrics.redis_degraded.labels(op).inc())
    ctx = ApiContext(engine=engine, keyring=Keyring({}, KEYS.items()), store=store, clock=clock,
                     metrics=metrics, max_batch=max_batch, **context)
    app = web.Application(client_max_size=client_max_size)
    mount_api(app, ctx)
    return app


@pytest.fixture
async def make_client(engine: FakeEngine, metrics: Metrics, clock: FakeClock) -> AsyncIterator[ClientFactory]:
    """Start the API on a local port with the given options; every client is closed afterwards."""
    clients: list[Client] = []

    async def make(**options: Any) -> Client:
        client = TestClient(TestServer(build_app(engine, metrics, clock, **options)))
        clients.append(client)
        await client.start_server()
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> Client:
    return await make_client()

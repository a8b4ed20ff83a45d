"""Fuzz the HTTP API from its own OpenAPI document (schemathesis): no 5xx, every rejection a clear 4xx.

Every documented operation gets schemathesis' positive cases (valid per the document) and
negative ones (each breaking the document somewhere: wrong types, missing fields, bad enums,
odd strings), sent over real HTTP to the API as a worker mounts it, over the in-memory
engine of ``conftest.py`` (which holds one lead and one team, so some lookups hit). Checks:

* never a 5xx (``not_a_server_error``), never a status the document does not list;
* every 4xx is JSON in the documented error shape, ``{"error": {"code", "message", ...}}``,
  and every field it names is a string with a reason.

``LEADFLOW_FUZZ_EXAMPLES`` (default 50 per operation, plus the coverage phase) scales the run; the total
number of cases sent is checked and printed by the last test.
"""
from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from connectors.api.openapi import openapi_document
from connectors.providers import FacebookSettings, Providers, TypeformSettings
from ops.metrics import Metrics
from sla.clock import FakeClock
from tests.connectors.conftest import AUTH, FakeEngine, build_app, lead_state, team_state
from tests.integration.harness import free_port

EXAMPLES = int(os.environ.get("LEADFLOW_FUZZ_EXAMPLES", "50"))
SCHEMA = schemathesis.openapi.from_dict(openapi_document())
SCHEMA.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                max_examples=EXAMPLES, deterministic=True)
SENT: Counter[str] = Counter()


@schemathesis.serializer("text/csv", "application/csv")
def _csv(ctx: Any, value: Any) -> bytes:
    """The CSV import body is a string in the document; negative cases may make it anything."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else orjson.dumps(value, default=repr)


STATUSES: Counter[int] = Counter()


class _Server:
    """The API on a local port, served by its own event loop in a thread (schemathesis calls are blocking)."""

    def __init__(self) -> None:
        at = datetime(2026, 5, 4, 10, 0, tzinfo=timezone.utc)
        engine = FakeEngine()
        lead = lead_state("maria@northwind.example", at, assigned_to="rep-ana")
        engine.leads[lead.lead_id] = lead
        engine.teams["sdr"] = team_state("sdr", at)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The providers configured, as in production: an unconfigured one answers 503 (so that the
        # provider retries), which is no answer to fuzz. Unsigned requests stop at the signature.
        providers = Providers(facebook=FacebookSettings(app_secret="fuzz-app-secret", verify_token="fuzz-verify"),
                              typeform=TypeformSettings(secret="fuzz-typeform-secret"))
        self._app = build_app(engine, Metrics(CollectorRegistry()), FakeClock(), client_max_size=1_048_576,
                              max_batch=20, providers=providers)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fuzz-api", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> _Server:
        self._thread.start()
        assert self._ready.wait(10), "the API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with _Server() as server:
        yield server.url


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _error_shape(response: requests.Response) -> str | None:
    """What is wrong with a 4xx answer, or ``None`` when it is a clear, documented error."""
    try:
        body: Any = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str) or not error.get("message"):
        return f"not the error shape: {body!r:.300}"
    for item in error.get("fields", []):
        if not (isinstance(item, dict) and isinstance(item.get("field"), str) and item.get("reason")):
            return f"a field error without field and reason: {item!r}"
    return None


@SCHEMA.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_api_answers_every_generated_request_without_a_5xx(case: Any, api_url: str,
                                                               http: requests.Session) -> None:
    headers = dict(AUTH)
    response = case.call(base_url=api_url, session=http, headers=headers, timeout=10)
    SENT[f"{case.method.upper()} {case.path}"] += 1
    STATUSES[response.status_code] += 1
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance], headers=headers)
    if 400 <= response.status_code < 500:
        problem = _error_shape(response)
        assert problem is None, f"{case.method} {case.path} -> {response.status_code}: {problem}"


def test_thousands_of_cases_were_sent() -> None:
    # Runs after the fuzz above (file order): it covered every operation, thousands of times.
    operations = {f"{op.ok().method.upper()} {op.ok().path}" for op in SCHEMA.get_all_operations()}
    assert set(SENT) >= operations, sorted(operations - set(SENT))
    total = sum(SENT.values())
    assert total >= 1000 if EXAMPLES >= 50 else total > 0
    print(f"\nfuzz: {total} requests over {len(SENT)} (method, path) pairs; statuses {dict(sorted(STATUSES.items()))}")

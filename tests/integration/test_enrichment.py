"""HTTP enrichment on the real stack (Kafka + Redis) against a People Data Labs stand-in.

* the provider's fields appear in ``GET /v1/leads/{id}`` and in the rep's ``lead.assigned``;
  the same company again is answered from the Redis cache, with no second call;
* a provider slower than the budget does not hold routing past the budget: the lead is routed
  without its answer, and the timeout is counted;
* with Redis down the lookups go straight to the provider (degraded, counted) and leads are routed.
"""
from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.connectors.pdl_standin import PdlStandIn
from tests.integration.harness import Receiver, SECRET, Worker, WorkerSpec, eventually, free_port

KEY_ENV = "LEADFLOW_IT_PDL_KEY"
KEY = "it-pdl-key-do-not-log-7f3a9c"

CONFIG = """
enrichment:
  budget: {budget}
  providers:
    - {{name: pdl, kind: pdl_company, url: "{pdl}/v5/company/enrich", api_key_env: {key_env}}}
routing:
  default_team: sdr
teams:
  - id: sdr
    reps:
      - {{id: ana, capacity: 20, webhook_url: "{hooks}/hooks/ana", webhook_secret: "{secret}"}}
"""


class RedisDownSpec(WorkerSpec):
    """A deployment whose Redis is not there: nothing listens on its port."""

    def env(self, port: int, data_dir: Path) -> dict[str, str]:
        return {**super().env(port, data_dir), "LEADFLOW_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


@pytest.fixture
async def pdl(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PdlStandIn]:
    monkeypatch.setenv(KEY_ENV, KEY)  # the worker inherits the environment: the key never is in the file
    standin = PdlStandIn(KEY)
    await standin.start()
    yield standin
    await standin.stop()


def _start(spec: WorkerSpec, pdl: PdlStandIn, receiver: Receiver, budget: str) -> Worker:
    spec.config_yaml = CONFIG.format(budget=budget, pdl=pdl.url, key_env=KEY_ENV, hooks=receiver.url, secret=SECRET)
    receiver.secrets["ana"] = SECRET
    return Worker(spec)


async def _post(api: aiohttp.ClientSession, worker: Worker, lead: dict[str, Any]) -> str:
    async with api.post(f"{worker.url}/v1/leads", json=lead) as r:
        assert r.status == 202, await r.text()
        return str((await r.json())["lead_id"])


async def _assigned(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any] | None:
    async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
        lead = await r.json() if r.status == 200 else None
    return lead if lead and lead["routing"] == "assigned" else None


async def _metric(worker: Worker, pattern: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if re.match(pattern, line))


def _routing_delay_s(lead: dict[str, Any]) -> float:
    captured = datetime.fromisoformat(lead["captured_at"])
    return (datetime.fromisoformat(lead["assignment"]["assigned_at"]) - captured).total_seconds()


@pytest.mark.timeout(180)
async def test_provider_fields_reach_the_lead_and_the_rep_and_the_cache_spares_a_second_call(
    spec: WorkerSpec, pdl: PdlStandIn, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    worker = _start(spec, pdl, receiver, budget="3s")
    try:
        await worker.wait_ready()
        lead_id = await _post(api, worker, {"email": "maria.lopez@northwind.example", "title": "VP Sales"})
        lead = await eventually(lambda: _assigned(api, worker, lead_id), timeout=45, what="the lead assigned")
        provided = lead["enrichment"]["provided"]
        assert provided["company_name"] == "Northwind Traders" and provided["employees"] == "312"
        assert provided["industry"] == "wholesale" and provided["company_size"] == "201-500"
        assert any(r.startswith("pdl: ") for r in lead["enrichment"]["reasons"])
        webhook = (await eventually(lambda: receiver.for_lead(lead_id), what="the lead.assigned webhook"))[0]
        assert webhook["verified"] and webhook["payload"]["type"] == "lead.assigned"
        assert webhook["payload"]["data"]["enrichment"]["provided"]["company_name"] == "Northwind Traders"
        assert pdl.calls["northwind.example"] == 1 and set(pdl.seen_keys) == {KEY}

        # Another person at the same company, later: answered by the cache, the provider is not asked.
        second = await _post(api, worker, {"email": "li.wei@northwind.example"})
        again = await eventually(lambda: _assigned(api, worker, second), timeout=45, what="the second lead")
        assert again["enrichment"]["provided"]["company_name"] == "Northwind Traders"
        assert "pdl: " in "; ".join(again["enrichment"]["reasons"]) and "(cached)" in "; ".join(again["enrichment"]["reasons"])
        assert pdl.calls["northwind.example"] == 1
        assert await _metric(worker, r'leadflow_enrichment_lookups_total\{outcome="miss",provider="pdl"\}') == 1
        assert await _metric(worker, r'leadflow_enrichment_lookups_total\{outcome="hit",provider="pdl"\}') == 1
        logged = worker.log(2000)
        assert KEY not in logged and "maria.lopez" not in logged and "li.wei" not in logged
    finally:
        worker.stop()


@pytest.mark.timeout(180)
async def test_a_provider_slower_than_the_budget_does_not_hold_routing(
    spec: WorkerSpec, pdl: PdlStandIn, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    pdl.delay_s = 20.0  # far past the budget: only the budget may bound the wait
    worker = _start(spec, pdl, receiver, budget="500ms")
    try:
        await worker.wait_ready()
        started = time.monotonic()
        lead_id = await _post(api, worker, {"email": "sam@northwind.example"})
        lead = await eventually(lambda: _assigned(api, worker, lead_id), timeout=15, what="the lead assigned")
        waited = time.monotonic() - started
        assert waited < 10, f"routing took {waited:.1f} s with a 20 s provider and a 0.5 s budget"
        # capture → assignment inside the worker: the budget plus ordinary routing time.
        assert _routing_delay_s(lead) < 0.5 + 3.0, lead["assignment"]["assigned_at"]
        assert lead["enrichment"]["provided"] == {}
        assert "pdl: no answer within the time budget" in lead["enrichment"]["reasons"]
        assert pdl.calls["northwind.example"] == 1
        assert await _metric(worker, r'leadflow_enrichment_lookups_total\{outcome="timeout",provider="pdl"\}') == 1
    finally:
        worker.stop()


@pytest.mark.timeout(180)
async def test_with_redis_down_lookups_are_degraded_and_leads_still_routed(
    spec: WorkerSpec, pdl: PdlStandIn, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    down = RedisDownSpec(stack=spec.stack, tmp=spec.tmp)
    worker = _start(down, pdl, receiver, budget="3s")
    try:
        await worker.wait_ready()
        first = await _post(api, worker, {"email": "ana.p@northwind.example"})
        lead = await eventually(lambda: _assigned(api, worker, first), timeout=45, what="the lead assigned")
        assert lead["enrichment"]["provided"]["company_name"] == "Northwind Traders"
        second = await _post(api, worker, {"email": "bo@northwind.example"})
        await eventually(lambda: _assigned(api, worker, second), timeout=45, what="the second lead assigned")
        assert pdl.calls["northwind.example"] == 2  # no cache: each batch asks again
        assert await _metric(worker, r'leadflow_enrichment_lookups_total\{outcome="degraded",provider="pdl"\}') == 2
        assert await _metric(worker, r'leadflow_redis_degraded_total\{operation="enrichment_cache_get"\}') >= 2
    finally:
        worker.stop()


@pytest.mark.timeout(120)
async def test_a_missing_api_key_stops_the_worker_naming_the_variable(
    spec: WorkerSpec, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    spec.config_yaml = CONFIG.format(budget="1s", pdl="http://127.0.0.1:9", key_env=KEY_ENV, hooks=receiver.url,
                                     secret=SECRET)
    worker = Worker(spec)
    try:
        with pytest.raises(AssertionError, match=r"worker exited"):
            await worker.wait_ready(timeout=60)
        # Found by the start's environment check (streams/config.py check_env), at the line naming it.
        assert (f"{spec.app_id}.yaml:5: enrichment.providers[0].api_key_env: environment variable {KEY_ENV} "
                "is not set") in worker.log(200)
    finally:
        worker.stop()

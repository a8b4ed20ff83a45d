"""A CRM out of API quota, on the real stack: the upsert waits for it instead of being dead-lettered.

HubSpot answers 429 with ``"policyName": "DAILY"`` once a portal's daily allowance is spent.
Before, each such answer used up one of ``crm.retry_delays`` and the opportunity reached
``crm.outbox.dead`` as ``gave_up`` within the schedule; now the wait is not counted, and
``Retry-After`` sets when the next attempt goes.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ops.standins.crm import CrmStandIn
from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually

BANT = {"budget": "approved", "authority": "decision_maker", "need": "leads wait two days",
        "timeline": "this_quarter"}
PROFILE = {"title": "Director of Operations", "company": "Northwind", "country": "ES", "source": "webinar",
           "attributes": {"employees": "120", "industry": "logistics"}}
LIMITED = 7


@pytest.fixture
async def standin() -> AsyncIterator[CrmStandIn]:
    s = CrmStandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def worker(spec: WorkerSpec, standin: CrmStandIn, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Worker]:
    monkeypatch.setenv("IT_HS_TOKEN", standin.hubspot_token)
    # Two delays: without the quota rule the third refusal dead-letters the opportunity.
    spec.config_yaml = f"""
crm:
  adapter: hubspot
  hubspot: {{base_url: "{standin.url}", token_env: IT_HS_TOKEN}}
  timeout: 2s
  retry_delays: [0.3, 0.3]
"""
    w = Worker(spec)
    try:
        await w.wait_ready()
        yield w
    finally:
        w.stop()


async def _lead(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any]:
    async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
        return await r.json(content_type=None) if r.status == 200 else {}


async def test_a_daily_quota_refused_seven_times_is_waited_for_not_dead_lettered(
        worker: Worker, standin: CrmStandIn, receiver: Receiver, api: aiohttp.ClientSession) -> None:
    async with api.put(f"{worker.url}/v1/reps/ana", json={"team": "default", "name": "Ana", "capacity": 5,
                                                          "webhook_url": receiver.hook_url("ana")}) as r:
        assert r.status == 202, await r.text()
        receiver.secrets["ana"] = (await r.json(content_type=None))["webhook_secret"]
    async with api.post(f"{worker.url}/v1/leads", json={"email": "marta@northwind.example", **PROFILE}) as r:
        assert r.status == 202, await r.text()
        lead_id = str((await r.json(content_type=None))["lead_id"])
    await eventually(lambda: [d for d in receiver.for_lead(lead_id) if d["rep_id"] == "ana"], timeout=40,
                     what="Ana's lead.assigned")

    standin.hubspot_rate_limited, standin.hubspot_policy, standin.hubspot_retry_after = LIMITED, "DAILY", 1
    async with api.post(f"{worker.url}/v1/leads/{lead_id}/qualification",
                        json={"framework": "BANT", "answers": BANT, "rep_id": "ana"}) as r:
        assert r.status == 202, await r.text()

    async def outcome() -> dict[str, Any] | None:
        opportunity = (await _lead(api, worker, lead_id)).get("opportunity") or {}
        return opportunity if opportunity.get("synced_at") or opportunity.get("sync_failed") else None

    opportunity = await eventually(outcome, timeout=60, what="the opportunity synced (or dead-lettered)")
    assert not opportunity.get("sync_failed"), opportunity
    (stored,) = standin.stored("hubspot")
    assert opportunity["crm_id"] == stored.crm_id
    calls = [status for method, path, status in standin.requests if path.endswith("/batch/upsert")]
    assert calls == [429] * LIMITED + [200]

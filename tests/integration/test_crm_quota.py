"""A CRM out of API quota, on the real stack: the upsert waits for it instead of being dead-lettered;
and a dead letter re-sent with ``python -m ops.crm_resend`` once its cause is fixed.

HubSpot answers 429 with ``"policyName": "DAILY"`` once a portal's daily allowance is spent.
Before, each such answer used up one of ``crm.retry_delays`` and the opportunity reached
``crm.outbox.dead`` as ``gave_up`` within the schedule; now the wait is not counted, and
``Retry-After`` sets when the next attempt goes.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ops.standins.crm import CrmStandIn
from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, ready_worker

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
    async with ready_worker(spec) as w:
        yield w


async def _lead(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any]:
    async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
        return await r.json(content_type=None) if r.status == 200 else {}


async def _assigned_lead(worker: Worker, receiver: Receiver, api: aiohttp.ClientSession) -> str:
    async with api.put(f"{worker.url}/v1/reps/ana", json={"team": "default", "name": "Ana", "capacity": 5,
                                                          "webhook_url": receiver.hook_url("ana")}) as r:
        assert r.status == 202, await r.text()
        receiver.secrets["ana"] = (await r.json(content_type=None))["webhook_secret"]
    async with api.post(f"{worker.url}/v1/leads", json={"email": "marta@northwind.example", **PROFILE}) as r:
        assert r.status == 202, await r.text()
        lead_id = str((await r.json(content_type=None))["lead_id"])
    await eventually(lambda: [d for d in receiver.for_lead(lead_id) if d["rep_id"] == "ana"], timeout=40,
                     what="Ana's lead.assigned")
    return lead_id


async def _opportunity_outcome(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any] | None:
    opportunity = (await _lead(api, worker, lead_id)).get("opportunity") or {}
    return opportunity if opportunity.get("synced_at") or opportunity.get("sync_failed") else None


async def test_a_daily_quota_refused_seven_times_is_waited_for_not_dead_lettered(
        worker: Worker, standin: CrmStandIn, receiver: Receiver, api: aiohttp.ClientSession) -> None:
    lead_id = await _assigned_lead(worker, receiver, api)
    standin.hubspot_rate_limited, standin.hubspot_policy, standin.hubspot_retry_after = LIMITED, "DAILY", 1
    async with api.post(f"{worker.url}/v1/leads/{lead_id}/qualification",
                        json={"framework": "BANT", "answers": BANT, "rep_id": "ana"}) as r:
        assert r.status == 202, await r.text()

    opportunity = await eventually(lambda: _opportunity_outcome(api, worker, lead_id), timeout=60, what="the opportunity synced (or dead-lettered)")
    assert not opportunity.get("sync_failed"), opportunity
    (stored,) = standin.stored("hubspot")
    assert opportunity["crm_id"] == stored.crm_id
    calls = [status for method, path, status in standin.requests if path.endswith("/batch/upsert")]
    assert calls == [429] * LIMITED + [200]


def _resend(spec: WorkerSpec, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEADFLOW_BROKER": spec.stack.kafka_url, "LEADFLOW_TOPIC_PREFIX": f"{spec.app_id}."}
    done = subprocess.run([sys.executable, "-m", "ops.crm_resend", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


async def test_a_dead_letter_is_resent_once_its_cause_is_fixed(
        worker: Worker, spec: WorkerSpec, standin: CrmStandIn, receiver: Receiver, api: aiohttp.ClientSession) -> None:
    # The portal lacks the lead id property: HubSpot refuses the deal (207), a dead letter at once.
    standin.hubspot_properties.discard("leadflow_lead_id")
    lead_id = await _assigned_lead(worker, receiver, api)
    async with api.post(f"{worker.url}/v1/leads/{lead_id}/qualification",
                        json={"framework": "BANT", "answers": BANT, "rep_id": "ana"}) as r:
        assert r.status == 202, await r.text()
    failed = await eventually(lambda: _opportunity_outcome(api, worker, lead_id), timeout=60, what="the dead letter")
    assert "leadflow_lead_id: PROPERTY_DOESNT_EXIST" in failed["sync_failed"] and standin.stored("hubspot") == []

    # A dry run lists it and sends nothing.
    calls = len(standin.requests)
    listed = await asyncio.to_thread(_resend, spec, "--kind", "refused")
    assert failed["opportunity_id"] in listed.stdout and "dry run" in listed.stderr
    await asyncio.sleep(2)
    assert len(standin.requests) == calls

    # The property created, --send (twice: upserts are keyed, so still one deal).
    standin.hubspot_properties.add("leadflow_lead_id")
    for _ in range(2):
        sent = await asyncio.to_thread(_resend, spec, "--opportunity-id", failed["opportunity_id"], "--send")
        assert "sent 1 upsert(s)" in sent.stderr
    await eventually(lambda: standin.stored("hubspot") and standin.stored("hubspot")[0].writes == 2, timeout=60,
                     what="both re-sent upserts in the CRM")
    (stored,) = standin.stored("hubspot")
    assert stored.fields["leadflow_lead_id"] == lead_id
    synced = await eventually(lambda: _synced(api, worker, lead_id), timeout=30, what="the lead hears the CRM id")
    assert synced["crm_id"] == stored.crm_id


async def _synced(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any] | None:
    opportunity = (await _lead(api, worker, lead_id)).get("opportunity") or {}
    return opportunity if opportunity.get("synced_at") and opportunity.get("crm_id") else None

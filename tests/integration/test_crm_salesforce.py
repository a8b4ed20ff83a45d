"""Salesforce on the real stack, against a stand-in as strict as a Salesforce org.

* An org whose Opportunity lacks ``Leadflow_Lead_Id__c``: Salesforce answers ``INVALID_FIELD``;
  the upsert is dead-lettered at once (not retried through the schedule) with a reason that names
  the field and says what to do; once the field is created, ``python -m ops.crm_resend`` puts it
  back and the lead hears the CRM's id.
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


@pytest.fixture
async def standin() -> AsyncIterator[CrmStandIn]:
    s = CrmStandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def worker(spec: WorkerSpec, standin: CrmStandIn, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Worker]:
    monkeypatch.setenv("IT_SF_ID", standin.client_id)
    monkeypatch.setenv("IT_SF_SECRET", standin.client_secret)
    # Many delays: a refusal retried through them would take far longer than the test waits.
    spec.config_yaml = f"""
crm:
  adapter: salesforce
  salesforce: {{login_url: "{standin.url}", client_id_env: IT_SF_ID, client_secret_env: IT_SF_SECRET}}
  timeout: 2s
  retry_delays: [5, 10, 20, 40]
"""
    async with ready_worker(spec) as w:
        yield w


async def _lead(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any]:
    async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
        return await r.json(content_type=None) if r.status == 200 else {}


async def _sql_lead(worker: Worker, receiver: Receiver, api: aiohttp.ClientSession, email: str) -> str:
    async with api.put(f"{worker.url}/v1/reps/ana", json={"team": "default", "name": "Ana", "capacity": 5,
                                                          "webhook_url": receiver.hook_url("ana")}) as r:
        assert r.status == 202, await r.text()
        receiver.secrets["ana"] = (await r.json(content_type=None))["webhook_secret"]
    async with api.post(f"{worker.url}/v1/leads", json={"email": email, **PROFILE}) as r:
        assert r.status == 202, await r.text()
        lead_id = str((await r.json(content_type=None))["lead_id"])
    await eventually(lambda: [d for d in receiver.for_lead(lead_id) if d["rep_id"] == "ana"], timeout=40,
                     what="Ana's lead.assigned")
    async with api.post(f"{worker.url}/v1/leads/{lead_id}/qualification",
                        json={"framework": "BANT", "answers": BANT, "rep_id": "ana"}) as r:
        assert r.status == 202, await r.text()
    return lead_id


async def _outcome(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any] | None:
    opportunity = (await _lead(api, worker, lead_id)).get("opportunity") or {}
    return opportunity if opportunity.get("synced_at") or opportunity.get("sync_failed") else None


def _resend(spec: WorkerSpec, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEADFLOW_BROKER": spec.stack.kafka_url, "LEADFLOW_TOPIC_PREFIX": f"{spec.app_id}."}
    done = subprocess.run([sys.executable, "-m", "ops.crm_resend", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


async def test_an_org_without_the_lead_id_field_is_a_dead_letter_naming_it_until_the_field_is_created(
        worker: Worker, spec: WorkerSpec, standin: CrmStandIn, receiver: Receiver, api: aiohttp.ClientSession) -> None:
    standin.salesforce_custom_fields.discard("Leadflow_Lead_Id__c")
    lead_id = await _sql_lead(worker, receiver, api, "marta@northwind.example")

    failed = await eventually(lambda: _outcome(api, worker, lead_id), timeout=30, what="the dead letter")
    reason = failed.get("sync_failed") or ""
    assert "HTTP 400 INVALID_FIELD (Leadflow_Lead_Id__c:" in reason, failed
    assert "crm.salesforce.lead_id_field: null" in reason and "marta" not in reason
    # Refused once, not retried through the schedule (its first delay is 5 s).
    await asyncio.sleep(6)
    upserts = [status for method, path, status in standin.requests if method == "PATCH"]
    assert upserts == [400] and standin.stored("salesforce") == []

    # What the docs say: create the field, then put the dead letter back.
    standin.salesforce_custom_fields.add("Leadflow_Lead_Id__c")
    sent = await asyncio.to_thread(_resend, spec, "--reason-contains", "INVALID_FIELD", "--send")
    assert "sent 1 upsert(s)" in sent.stderr
    synced = await eventually(lambda: _synced(api, worker, lead_id), timeout=30, what="the lead hears the CRM id")
    (stored,) = standin.stored("salesforce")
    assert stored.fields["Leadflow_Lead_Id__c"] == lead_id and synced["crm_id"] == stored.crm_id


async def _synced(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any] | None:
    opportunity = (await _lead(api, worker, lead_id)).get("opportunity") or {}
    return opportunity if opportunity.get("synced_at") and opportunity.get("crm_id") else None

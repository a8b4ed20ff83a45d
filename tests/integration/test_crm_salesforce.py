"""Salesforce on the real stack, against a stand-in as strict as a Salesforce org.

* An org whose Opportunity lacks ``Leadflow_Lead_Id__c``: Salesforce answers ``INVALID_FIELD``;
  the upsert is dead-lettered at once (not retried through the schedule) with a reason that names
  the field and says what to do; once the field is created, ``python -m ops.crm_resend`` puts it
  back and the lead hears the CRM's id.
* The way back: the stand-in holds the Opportunity leadflow upserted; Salesforce's Outbound
  Message for it moving to Closed Lost (a SOAP envelope built from the stored record, as the org
  would send it) goes through ``ops.crm_relay`` to the worker's ``/v1/crm/events``: Salesforce is
  Acked, the lead is recycled with the loss reason, and the same message delivered again is Acked
  without a second event; one from another org reaches nobody.
"""
from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from ops.crm_relay import SalesforceRoute, relay_app
from ops.salesforce_outbound import ACK, SalesforceFields
from ops.standins.crm import CrmStandIn
from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, ready_worker

EVENTS_SECRET = "whsec_" + base64.b64encode(b"crm-events-secret-for-tests-32b!").decode()
ORG_ID = "00D5e000000KQ2eEAG"
SF_TOKEN = "it-outbound-token-0123456789abcdef"

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
    monkeypatch.setenv("IT_CRM_EVENTS", EVENTS_SECRET)
    # Many delays: a refusal retried through them would take far longer than the test waits.
    spec.config_yaml = f"""
crm:
  adapter: salesforce
  salesforce: {{login_url: "{standin.url}", client_id_env: IT_SF_ID, client_secret_env: IT_SF_SECRET}}
  timeout: 2s
  retry_delays: [5, 10, 20, 40]
  events_secret_env: IT_CRM_EVENTS
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


def _outbound_message(org_id: str, notification_id: str, record_id: str, fields: dict[str, Any]) -> bytes:
    """What the org sends for the flow's Outbound Message on an Opportunity (Salesforce's documented envelope)."""
    values = "".join(f"<sf:{name}>{value}</sf:{name}>" for name, value in fields.items())
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
            f'<OrganizationId>{org_id}</OrganizationId><ActionId>04k5e000000CaRkAAK</ActionId>'
            '<SessionId xsi:nil="true"/>'
            '<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/62.0/00D5e000000KQ2e</EnterpriseUrl>'
            '<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/62.0/00D5e000000KQ2e</PartnerUrl>'
            f'<Notification><Id>{notification_id}</Id>'
            '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f'<sf:Id>{record_id}</sf:Id>{values}</sObject></Notification>'
            '</notifications></soapenv:Body></soapenv:Envelope>').encode()


async def test_an_outbound_message_for_a_lost_opportunity_recycles_the_lead_through_the_relay(
        worker: Worker, standin: CrmStandIn, receiver: Receiver, api: aiohttp.ClientSession) -> None:
    lead_id = await _sql_lead(worker, receiver, api, "marta@northwind.example")
    await eventually(lambda: _synced(api, worker, lead_id), timeout=30, what="the opportunity in Salesforce")
    (stored,) = standin.stored("salesforce")

    # The sales rep closes it as lost in Salesforce; the flow's outbound message carries the chosen fields.
    fields = {"StageName": "Closed Lost", "IsClosed": "true", "IsWon": "false", "Amount": "48000.0",
              "Leadflow_Lead_Id__c": stored.fields["Leadflow_Lead_Id__c"],
              "Leadflow_Id__c": stored.key.split("=", 1)[1], "Loss_Reason__c": "No budget this year"}
    message = _outbound_message(ORG_ID, "04l5e00000Gx7QzAAJ", stored.crm_id, fields)
    route = SalesforceRoute(org_id=ORG_ID, token=SF_TOKEN, fields=SalesforceFields(loss_reason="Loss_Reason__c"))
    relay = TestServer(relay_app(events_secret=EVENTS_SECRET, leadflow_url=f"{worker.url}/v1/crm/events",
                                 salesforce=route))
    await relay.start_server()
    try:
        async with aiohttp.ClientSession() as salesforce:
            url = str(relay.make_url(f"/salesforce/{SF_TOKEN}"))
            headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
            async with salesforce.post(url, data=message, headers=headers) as r:
                assert r.status == 200 and await r.read() == ACK, await r.text()
            recycled = await eventually(lambda: _lead_if(api, worker, lead_id, "recycled"), timeout=30,
                                        what="the lead recycled")
            assert recycled["opportunity"]["lost_reason"] == "No budget this year"
            # Salesforce may deliver the same message again: Acked, nothing applied twice.
            async with salesforce.post(url, data=message, headers=headers) as r:
                assert r.status == 200 and await r.read() == ACK
            # Another org pointing at this endpoint reaches nobody.
            other = _outbound_message("00D000000000001AAA", "04l5e00000Gx7R0AAJ", stored.crm_id,
                                      {**fields, "StageName": "Closed Won", "IsWon": "true"})
            async with salesforce.post(url, data=other, headers=headers) as r:
                assert r.status == 403 and "OrganizationId 00D000000000001AAA" in await r.text()
    finally:
        await relay.close()
    await asyncio.sleep(1)
    view = await _lead(api, worker, lead_id)
    kinds = [e.get("kind") for e in view["timeline"]]
    assert view["status"] == "recycled" and kinds.count("opportunity_lost") == 1, kinds
    assert "opportunity_won" not in kinds, kinds


async def _lead_if(api: aiohttp.ClientSession, worker: Worker, lead_id: str, status: str) -> dict[str, Any] | None:
    view = await _lead(api, worker, lead_id)
    return view if view.get("status") == status else None

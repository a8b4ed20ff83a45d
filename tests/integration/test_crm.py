"""Capture → MQL → SQL → one opportunity in the CRM stand-in → lost flowing back, on the real stack.

The CRM (a Salesforce-compatible stand-in) is down when the lead converts: the upsert is retried
durably and lands once it is back; a replayed upsert on ``crm.outbox`` and a replayed
qualification never make a second opportunity; the AE gets one signed ``opportunity.created``;
a lost deal recycles the lead and lowers the next score in its segment; bad input changes nothing.
"""
from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

from ops.standins.crm import CrmStandIn
from rules.commands import UpsertOpportunity
from streams.codec import encode
from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, ready_worker

EVENTS_SECRET = "whsec_" + base64.b64encode(b"crm-events-secret-for-tests-32b!").decode()
AE_SECRET = "whsec_" + base64.b64encode(b"account-executive-secret-32byte!").decode()
BANT = {"budget": "approved", "authority": "decision_maker", "need": "leads wait two days",
        "timeline": "this_quarter"}
PROFILE = {"title": "Director of Operations", "company": "Northwind", "country": "ES", "source": "webinar",
           "attributes": {"employees": "120", "industry": "logistics"}}


async def _json(r: aiohttp.ClientResponse) -> Any:
    return await r.json(content_type=None)


@pytest.fixture
async def standin() -> AsyncIterator[CrmStandIn]:
    s = CrmStandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def worker(spec: WorkerSpec, standin: CrmStandIn, receiver: Receiver,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Worker]:
    monkeypatch.setenv("IT_SF_ID", standin.client_id)
    monkeypatch.setenv("IT_SF_SECRET", standin.client_secret)
    monkeypatch.setenv("IT_CRM_EVENTS", EVENTS_SECRET)
    monkeypatch.setenv("IT_AE_SECRET", AE_SECRET)
    receiver.secrets["ae"] = AE_SECRET
    spec.config_yaml = f"""
scoring:
  mql_threshold: 40
crm:
  adapter: salesforce
  salesforce: {{login_url: "{standin.url}", client_id_env: IT_SF_ID, client_secret_env: IT_SF_SECRET}}
  timeout: 2s
  retry_delays: [0.3, 0.3, 0.5, 1, 1, 2, 2, 2]
  events_secret_env: IT_CRM_EVENTS
  account_executives:
    "*": {{webhook_url: "{receiver.hook_url('ae')}", webhook_secret_env: IT_AE_SECRET}}
"""
    async with ready_worker(spec) as w:
        yield w


async def _lead(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any]:
    async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
        return await _json(r) if r.status == 200 else {}


async def _capture(api: aiohttp.ClientSession, worker: Worker, email: str) -> str:
    async with api.post(f"{worker.url}/v1/leads", json={"email": email, **PROFILE}) as r:
        assert r.status == 202, await r.text()
        return str((await _json(r))["lead_id"])


def _signed(body: dict[str, Any], msg_id: str, *, secret: str = EVENTS_SECRET,
            at: datetime | None = None) -> tuple[bytes, dict[str, str]]:
    raw = orjson.dumps(body)
    at = at or datetime.now(UTC)
    return raw, {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
                 "webhook-signature": Webhook(secret).sign(msg_id, at, raw.decode()),
                 "Content-Type": "application/json"}


async def test_capture_to_opportunity_and_a_lost_deal_back(worker: Worker, spec: WorkerSpec, standin: CrmStandIn,
                                                           receiver: Receiver, api: aiohttp.ClientSession) -> None:
    async with api.put(f"{worker.url}/v1/reps/ana", json={"team": "default", "name": "Ana", "capacity": 5,
                                                          "webhook_url": receiver.hook_url("ana")}) as r:
        assert r.status == 202, await r.text()
        receiver.secrets["ana"] = (await _json(r))["webhook_secret"]

    # Capture → scored → MQL → assigned to Ana, who sees the score in her webhook.
    lead_id = await _capture(api, worker, "marta@northwind.example")
    assigned = await eventually(lambda: [d for d in receiver.for_lead(lead_id) if d["rep_id"] == "ana"],
                                timeout=40, what="Ana's lead.assigned")
    score = assigned[0]["payload"]["data"]["score"]
    assert score["value"] >= 40 and score["reasons"] and assigned[0]["verified"]
    view = await _lead(api, worker, lead_id)
    assert view["status"] == "mql" and view["score"]["value"] == score["value"]

    # Bad input changes nothing.
    bad = [
        ("/v1/leads/ld_000000000000000000000000/qualification", {"framework": "BANT", "answers": BANT}, 404),
        (f"/v1/leads/{lead_id}/qualification", {"framework": "SPICED", "answers": BANT}, 422),
        (f"/v1/leads/{lead_id}/qualification", {"framework": "BANT", "answers": {"budget": 1}}, 422),
    ]
    for path, body, status in bad:
        async with api.post(f"{worker.url}{path}", json=body) as r:
            assert r.status == status, (path, await r.text())

    # The CRM is down when the SQL converts: retried durably, stored once it is back.
    standin.down = True
    async with api.post(f"{worker.url}/v1/leads/{lead_id}/qualification",
                        json={"framework": "BANT", "answers": BANT, "rep_id": "ana", "qualification_id": "q-1"}) as r:
        assert r.status == 202, await r.text()
        assert (await _json(r))["sql"] is True
    await eventually(lambda: len([x for x in standin.requests if x[2] == 503]) >= 2, timeout=30,
                     what="retries while the CRM is down")
    view = await _lead(api, worker, lead_id)
    assert view["status"] == "converted" and view["opportunity"]["synced_at"] is None
    standin.down = False
    await eventually(lambda: standin.stored("salesforce"), timeout=30, what="the opportunity in the CRM")
    synced = await eventually(lambda: _synced(api, worker, lead_id), timeout=30, what="the lead hears the CRM id")
    (stored,) = standin.stored("salesforce")
    assert synced["opportunity"]["crm_id"] == stored.crm_id and stored.key.startswith("Leadflow_Id__c=op_")
    assert "Score" in stored.fields["Description"] and stored.fields["StageName"] == "Qualification"
    # The lead id is in the CRM too, so the CRM's events (data.lead_id) can name the lead.
    assert stored.fields["Leadflow_Lead_Id__c"] == lead_id

    # The AE hears once, signed, with the history.
    ae = await eventually(lambda: [d for d in receiver.for_lead(lead_id) if d["rep_id"] == "ae"], timeout=30,
                          what="the AE's opportunity.created")
    assert ae[0]["verified"] and ae[0]["payload"]["type"] == "opportunity.created"
    assert ae[0]["payload"]["data"]["qualification"]["answers"] == BANT and ae[0]["payload"]["data"]["timeline"]

    # Replays: the same qualification again, and the upsert itself replayed on crm.outbox.
    async with api.post(f"{worker.url}/v1/leads/{lead_id}/qualification",
                        json={"framework": "BANT", "answers": BANT, "qualification_id": "q-1"}) as r:
        assert r.status == 409  # converted: no more answers
    producer = AIOKafkaProducer(bootstrap_servers=spec.stack.kafka_url.removeprefix("kafka://"))
    await producer.start()
    try:
        replay = UpsertOpportunity(opportunity_id=synced["opportunity"]["opportunity_id"], lead_id=lead_id,
                                   payload={"name": "replayed", "created_at": "2026-03-02T10:00:00+00:00"},
                                   created_at=datetime.now(UTC))
        for _ in range(2):
            await producer.send_and_wait(f"{spec.app_id}.crm.outbox", key=lead_id.encode(), value=encode(replay))
    finally:
        await producer.stop()
    await eventually(lambda: standin.stored("salesforce")[0].writes >= 3, timeout=30, what="the replayed upserts")
    await asyncio.sleep(1.0)
    assert len(standin.stored("salesforce")) == 1
    assert len([d for d in receiver.for_lead(lead_id) if d["rep_id"] == "ae"]) == 1

    # Signed CRM events: bad ones refused, the lost one recycles the lead.
    lost = {"type": "opportunity.lost", "data": {"lead_id": lead_id, "reason": "no budget"}}
    for raw, headers, status in (
        (*_signed(lost, "msg-bad", secret=AE_SECRET), 401),
        (*_signed(lost, "msg-stale", at=datetime.now(UTC) - timedelta(minutes=10)), 401),
        (*_signed({"type": "opportunity.won", "data": {"lead_id": lead_id, "amount": "lots"}}, "msg-type"), 422),
        (*_signed({**lost, "data": {**lost["data"], "lead_id": "ld_000000000000000000000000"}}, "msg-x"), 404),
    ):
        async with api.post(f"{worker.url}/v1/crm/events", data=raw, headers=headers) as r:
            assert r.status == status, await r.text()
    assert (await _lead(api, worker, lead_id))["status"] == "converted"
    raw, headers = _signed(lost, "msg-lost-1")
    async with api.post(f"{worker.url}/v1/crm/events", data=raw, headers=headers) as r:
        assert r.status == 202, await r.text()
    recycled = await eventually(lambda: _status(api, worker, lead_id, "recycled"), timeout=30, what="recycled")
    assert recycled["opportunity"]["lost_reason"] == "no budget"

    # The loss taught the board: a new lead of the same segment scores lower, and says why.
    await asyncio.sleep(1.5)
    twin = await _capture(api, worker, "jon@southwind.example")
    twin_view = await eventually(lambda: _scored(api, worker, twin), timeout=30, what="the twin's score")
    assert twin_view["score"]["outcomes"] < 0, twin_view["score"]
    assert twin_view["score"]["value"] < score["value"]
    assert any("segment mid/logistics win rate" in r for r in twin_view["score"]["reasons"])


async def _synced(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any] | None:
    view = await _lead(api, worker, lead_id)
    return view if view.get("opportunity") and view["opportunity"].get("synced_at") else None


async def _status(api: aiohttp.ClientSession, worker: Worker, lead_id: str, status: str) -> dict[str, Any] | None:
    view = await _lead(api, worker, lead_id)
    return view if view.get("status") == status else None


async def _scored(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any] | None:
    view = await _lead(api, worker, lead_id)
    return view if view.get("score") else None

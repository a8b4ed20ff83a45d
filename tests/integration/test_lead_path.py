"""One lead from capture to a signed SDR webhook, and a team's capacity and queue, on the real stack."""
from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook

from tests.integration.harness import Receiver, SECRET, Worker, WorkerSpec, eventually, ready_worker


async def _json(response: aiohttp.ClientResponse) -> Any:
    return await response.json(content_type=None)


async def _get(api: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with api.get(url) as r:
        return r.status, await _json(r)


ROUTING_RULES = """
routing:
  rules:
    - {team: inbound, sources: [inbound]}
"""


@pytest.fixture
async def worker(spec: WorkerSpec) -> AsyncIterator[Worker]:
    spec.config_yaml = ROUTING_RULES
    async with ready_worker(spec) as w:
        yield w


async def test_a_posted_lead_reaches_the_reps_receiver_signed(
    worker: Worker, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    # A rep created over the API gets a generated secret, returned once.
    async with api.put(f"{worker.url}/v1/reps/ana", json={
        "team": "inbound", "name": "Ana", "capacity": 3, "webhook_url": receiver.hook_url("ana"),
    }) as r:
        assert r.status == 202, await r.text()
        created = await _json(r)
    secret = created["webhook_secret"]
    assert secret.startswith("whsec_")
    receiver.secrets["ana"] = secret
    await eventually(lambda: _team_has(api, worker, "inbound", "ana"), what="ana in team inbound")

    # The routing rule sends source "inbound" to team inbound (the default team is "default").
    async with api.post(f"{worker.url}/v1/leads", json={
        "email": "Maria.Lopez@Northwind.example", "first_name": "María", "company": "Northwind",
        "title": "VP Sales", "country": "ES", "source": "inbound",
    }) as r:
        assert r.status == 202, await r.text()
        accepted = await _json(r)
    assert accepted["status"] == "accepted"
    lead_id = accepted["lead_id"]

    deliveries = await eventually(lambda: receiver.for_lead(lead_id), timeout=30, what="the webhook")
    delivery = deliveries[0]
    assert delivery["verified"], "the standardwebhooks library must accept our signature"
    # Verify again explicitly, from the raw bytes and headers, with the independent library.
    Webhook(secret).verify(delivery["body"], {k.lower(): v for k, v in delivery["headers"].items()})
    body = delivery["payload"]
    assert body["type"] == "lead.assigned"
    assert body["data"]["rep"]["rep_id"] == "ana"
    assert body["data"]["lead"]["email"] == "maria.lopez@northwind.example"
    assert body["data"]["why"]["reason"]
    assert body["data"]["sla_deadline"]
    enrichment = body["data"]["enrichment"]  # built in: no outside service
    assert (enrichment["email_type"], enrichment["seniority"], enrichment["department"]) == ("corporate", "vp", "sales")
    assert enrichment["company_domain"] == "northwind.example"

    async def notified() -> Any:
        status, lead = await _get(api, f"{worker.url}/v1/leads/{lead_id}")
        return lead if status == 200 and lead["notified_at"] else None

    lead = await eventually(notified, what="the lead marked notified")
    assert lead["routing"] == "assigned"
    assert lead["assignment"]["rep_id"] == "ana"
    decision = lead["assignment"]["decision"]
    assert decision["winner"] == "ana" and decision["candidates"][0]["rep_id"] == "ana"
    kinds = [e["kind"] for e in lead["timeline"]]
    assert kinds[:2] == ["captured", "assigned"] and "notified" in kinds

    # The same person again is a duplicate: a touch, not a second assignment or webhook.
    async with api.post(f"{worker.url}/v1/leads", json={"email": "maria.lopez@northwind.example",
                                                        "source": "inbound"}) as r:
        assert (await _json(r))["status"] == "duplicate"
    await eventually(lambda: _touches(api, worker, lead_id, 2), what="the second touch")
    # Ana is told the person came back; there is no second assignment.
    touched = await eventually(lambda: [d for d in receiver.for_lead(lead_id)
                                        if d["payload"]["type"] == "lead.touched"], what="the touch webhook")
    assert touched[0]["verified"] and touched[0]["rep_id"] == "ana"
    assert [d["payload"]["type"] for d in receiver.for_lead(lead_id)] == ["lead.assigned", "lead.touched"]

    # The worker's own metrics saw it, in base units with the exact 60 s bucket.
    async with api.get(f"{worker.url}/metrics") as r:
        metrics = await r.text()
    assert 'leadflow_leads_assigned_total{team="inbound"} 1.0' in metrics
    assert 'leadflow_lead_routing_seconds_bucket{le="60.0"} 1.0' in metrics
    assert 'leadflow_webhook_deliveries_total{event_type="lead.assigned",outcome="delivered"} 1.0' in metrics
    assert "leadflow_leads_merged_total 1.0" in metrics


async def _team_has(api: aiohttp.ClientSession, worker: Worker, team: str, rep: str) -> bool:
    status, body = await _get(api, f"{worker.url}/v1/teams/{team}")
    return status == 200 and any(r["rep_id"] == rep for r in body["reps"])


async def _touches(api: aiohttp.ClientSession, worker: Worker, lead_id: str, n: int) -> bool:
    status, body = await _get(api, f"{worker.url}/v1/leads/{lead_id}")
    return status == 200 and body["touches"] == n


CAPACITY_CONFIG = """
routing:
  default_team: sdr
teams:
  - id: sdr
    reps:
      - {{id: r1, capacity: 5, webhook_url: "{url}/hooks/r1", webhook_secret: "{secret}"}}
      - {{id: r2, capacity: 5, webhook_url: "{url}/hooks/r2", webhook_secret: "{secret}"}}
      - {{id: r3, capacity: 5, webhook_url: "{url}/hooks/r3", webhook_secret: "{secret}"}}
"""


async def test_thirty_leads_over_three_reps_of_capacity_five(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = CAPACITY_CONFIG.format(url=receiver.url, secret=SECRET)
    receiver.secrets.update({"r1": SECRET, "r2": SECRET, "r3": SECRET})
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        await eventually(lambda: _team_size(api, worker, "sdr", 3), what="the configured reps")
        leads = [{"email": f"buyer{i}@company{i}.example", "company": f"Company {i}"} for i in range(30)]
        async with api.post(f"{worker.url}/v1/leads", json={"leads": leads}) as r:
            assert r.status == 202
            batch = await _json(r)
        assert batch["accepted"] == 30 and batch["rejected"] == 0
        lead_ids = [item["lead_id"] for item in batch["results"]]

        team = await eventually(lambda: _team_where(api, worker, "sdr", open_leads=15, queue_depth=15),
                                what="15 assigned and 15 queued")
        assert sorted(r["open_leads"] for r in team["reps"]) == [5, 5, 5]
        assigned = await eventually(lambda: _leads_in(api, worker, lead_ids, "assigned", 15), what="15 assigned")
        queued = [lid for lid in lead_ids if lid not in assigned]

        # Dispositions free capacity; every queued lead is then assigned, oldest first.
        for lead_id in assigned:
            async with api.post(f"{worker.url}/v1/leads/{lead_id}/disposition",
                                json={"status": "disqualified", "reason": "not a fit"}) as r:
                assert r.status == 202, await r.text()
        await eventually(lambda: _team_where(api, worker, "sdr", open_leads=15, queue_depth=0),
                         what="the queue drained")
        await eventually(lambda: _leads_in(api, worker, queued, "assigned", 15), what="queued leads assigned")

        # Each lead was assigned exactly once and each rep was notified once per lead.
        await eventually(lambda: len({d["payload"]["data"]["lead_id"] for d in receiver.deliveries}) == 30,
                         what="30 webhooks")
        per_lead = Counter(d["payload"]["data"]["lead_id"] for d in receiver.deliveries)
        assert set(per_lead.values()) == {1}
        assert all(d["verified"] for d in receiver.deliveries)
        per_rep = Counter(d["rep_id"] for d in receiver.deliveries)
        assert sorted(per_rep.values()) == [10, 10, 10]
        # A disposition of a closed lead is a conflict, not a second release.
        async with api.post(f"{worker.url}/v1/leads/{assigned[0]}/disposition",
                            json={"status": "nurture"}) as r:
            assert r.status == 409
    finally:
        worker.stop()


async def _team_size(api: aiohttp.ClientSession, worker: Worker, team: str, n: int) -> bool:
    status, body = await _get(api, f"{worker.url}/v1/teams/{team}")
    return status == 200 and len(body["reps"]) == n


async def _team_where(api: aiohttp.ClientSession, worker: Worker, team: str, **expected: int) -> Any:
    status, body = await _get(api, f"{worker.url}/v1/teams/{team}")
    if status != 200:
        return None
    assert all(r["open_leads"] <= r["capacity"] for r in body["reps"]), body
    return body if all(body[k] == v for k, v in expected.items()) else None


async def _leads_in(api: aiohttp.ClientSession, worker: Worker, lead_ids: list[str], routing: str,
                    n: int) -> list[str] | None:
    found = []
    for lead_id in lead_ids:
        status, body = await _get(api, f"{worker.url}/v1/leads/{lead_id}")
        if status == 200 and body["routing"] == routing:
            found.append(lead_id)
    return found if len(found) == n else None

"""The routing engine's queue and handshake on the real stack: tier-then-age priority, overflow
to another team after a wait, and the offer handshake (accept, decline, lapse)."""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import Receiver, SECRET, Worker, WorkerSpec, eventually, get_lead, lead_in, post_lead

OFFER_TIMEOUT = 3
OVERFLOW_AFTER = 3


def _rep(receiver: Receiver, rep_id: str, capacity: int) -> str:
    return (f'{{id: {rep_id}, capacity: {capacity}, webhook_url: "{receiver.url}/hooks/{rep_id}", '
            f'webhook_secret: "{SECRET}"}}')


def _config(receiver: Receiver) -> str:
    return f"""
routing:
  default_team: sdr
  tier_priorities: {{hot: 0}}
  rules:
    - {{name: priority test, team: prio, sources: [prio-test]}}
    - {{name: offer test, team: offers, sources: [offer-test]}}
teams:
  - id: prio
    reps: [{_rep(receiver, "pia", 1)}]
  - id: sdr
    overflow_team: backup
    overflow_after: {OVERFLOW_AFTER}
    reps: [{_rep(receiver, "solo", 1)}]
  - id: backup
    reps: [{_rep(receiver, "bea", 5)}]
  - id: offers
    offer_timeout: {OFFER_TIMEOUT}
    reps: [{_rep(receiver, "ana", 3)}, {_rep(receiver, "ben", 3)}]
"""








def _hooks(receiver: Receiver, lead_id: str, kind: str) -> list[str]:
    return [d["rep_id"] for d in receiver.for_lead(lead_id) if d["payload"]["type"] == kind]


@pytest.fixture
async def worker(spec: WorkerSpec, receiver: Receiver) -> Any:
    spec.config_yaml = _config(receiver)
    receiver.secrets.update({rep: SECRET for rep in ("pia", "solo", "bea", "ana", "ben")})
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.mark.timeout(180)
async def test_queue_priority_overflow_and_the_offer_handshake(
    worker: Worker, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    # --- tier, then age: pia is busy; a hot lead that arrives later is served first. ---
    busy = await post_lead(api, worker, "first@prio.example", source="prio-test")
    await eventually(lambda: _hooks(receiver, busy, "lead.assigned"), what="pia's first lead")
    older = await post_lead(api, worker, "older@prio.example", source="prio-test")
    await eventually(lambda: lead_in(api, worker, older, "queued"), what="the older lead queued")
    hot = await post_lead(api, worker, "hot@prio.example", source="prio-test", attributes={"tier": "hot"})
    await eventually(lambda: lead_in(api, worker, hot, "queued"), what="the hot lead queued")
    async with api.post(f"{worker.url}/v1/leads/{busy}/disposition", json={"status": "disqualified"}) as r:
        assert r.status == 202, await r.text()
    await eventually(lambda: _hooks(receiver, hot, "lead.assigned") == ["pia"], what="the hot lead to pia")
    assert (await get_lead(api, worker, older))["routing"] == "queued"  # still waiting behind it

    # --- overflow: a lead waiting in sdr's queue longer than overflow_after goes to backup. ---
    taken = await post_lead(api, worker, "taken@sdr.example")
    await eventually(lambda: _hooks(receiver, taken, "lead.assigned") == ["solo"], what="solo's lead")
    waiting = await post_lead(api, worker, "waiting@sdr.example")
    await eventually(lambda: lead_in(api, worker, waiting, "queued"), what="the second sdr lead queued")
    await eventually(lambda: _hooks(receiver, waiting, "lead.assigned") == ["bea"], timeout=30,
                     what="the waiting lead overflowed to bea")
    lead = await get_lead(api, worker, waiting)
    assert lead["team_id"] == "backup" and lead["assignment"]["rep_id"] == "bea"
    overflowed = [e for e in lead["timeline"] if e["kind"] == "overflowed"]
    assert len(overflowed) == 1 and "overflow to backup" in overflowed[0]["detail"]["reason"]
    # solo frees up: the lead that left sdr's queue is not assigned a second time.
    async with api.post(f"{worker.url}/v1/leads/{taken}/disposition", json={"status": "nurture"}) as r:
        assert r.status == 202
    await eventually(lambda: _team_idle(api, worker, "sdr"), what="sdr idle")
    assert _hooks(receiver, waiting, "lead.assigned") == ["bea"]

    # --- the offer handshake: decline goes to the other rep, who accepts. ---
    declined = await post_lead(api, worker, "declined@offers.example", source="offer-test")
    first = (await eventually(lambda: _hooks(receiver, declined, "lead.offered"), what="the first offer"))[0]
    other = "ben" if first == "ana" else "ana"
    offer = next(d for d in receiver.for_lead(declined) if d["payload"]["type"] == "lead.offered")
    assert offer["payload"]["data"]["offer"]["accept"] == f"/v1/leads/{declined}/accept"
    async with api.post(f"{worker.url}/v1/leads/{declined}/accept", json={"rep_id": other}) as r:
        assert r.status == 409  # not offered to them
    async with api.post(f"{worker.url}/v1/leads/{declined}/decline",
                        json={"rep_id": first, "reason": "wrong region"}) as r:
        assert r.status == 202, await r.text()
    await eventually(lambda: _hooks(receiver, declined, "lead.offered") == [first, other], what="the second offer")
    await eventually(lambda: lead_in(api, worker, declined, "offered"), what="offered again")
    async with api.post(f"{worker.url}/v1/leads/{declined}/accept", json={"rep_id": other}) as r:
        assert r.status == 202, await r.text()
        received = await r.json()
    # Received, not yet applied (docs/routing.md): the body names the answer and the offer it is for.
    assert (received["status"], received["answer"], received["rep_id"]) == ("received", "accept", other)
    assert received["route_id"].startswith(f"{declined}:")
    lead = await eventually(lambda: lead_in(api, worker, declined, "assigned"), what="accepted")
    assert lead["assignment"]["rep_id"] == other
    kinds = [e["kind"] for e in lead["timeline"]]
    assert kinds.count("offered") == 2 and "declined" in kinds and kinds[-1] == "accepted"

    # --- an offer nobody answers lapses to the next rep, then to nobody (queued). ---
    lapsed = await post_lead(api, worker, "lapsed@offers.example", source="offer-test")
    await eventually(lambda: len(_hooks(receiver, lapsed, "lead.offered")) == 2, timeout=30,
                     what="the offer lapsing to the second rep")
    first, second = _hooks(receiver, lapsed, "lead.offered")
    assert first != second
    await eventually(lambda: lead_in(api, worker, lapsed, "queued"), timeout=30, what="both offers lapsed")
    await eventually(lambda: sorted(_hooks(receiver, lapsed, "lead.reassigned")) == sorted([first, second]),
                     what="both reps told their offer lapsed")
    await asyncio.sleep(OFFER_TIMEOUT)  # nothing fires twice
    assert len(_hooks(receiver, lapsed, "lead.offered")) == 2
    lead = await get_lead(api, worker, lapsed)
    assert [e["kind"] for e in lead["timeline"]].count("offer_expired") == 2
    assert all(d["verified"] for d in receiver.deliveries)


async def _team_idle(api: aiohttp.ClientSession, worker: Worker, team_id: str) -> Any:
    async with api.get(f"{worker.url}/v1/teams/{team_id}") as r:
        team = await r.json()
    return team if team["queue_depth"] == 0 and team["open_leads"] == 0 else None

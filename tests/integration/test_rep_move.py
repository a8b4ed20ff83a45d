"""A rep who moves team while holding a lead, on the real stack: never above their capacity.

The audit's case: fay (team direct, capacity 2) holds a lead and is moved to team tiny with
capacity 1; tiny must not give her another lead until the direct one is closed.
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.integration.harness import SECRET, Receiver, Worker, WorkerSpec, eventually

CONFIG = """
routing:
  default_team: direct
  rules:
    - {{team: tiny, sources: [tiny-form]}}
teams:
  - id: direct
    reps:
      - {{id: fay, name: Fay, capacity: 2, webhook_url: "{url}/hooks/fay", webhook_secret: "{secret}"}}
"""


async def _get(api: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with api.get(url) as r:
        return r.status, await r.json(content_type=None)


async def _rep(api: aiohttp.ClientSession, worker: Worker, team: str, rep_id: str) -> dict[str, Any] | None:
    status, body = await _get(api, f"{worker.url}/v1/teams/{team}")
    if status != 200:
        return None
    return next((r for r in body["reps"] if r["rep_id"] == rep_id), None)


async def _lead(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> dict[str, Any] | None:
    status, body = await _get(api, f"{worker.url}/v1/leads/{lead_id}")
    return body if status == 200 else None


async def _post_lead(api: aiohttp.ClientSession, worker: Worker, email: str, source: str) -> str:
    async with api.post(f"{worker.url}/v1/leads", json={"email": email, "source": source}) as r:
        assert r.status == 202, await r.text()
        return str((await r.json(content_type=None))["lead_id"])


async def test_a_rep_moved_while_holding_a_lead_is_not_given_more_than_their_capacity(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = CONFIG.format(url=receiver.url, secret=SECRET)
    receiver.secrets["fay"] = SECRET
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        await eventually(lambda: _rep(api, worker, "direct", "fay"), what="fay in team direct")
        first = await _post_lead(api, worker, "first@buyer-one.example", "web")

        async def held_by_fay(lead_id: str) -> bool:
            lead = await _lead(api, worker, lead_id)
            return lead is not None and lead["routing"] == "assigned" and lead["assignment"]["rep_id"] == "fay"

        await eventually(lambda: held_by_fay(first), what="the first lead assigned to fay in direct")

        async with api.put(f"{worker.url}/v1/reps/fay", json={
                "team": "tiny", "name": "Fay", "capacity": 1, "webhook_url": f"{receiver.url}/hooks/fay"}) as r:
            assert r.status == 202, await r.text()

        async def counted_in_tiny() -> dict[str, Any] | None:
            fay = await _rep(api, worker, "tiny", "fay")
            return fay if fay is not None and fay["open_leads"] == 1 else None

        fay = await eventually(counted_in_tiny, what="fay in tiny, her direct lead counted")
        assert (fay["capacity"], fay["held_elsewhere"], fay["departed"]) == (1, 1, False)
        departed = await _rep(api, worker, "direct", "fay")
        assert departed is not None and departed["departed"] and departed["open_leads"] == 1
        assert departed["held_elsewhere"] == 0
        # direct still counts her lead, but not her: she is available in tiny, not in direct.
        status, direct = await _get(api, f"{worker.url}/v1/teams/direct")
        assert status == 200 and (direct["open_leads"], direct["reps_available"], direct["capacity"]) == (1, 0, 0)

        second = await _post_lead(api, worker, "second@buyer-two.example", "tiny-form")

        async def queued(lead_id: str) -> dict[str, Any] | None:
            lead = await _lead(api, worker, lead_id)
            return lead if lead is not None and lead["routing"] == "queued" else None

        waiting = await eventually(lambda: queued(second), what="the tiny lead queued, fay being full")
        assert waiting["team_id"] == "tiny"
        await asyncio.sleep(5)  # the audit saw tiny assign her within 5 s
        assert (await _lead(api, worker, second) or {}).get("routing") == "queued"

        # Her direct lead closes: she leaves direct for good and tiny gives her the waiting lead.
        async with api.post(f"{worker.url}/v1/leads/{first}/disposition",
                            json={"status": "disqualified", "reason": "not a fit"}) as r:
            assert r.status == 202, await r.text()
        await eventually(lambda: held_by_fay(second), what="the tiny lead assigned to fay")
        assert await _rep(api, worker, "direct", "fay") is None
        fay = await _rep(api, worker, "tiny", "fay")
        assert fay is not None and (fay["open_leads"], fay["held_elsewhere"], fay["capacity"]) == (1, 0, 1)
    finally:
        worker.stop()

"""Two workers in one group: any worker answers for any lead or team, by relaying to the owner."""
from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, one_rep_config



RELAYED: list[str] = []


async def _get(api: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with api.get(url) as r:
        if "X-Leadflow-Owner" in r.headers:
            RELAYED.append(url)
        return r.status, await r.json(content_type=None)


@pytest.mark.timeout(300)
async def test_any_worker_answers_for_any_lead(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = one_rep_config(receiver, capacity=20)
    first = Worker(spec)
    second = None
    try:
        await first.wait_ready()
        second = Worker(spec)
        await second.wait_ready()
        workers = (first, second)

        async def both_own_partitions() -> bool:
            for w in workers:
                async with api.get(f"{w.url}/readyz") as r:
                    body = await r.json()
                if r.status != 200 or not body["detail"][:1].isdigit() or body["detail"].startswith("0 partition"):
                    return False
            return True

        await eventually(both_own_partitions, timeout=60, what="the partitions split over both workers")
        leads = [{"email": f"buyer{i}@split.example"} for i in range(8)]
        async with api.post(f"{first.url}/v1/leads", json={"leads": leads}) as r:
            assert r.status == 202
            lead_ids = [item["lead_id"] for item in (await r.json())["results"]]

        async def everyone_sees_everything() -> bool:
            for lead_id in lead_ids:
                views = [await _get(api, f"{w.url}/v1/leads/{lead_id}") for w in workers]
                if any(status != 200 or body["routing"] != "assigned" or not body["notified_at"]
                       for status, body in views):
                    return False
                # Both answers come from the one owner of the lead (the other worker relays).
                assert views[0][1]["assignment"] == views[1][1]["assignment"]
                assert views[0][1]["lead_id"] == views[1][1]["lead_id"] == lead_id
            return True

        await eventually(everyone_sees_everything, timeout=60, what="every lead readable from both workers")
        assert RELAYED, "with the partitions split, some reads must have been relayed to the owner"
        teams = [await _get(api, f"{w.url}/v1/teams/sdr") for w in workers]
        assert teams[0] == teams[1] and teams[0][1]["open_leads"] == 8
        # Writes can go to either worker too: a disposition sent to each.
        for index, lead_id in enumerate(lead_ids[:2]):
            async with api.post(f"{workers[index].url}/v1/leads/{lead_id}/disposition",
                                json={"status": "nurture"}) as r:
                assert r.status == 202, await r.text()
        await eventually(lambda: _open_leads(api, second, 6), what="both releases applied")
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def _open_leads(api: aiohttp.ClientSession, worker: Worker, n: int) -> bool:
    status, body = await _get(api, f"{worker.url}/v1/teams/sdr")
    return status == 200 and body["open_leads"] == n

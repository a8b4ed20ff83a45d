"""A rep deleted from the YAML, on the real stack: retired at the next start, their lead kept.

The audit's case: team t1 = ana, ben; the worker restarts with the same file without ben. ben
got a third of the new leads and stayed listed available. Now he gets none, the lead he holds
stays his until it is closed, and a rep made through the API (zoe) is not touched by the file;
``DELETE /v1/reps`` retires her and a PUT brings ben back.
"""
from __future__ import annotations

from typing import Any

import aiohttp

from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, lead_in, post_lead, reps_yaml


def _config(receiver: Receiver, rep_ids: list[str]) -> str:
    return f"""
routing: {{default_team: t1}}
teams:
  - id: t1
    reps:
{reps_yaml(receiver, rep_ids, capacity=10)}
"""


async def _team_reps(api: aiohttp.ClientSession, worker: Worker) -> dict[str, dict[str, Any]] | None:
    async with api.get(f"{worker.url}/v1/teams/t1") as r:
        if r.status != 200:
            return None
        return {rep["rep_id"]: rep for rep in (await r.json())["reps"]}


async def _holder(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> str:
    lead = await eventually(lambda: lead_in(api, worker, lead_id, "assigned"), what=f"lead {lead_id} assigned")
    return str(lead["assignment"]["rep_id"])


async def test_a_rep_deleted_from_the_yaml_gets_no_new_lead_and_keeps_the_one_he_holds(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = _config(receiver, ["ana", "ben"])
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        await eventually(lambda: _roster_is(api, worker, {"ana", "ben"}), what="ana and ben in t1")
        firsts = [await post_lead(api, worker, f"first{n}@buyer{n}.example") for n in range(2)]
        holders = {await _holder(api, worker, lead_id): lead_id for lead_id in firsts}
        assert set(holders) == {"ana", "ben"}, holders
        bens = holders["ben"]
        receiver.secrets["zoe"] = receiver.secrets["ana"]
        async with api.put(f"{worker.url}/v1/reps/zoe", json={
                "team": "t1", "capacity": 10, "webhook_url": receiver.hook_url("zoe"),
                "webhook_secret": receiver.secrets["zoe"]}) as r:
            assert r.status == 202, await r.text()
        await eventually(lambda: _roster_is(api, worker, {"ana", "ben", "zoe"}), what="zoe in t1")
        worker.stop()

        spec.config_yaml = _config(receiver, ["ana"])  # up2.yaml: ben deleted
        worker = Worker(spec, port=worker.port, data_dir=worker.data_dir)
        await worker.wait_ready()

        async def ben_departed() -> dict[str, Any] | None:
            reps = await _team_reps(api, worker) or {}
            ben = reps.get("ben")
            return ben if ben is not None and ben["departed"] else None

        ben = await eventually(ben_departed, timeout=60, what="ben departed from t1")
        assert ben["open_leads"] == 1
        reps = await _team_reps(api, worker) or {}
        assert not reps["zoe"]["departed"], "zoe was made through the API: the file says nothing about her"
        assert "retired 1 rep(s) the config no longer names" in worker.log(400)
        assert await _retired(api, worker, "config") == 1.0

        news = [await post_lead(api, worker, f"new{n}@company{n}.example") for n in range(8)]
        got = [await _holder(api, worker, lead_id) for lead_id in news]
        assert "ben" not in got and set(got) == {"ana", "zoe"}, got
        assert not [d for d in receiver.deliveries if d["rep_id"] == "ben" and d["payload"]["data"]["lead_id"] in news]
        assert await _holder(api, worker, bens) == "ben", "his lead stays his until released"

        async with api.post(f"{worker.url}/v1/leads/{bens}/disposition",
                            json={"status": "disqualified", "reason": "not a fit"}) as r:
            assert r.status == 202, await r.text()
        await eventually(lambda: _absent(api, worker, "ben"), what="ben gone from t1 once his lead closed")

        # DELETE retires an API-made rep too; a PUT brings ben back.
        async with api.delete(f"{worker.url}/v1/reps/zoe") as r:
            assert (r.status, await r.json()) == (202, {"rep_id": "zoe", "status": "retired"})
        async with api.delete(f"{worker.url}/v1/reps/nobody") as r:
            assert r.status == 404
        await eventually(lambda: _zoe_out(api, worker), what="zoe departed from t1")
        assert (await _retired(api, worker, "config"), await _retired(api, worker, "api")) == (1.0, 1.0)
        async with api.put(f"{worker.url}/v1/reps/ben", json={"team": "t1"}) as r:
            assert r.status == 202 and (await r.json())["created"] is False, await r.text()
        await eventually(lambda: _roster_is(api, worker, {"ana", "ben"}, departed_ok=frozenset({"zoe"})),
                         what="ben back in t1")
        later = [await post_lead(api, worker, f"later{n}@firm{n}.example") for n in range(4)]
        got = [await _holder(api, worker, lead_id) for lead_id in later]
        assert "zoe" not in got and "ben" in got, got
    finally:
        worker.stop()


async def _roster_is(api: aiohttp.ClientSession, worker: Worker, active: set[str],
                     departed_ok: frozenset[str] = frozenset()) -> bool:
    reps = await _team_reps(api, worker)
    if reps is None:
        return False
    here = {rep_id for rep_id, rep in reps.items() if not rep["departed"]}
    return here == active and set(reps) - here <= departed_ok


async def _retired(api: aiohttp.ClientSession, worker: Worker, by: str) -> float:
    """``leadflow_reps_retired_total{team="t1", by=by}`` on the worker's ``/metrics``."""
    async with api.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("leadflow_reps_retired_total{") and f'by="{by}"' in line and 'team="t1"' in line)


async def _absent(api: aiohttp.ClientSession, worker: Worker, rep_id: str) -> bool:
    reps = await _team_reps(api, worker)
    return reps is not None and rep_id not in reps


async def _zoe_out(api: aiohttp.ClientSession, worker: Worker) -> bool:
    reps = await _team_reps(api, worker)
    return reps is not None and ("zoe" not in reps or reps["zoe"]["departed"])

"""Two workers under load: a second one joins (a rebalance), then one is killed for good.

The survivor takes the dead worker's partitions over (the lead tables from its standby replicas,
the team table from its compact changelog: docs/SCALING.md), and routing resumes. The worker
killed is the one that owns the team, so no lead can be routed until the survivor has it: the
gap measured is the whole outage. Run with ``-s`` to see the figures.
"""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, reps_yaml
from tests.integration.test_crash_verifier import Run, _consume_events, post_batch

LEADS = 240
REPS = 4
FEED_RATE = 8.0  # leads/s, a batch a second: 30 s of feed
BATCH = 8
JOIN_AT_S = 4.0  # into the feed: the second worker starts
KILL_AFTER_SHARED_S = 4.0  # both workers routing for this long, then the team's owner dies


def _config(receiver: Receiver) -> str:
    return f"""
routing: {{default_team: sdr}}
teams:
  - id: sdr
    reps:
{reps_yaml(receiver, [f"r{i}" for i in range(REPS)], capacity=LEADS)}
"""


async def _feed(api: aiohttp.ClientSession, live: list[Worker], run: Run, accepted_at: dict[str, float]) -> None:
    """Paced batches to whichever worker answers: a client behind a load balancer."""
    started = time.monotonic()
    for first in range(0, LEADS, BATCH):
        await asyncio.sleep(max(0.0, started + first / FEED_RATE - time.monotonic()))
        leads = [{"email": f"fail{i}@over.example", "company": f"Co {i}"} for i in range(first, first + BATCH)]
        await post_batch(api, lambda attempt: live[attempt % len(live)].url, leads, first, run,
                         deadline=time.monotonic() + 60, pause_s=0.2)
        now = time.monotonic()
        for lead_id in run.accepted.keys() - accepted_at.keys():
            accepted_at[lead_id] = now


async def _partitions(api: aiohttp.ClientSession, worker: Worker) -> int:
    async with api.get(f"{worker.url}/readyz") as r:
        body = await r.json()
    detail = body["detail"]  # "rebalancing: …" while ready through a rebalance: no count yet
    return int(detail.split(" ", 1)[0]) if r.status == 200 and detail[:1].isdigit() else 0


async def _team_owner(api: aiohttp.ClientSession, workers: list[Worker]) -> Worker | None:
    """The worker whose partition holds team ``sdr``: a read through the other one is relayed.
    ``None`` while the partitions are being assigned."""
    async with api.get(f"{workers[0].url}/v1/teams/sdr") as r:
        if r.status != 200:
            return None
        relayed_to = r.headers.get("X-Leadflow-Owner")
    if relayed_to is None:
        return workers[0]
    assert relayed_to.endswith(f":{workers[1].port}"), relayed_to
    return workers[1]


@pytest.mark.timeout(400)
async def test_the_survivor_takes_over_under_load_and_routing_resumes(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = _config(receiver)
    run, accepted_at = Run(), dict[str, float]()
    first = Worker(spec)
    live = [first]
    stop = asyncio.Event()
    await first.wait_ready()
    consumer = asyncio.create_task(_consume_events(spec, run, stop))
    try:
        # Alone, a worker holds every partition and no standby: the count to come back to. Read
        # once it holds still: topics made late (a fresh deployment) add partitions in a rebalance
        # just after the first (65, then 81 in one run), and the survivor must match the final one.
        alone = await _steady_partitions(api, first)
        t0 = time.monotonic()
        feeder = asyncio.create_task(_feed(api, live, run, accepted_at))

        # A second worker joins while leads flow: the partitions are split between the two.
        await asyncio.sleep(JOIN_AT_S)
        second = Worker(spec)
        live.append(second)
        await second.wait_ready()

        async def split() -> bool:
            return all([await _partitions(api, w) for w in live])

        await eventually(split, timeout=60, what="the partitions split over both workers")
        split_s = time.monotonic() - t0
        await asyncio.sleep(KILL_AFTER_SHARED_S)

        doomed = await eventually(lambda: _team_owner(api, live), what="the team's owner")
        survivor = second if doomed is first else first
        live.remove(doomed)
        doomed.kill()
        killed = time.monotonic()
        killed_at_s = killed - t0

        def assigned_since(moment: float) -> list[tuple[str, float]]:
            return [(e["lead_id"], seen) for e, seen in zip(run.events, run.event_seen_at)
                    if e["type"] == "lead.assigned" and accepted_at.get(e["lead_id"], 0.0) > moment]

        # Routing resumed: a lead accepted after the kill is assigned. Its team was on the dead
        # worker, so nothing accepted since can be routed before the survivor holds the team.
        await eventually(lambda: assigned_since(killed), timeout=120, interval=0.1,
                         what=f"routing to resume on the survivor\n{survivor.log(80)}")
        resumed_s = min(seen for _, seen in assigned_since(killed)) - killed
        await feeder
        assert len(run.accepted) == LEADS

        def assigned() -> set[str]:
            return {e["lead_id"] for e in run.events if e["type"] == "lead.assigned"}

        await eventually(lambda: assigned() >= run.accepted.keys(), timeout=120, interval=0.5,
                         what=f"every accepted lead assigned ({LEADS - len(assigned() & run.accepted.keys())} not)")
        # The survivor holds everything now: its own partitions and the dead worker's.
        await eventually(lambda: _all_on(api, survivor, alone), timeout=60,
                         what=f"the survivor holding all {alone} partitions")

        assert run.assignments().keys() >= run.accepted.keys()  # and each lead assigned once

        async def counted() -> bool:
            async with api.get(f"{survivor.url}/v1/teams/sdr") as r:
                body = await r.json() if r.status == 200 else None
            return bool(body) and body["open_leads"] == LEADS and body["queue_depth"] == 0

        await eventually(counted, what=f"the team counting all {LEADS} leads on the survivor")

        async def delivered() -> bool:
            return {d["payload"]["data"]["lead_id"] for d in receiver.deliveries
                    if d["payload"]["type"] == "lead.assigned" and d["verified"]} >= run.accepted.keys()

        await eventually(delivered, timeout=60, what="every lead.assigned webhook delivered")
        # How long the leads that came in during the outage waited for their rep.
        first_seen: dict[str, float] = {}
        for lead_id, seen in assigned_since(killed):
            first_seen[lead_id] = min(seen, first_seen.get(lead_id, seen))
        waited = sorted(first_seen[lead] - accepted_at[lead] for lead in first_seen)
        print(f"\nfailover: {LEADS} leads at {FEED_RATE:.0f}/s; both workers routing {split_s:.1f} s into the "
              f"feed; the team's owner killed at {killed_at_s:.1f} s; routing resumed "
              f"{resumed_s:.1f} s after the kill; the {len(waited)} leads accepted after it waited "
              f"{waited[0]:.1f}-{waited[-1]:.1f} s for their rep; {run.http_retries} HTTP retries")
    finally:
        stop.set()
        await asyncio.gather(consumer, return_exceptions=True)
        for worker in live:
            worker.stop()


async def _steady_partitions(api: aiohttp.ClientSession, worker: Worker, *, quiet_s: float = 3.0,
                             timeout: float = 60.0) -> int:
    """The worker's partition count once it has not changed for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = await _partitions(api, worker)
        if count != last:
            last, since = count, time.monotonic()
        elif count and time.monotonic() - since >= quiet_s:
            return count
        await asyncio.sleep(0.5)
    raise AssertionError(f"the first worker's partition count did not settle in {timeout:.0f} s (last: {last})")


async def _all_on(api: aiohttp.ClientSession, worker: Worker, total: int) -> bool:
    return await _partitions(api, worker) == total

"""A worker paused (SIGSTOP) longer than its Kafka session, then woken (SIGCONT), under load.

The deploy audit of session 16: while it was frozen its session expired and the other worker
took its partitions and wrote their tables; on waking it finished its old batch and wrote as if
it still owned them (a zombie write), and Faust then persisted that write's changelog offset, so
the next recovery of the partition skipped the other worker's records: accepted, assigned leads
answered 404 for good, others showed stale states.

Now the woken worker exits at once without writing (``streams/stall_guard.py``, status 75), a
supervisor starts it again, and a recovery never skips a changelog gap
(``streams/changelog_offsets.py``). Checked as the crash verifier checks a ``kill -9``
(tests/integration/test_crash_verifier.py): every accepted lead assigned, to exactly one rep;
and, what the audit saw go wrong, every accepted lead readable and assigned to that same rep,
and the team's open leads adding up.
"""
from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import aiohttp
import pytest

from streams.stall_guard import EXIT_STALLED
from tests.integration.harness import LIVE, Receiver, Worker, WorkerSpec, eventually
from tests.integration.test_crash_verifier import REPS, Run, _config, _consume_events, _team_ready, post_batch

pytestmark = pytest.mark.integration

SESSION_S = 10.0  # broker_session_timeout, streams/app.py
PAUSE_S = SESSION_S + 4.0  # past the session (the guard needs 10.25 s), and time for the other worker to take over
BATCH = 6  # leads per post, about 6 a second: load while the worker is paused


async def _owner(api: aiohttp.ClientSession, workers: list[Worker], team: str) -> Worker:
    async with api.get(f"{workers[0].url}/v1/teams/{team}") as r:
        assert r.status == 200, await r.text()
        relayed = r.headers.get("X-Leadflow-Owner")
    if relayed is None:
        return workers[0]
    return next(w for w in workers if relayed.endswith(f":{w.port}"))


async def _feed(api: aiohttp.ClientSession, to: dict[str, Worker], run: Run, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        leads = [{"email": f"paused{i}@verify.example", "company": f"Co {i}", "source": "web"}
                 for i in range(n, n + BATCH)]
        await post_batch(api, lambda attempt: to["w"].url, leads, n, run, deadline=time.monotonic() + 60,
                         pause_s=0.3)
        n += BATCH
        await asyncio.sleep(1.0)


@pytest.mark.timeout(300)
async def test_a_worker_paused_past_its_session_exits_and_nothing_is_lost_or_stale(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = _config(receiver)
    workers = [Worker(spec), Worker(spec)]
    run = Run()
    stop_events, stop_feed = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(w.wait_ready() for w in workers))
        await eventually(lambda: _team_ready(api, workers[0]), what="the configured reps")
        victim = await _owner(api, workers, "sdr")
        other = next(w for w in workers if w is not victim)
        to = {"w": other}  # captures go to the worker that stays up; reads are relayed to owners
        tasks.append(asyncio.create_task(_consume_events(spec, run, stop_events)))
        tasks.append(asyncio.create_task(_feed(api, to, run, stop_feed)))
        await asyncio.sleep(3.0)

        victim.proc.send_signal(signal.SIGSTOP)
        paused_at = time.monotonic()
        await asyncio.sleep(PAUSE_S)
        victim.proc.send_signal(signal.SIGCONT)
        status = await asyncio.to_thread(victim.proc.wait, 20)
        woke_to_exit = time.monotonic() - paused_at - PAUSE_S
        LIVE.pop(victim.proc.pid, None)
        assert status == EXIT_STALLED, f"the woken worker went on (status {status}):\n{victim.log(80)}"
        assert "longer than its 10 s Kafka session" in victim.log(40)

        # Its supervisor starts it again on the same data dir.
        restarted = Worker(spec, port=victim.port, data_dir=victim.data_dir)
        workers[workers.index(victim)] = restarted
        await restarted.wait_ready(timeout=120)
        await asyncio.sleep(3.0)
        stop_feed.set()
        await tasks.pop()

        def assigned() -> set[str]:
            return {e["lead_id"] for e in run.events if e["type"] == "lead.assigned"}

        await eventually(lambda: run.accepted.keys() <= assigned(), timeout=90, interval=0.5,
                         what=f"every accepted lead assigned ({len(run.accepted)} accepted)")
        assignments = run.assignments()  # exactly one (route, rep) per lead

        # What the audit saw: accepted, assigned leads answering 404 or showing a stale state.
        async def state(lead_id: str) -> tuple[int, str | None]:
            async with api.get(f"{other.url}/v1/leads/{lead_id}") as r:
                body = await r.json(content_type=None) if r.status == 200 else {}
            return r.status, (body.get("assignment") or {}).get("rep_id")

        states = {lead: await state(lead) for lead in run.accepted}
        missing = sorted(lead for lead, (status, _) in states.items() if status != 200)
        assert not missing, f"{len(missing)} accepted lead(s) not readable: {missing[:5]}"
        stale = sorted(lead for lead, (_, rep) in states.items() if rep != assignments[lead][1])
        assert not stale, f"{len(stale)} lead(s) not held by their assigned rep: {[(x, states[x]) for x in stale[:5]]}"

        per_rep = Counter(rep for _, rep in assignments.values())

        async def team_adds_up() -> bool:
            async with api.get(f"{other.url}/v1/teams/sdr") as r:
                body = await r.json() if r.status == 200 else None
            return bool(body) and {x["rep_id"]: x["open_leads"] for x in body["reps"] if x["open_leads"]} == per_rep

        await eventually(team_adds_up, timeout=30, what=f"the team's open leads to add up to {dict(per_rep)}")
        assert len(per_rep) <= REPS
        print(f"\npaused worker: {len(run.accepted)} leads accepted, all assigned once and readable; "
              f"SIGSTOP {PAUSE_S:.0f} s, exited {woke_to_exit:.1f} s after SIGCONT with status {status}")
    finally:
        stop_feed.set()
        stop_events.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
                w.stop()

"""Many maximal reps PUT into one team: the worker stays up and ready, and leads still route.

The security audit's attack: ``PUT /v1/reps/b2r{i}`` of ~9 KB reps into one team grew its state
past Kafka's 1 MB record limit after ~110 PUTs; the producer refused the changelog record, the
worker crashed, and crashed again within seconds of every restart (the command was read again).
Now the API refuses a rep the team cannot take (422 naming ``team``), and the team refuses the
ones racing past that check, keeping them in the team view's ``refused_reps``.
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from rules.team import STATE_BYTES_BUDGET
from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, lead_in, one_rep_config, post_lead

PUTS = 130


def _maximal(i: int) -> dict[str, Any]:
    """The audit's rep: ~9 KB of name, skills, languages and webhook URL (every field at its limit)."""
    return {"team": "bloat", "name": "N" * 200,
            "skills": [f"{i % 100:02d}{j:02d}" + "s" * 60 for j in range(50)],
            "languages": [f"{j:02d}" + "l" * 62 for j in range(50)],
            "webhook_url": "https://hooks.example.com/" + "p" * 1970}


async def _put(api: aiohttp.ClientSession, worker: Worker, i: int) -> tuple[int, Any]:
    # A 503 is "retry shortly" (a rebalance: a topic missing at the start that shows up later
    # triggers one), as a client would: only 202 and 422 are answers.
    for _ in range(20):
        async with api.put(f"{worker.url}/v1/reps/b2r{i}", json=_maximal(i)) as r:
            if r.status != 503:
                return r.status, await r.json(content_type=None)
        await asyncio.sleep(0.5)
    return r.status, None


async def _bloat_team(api: aiohttp.ClientSession, worker: Worker) -> Any:
    async with api.get(f"{worker.url}/v1/teams/bloat") as r:
        return await r.json() if r.status == 200 else None


async def _rep_once_answered(api: aiohttp.ClientSession, worker: Worker, rep_id: str) -> Any:
    """``GET /v1/reps/{rep_id}`` once the team's answer is read (``None`` while it is pending)."""
    async with api.get(f"{worker.url}/v1/reps/{rep_id}") as r:
        body = await r.json()
        assert r.status == 200, body
        return None if "pending" in body else body


@pytest.mark.timeout(120)
async def test_maximal_reps_into_one_team_never_take_the_worker_down(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = one_rep_config(receiver, capacity=50)
    worker = Worker(spec)
    await worker.wait_ready()
    try:
        # In waves of 10 at once: the API's check sees the team as the waves before left it, so
        # some PUTs of a wave race past it, and the team itself must refuse them.
        answers: list[tuple[int, Any]] = []
        for first in range(0, PUTS, 10):
            answers += await asyncio.gather(*(_put(api, worker, i) for i in range(first, min(first + 10, PUTS))))
            await asyncio.sleep(0.2)
        statuses = [status for status, _ in answers]
        assert set(statuses) <= {202, 422}, answers
        refused_here = [body for status, body in answers if status == 422]
        assert refused_here, "the API took every rep"
        assert all({f["field"] for f in body["error"]["fields"]} == {"team"} for body in refused_here), refused_here
        assert worker.proc.poll() is None, worker.log()

        async def settled() -> Any:
            # Each rep the API accepted is in the team, or among those it refused.
            team = await _bloat_team(api, worker)
            applied = team and len(team["reps"]) + len(team.get("refused_reps", []))
            return team if applied == statuses.count(202) else None

        team = await eventually(settled, timeout=20, what="the team having applied every accepted rep")
        assert 40 <= len(team["reps"]) < PUTS  # ~9.5 KB each: about 60 fit in the budget
        assert len(team["reps"]) * 9_000 < STATE_BYTES_BUDGET
        for refusal in team.get("refused_reps", []):
            assert "bytes encoded" in refusal["reason"] and "N" * 20 not in refusal["reason"]

        # GET /v1/reps tells the same as the team: a rep it refused after the API's 202 is in no
        # team and says why (before session 17 it showed in the team with the refused profile).
        refused = team.get("refused_reps", [])
        assert refused, "no PUT raced past the API's check: nothing the team refused to look at"
        for refusal in refused:
            body = await eventually(lambda: _rep_once_answered(api, worker, refusal["rep_id"]),
                                    what=f"rep {refusal['rep_id']} answered by the team")
            assert (body["team"], body["in_team"]) == ("bloat", False), body
            assert body["refused"] == {"team": "bloat", "reason": refusal["reason"], "at": refusal["at"]}, body
            assert "name" not in body and "skills" not in body  # no profile: no team holds one
        for rep in team["reps"][:5]:
            body = await eventually(lambda: _rep_once_answered(api, worker, rep["rep_id"]),
                                    what=f"rep {rep['rep_id']} answered by the team")
            assert body["in_team"] is True and "refused" not in body and body["name"] == "N" * 200, body

        async with api.get(f"{worker.url}/readyz") as r:
            assert r.status == 200, await r.text()
        lead_id = await post_lead(api, worker, "after-the-bloat@example.com")
        await eventually(lambda: lead_in(api, worker, lead_id, "assigned"), what="a new lead assigned")

        # What crash-looped: a restart replays the team's commands and restores its value.
        worker.stop()
        worker = Worker(spec, port=worker.port, data_dir=worker.data_dir)
        await worker.wait_ready()
        again = await eventually(lambda: _bloat_team(api, worker), what="the team after the restart")
        assert len(again["reps"]) == len(team["reps"])
        lead_id = await post_lead(api, worker, "after-the-restart@example.com")
        await eventually(lambda: lead_in(api, worker, lead_id, "assigned"), what="a lead assigned after the restart")
        assert worker.proc.poll() is None
        logs = worker.log_path.read_text()  # both runs: the log is appended to
        assert "MessageSizeTooLarge" not in logs and "We experienced a crash" not in logs
    finally:
        worker.stop()

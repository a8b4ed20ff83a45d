"""Lead-to-account matching on the real stack: config accounts, the owner first, API-created accounts."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import Worker, WorkerSpec, eventually, ready_worker

CONFIG = """
routing:
  default_team: sdr
  tier_priorities: {strategic: 0}
accounts:
  - {domain: acme.example, name: Acme, owner: ana, tier: strategic}
teams:
  - id: sdr
    reps:
      - {id: ben, capacity: 5}
  - id: strategic
    strategy: weighted_round_robin
    reps:
      - {id: ana, capacity: 1}
      - {id: cy, capacity: 5, weight: 10}
"""


async def _json(response: aiohttp.ClientResponse) -> Any:
    return await response.json(content_type=None)


@pytest.fixture
async def worker(spec: WorkerSpec) -> AsyncIterator[Worker]:
    spec.config_yaml = CONFIG
    async with ready_worker(spec) as w:
        yield w


async def _post_lead(api: aiohttp.ClientSession, worker: Worker, lead: dict[str, Any]) -> str:
    async with api.post(f"{worker.url}/v1/leads", json=lead) as r:
        assert r.status == 202, await r.text()
        return str((await _json(r))["lead_id"])


async def _assigned(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> Any:
    async def check() -> Any:
        async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
            body = await _json(r)
        return body if r.status == 200 and body["routing"] == "assigned" else None
    return await eventually(check, timeout=30, what=f"lead {lead_id} assigned")


async def _team_ready(api: aiohttp.ClientSession, worker: Worker, team: str, reps: set[str]) -> None:
    async def check() -> bool:
        async with api.get(f"{worker.url}/v1/teams/{team}") as r:
            body = await _json(r)
        return r.status == 200 and reps <= {rep["rep_id"] for rep in body["reps"]}
    await eventually(check, timeout=30, what=f"team {team} has {sorted(reps)}")


async def test_an_owned_accounts_lead_goes_to_the_owner_then_to_the_team_when_the_owner_is_full(
    worker: Worker, api: aiohttp.ClientSession
) -> None:
    await _team_ready(api, worker, "strategic", {"ana", "cy"})
    # The e-mail's sub-domain and case do not matter: the account is the registrable domain.
    first = await _post_lead(api, worker, {"email": "Kim@EU.Acme.example", "source": "web", "country": "US"})
    lead = await _assigned(api, worker, first)
    assert lead["team_id"] == "strategic"
    decision = lead["assignment"]["decision"]
    # cy has ten times ana's weight: only the account owner rule gives ana the lead.
    assert (decision["winner"], decision["strategy"]) == ("ana", "account_owner")
    assert decision["reason"] == "account owner: ana owns the lead's account and is eligible"
    assert lead["account"]["domain"] == "acme.example" and lead["account"]["owner"] == "ana"
    captured = next(e for e in lead["timeline"] if e["kind"] == "captured")
    assert captured["detail"]["why"] == "account acme.example (Acme) is owned by ana (team strategic)"

    # ana (capacity 1) is full now: the next Acme lead goes to the team's strategy, which says why.
    second = await _post_lead(api, worker, {"email": "lee@acme.example", "source": "web"})
    decision = (await _assigned(api, worker, second))["assignment"]["decision"]
    assert (decision["winner"], decision["strategy"]) == ("cy", "weighted_round_robin")
    assert decision["reason"].startswith("account owner ana is not eligible (at capacity (1/1 open)); ")

    # A lead of no account follows the rules (here: the default team).
    other = await _post_lead(api, worker, {"email": "sam@globex.example", "source": "web"})
    lead = await _assigned(api, worker, other)
    assert (lead["team_id"], lead["assignment"]["rep_id"], lead["account"]) == ("sdr", "ben", None)


async def test_an_account_created_over_the_api_takes_effect(worker: Worker, api: aiohttp.ClientSession) -> None:
    await _team_ready(api, worker, "strategic", {"ana", "cy"})
    # Before the account exists, initech's leads go to the default team.
    before = await _post_lead(api, worker, {"email": "a@initech.example", "source": "web"})
    assert (await _assigned(api, worker, before))["team_id"] == "sdr"

    async with api.put(f"{worker.url}/v1/accounts/www.initech.example", json={"name": "Initech", "owner": "cy"}) as r:
        assert r.status == 202, await r.text()
        body = await _json(r)
    assert (body["domain"], body["team"]) == ("initech.example", "strategic")  # cy's team, from the directory

    async def stored() -> Any:
        async with api.get(f"{worker.url}/v1/accounts/initech.example") as r:
            return await _json(r) if r.status == 200 else None
    account = await eventually(stored, what="the account stored")
    assert (account["owner"], account["team"], account["name"]) == ("cy", "strategic", "Initech")

    # The match is read in order with the account's writes: the next lead sees it. The website
    # names the account too when the e-mail is a free provider's.
    after = await _post_lead(api, worker, {"email": "b.person@gmail.com", "source": "web",
                                           "attributes": {"website": "https://initech.example/contact"}})
    lead = await _assigned(api, worker, after)
    assert lead["team_id"] == "strategic"
    assert (lead["assignment"]["rep_id"], lead["assignment"]["decision"]["strategy"]) == ("cy", "account_owner")

    # Removed, the account no longer routes anything.
    async with api.delete(f"{worker.url}/v1/accounts/initech.example") as r:
        assert r.status == 202, await r.text()

    async def gone() -> bool:
        async with api.get(f"{worker.url}/v1/accounts/initech.example") as r:
            return r.status == 404
    await eventually(gone, what="the account removed")
    later = await _post_lead(api, worker, {"email": "c@initech.example", "source": "web"})
    assert (await _assigned(api, worker, later))["team_id"] == "sdr"

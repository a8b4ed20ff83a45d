"""Team selection on the real stack: region, state and segment rules pick the team, and say why."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import Worker, WorkerSpec, eventually, ready_worker

CONFIG = """
routing:
  default_team: sdr-global
  regions:
    EMEA: [DE, FR, ES, GB]
  rules:
    - {name: emea-enterprise, team: emea-ent, regions: [EMEA], company_sizes: [1000+], industries: [software]}
    - {name: emea, team: emea, regions: [EMEA]}
    - {name: us-west-execs, team: west, states: [US-CA, US-WA], seniorities: [vp, c_level]}
teams:
  - {id: emea-ent, reps: [{id: erin}]}
  - {id: emea, reps: [{id: eli}]}
  - {id: west, reps: [{id: wes}]}
  - {id: sdr-global, reps: [{id: gus}]}
"""


async def _json(response: aiohttp.ClientResponse) -> Any:
    return await response.json(content_type=None)


@pytest.fixture
async def worker(spec: WorkerSpec) -> AsyncIterator[Worker]:
    spec.config_yaml = CONFIG
    async with ready_worker(spec) as w:
        yield w


CASES = [
    # (lead, team, rep, the why of the team)
    ({"email": "a@bigsoft.example", "country": "DE", "attributes": {"employees": "5000-9999", "industry": "Software"}},
     "emea-ent", "erin", "routing rule #1 'emea-enterprise' matched: country DE in region EMEA, "
                         "employees 5000-9999 within 1000+, industry Software"),
    # The same region, a small company: the next rule.
    ({"email": "b@smallsoft.example", "country": "FR", "attributes": {"employees": "10-49", "industry": "software"}},
     "emea", "eli", "routing rule #2 'emea' matched: country FR in region EMEA"),
    # No country given: the phone's (+34, Spain) puts the lead in EMEA.
    ({"email": "c@iberia.example", "phone": "+34 612 345 678"},
     "emea", "eli", "routing rule #2 'emea' matched: country ES (from the phone) in region EMEA"),
    ({"email": "d@westco.example", "country": "US", "title": "VP of Sales", "attributes": {"state": "CA"}},
     "west", "wes", "routing rule #3 'us-west-execs' matched: state US-CA, seniority vp"),
    # A manager in California is no exec; nothing else matches: the default team.
    ({"email": "e@westco.example", "country": "US", "title": "Sales Manager", "attributes": {"state": "CA"}},
     "sdr-global", "gus", "no routing rule matched; default team sdr-global"),
]


async def test_rules_pick_the_team_by_region_state_and_segment(worker: Worker, api: aiohttp.ClientSession) -> None:
    lead_ids = []
    for lead, *_ in CASES:
        async with api.post(f"{worker.url}/v1/leads", json={"source": "web", **lead}) as r:
            assert r.status == 202, await r.text()
            lead_ids.append((await _json(r))["lead_id"])
    for lead_id, (_, team, rep, why) in zip(lead_ids, CASES):
        async def assigned(lead_id: str = lead_id) -> Any:
            async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
                body = await _json(r)
            return body if r.status == 200 and body["routing"] == "assigned" else None
        state = await eventually(assigned, timeout=30, what=f"lead for team {team} assigned")
        assert (state["team_id"], state["assignment"]["rep_id"]) == (team, rep)
        captured = next(e for e in state["timeline"] if e["kind"] == "captured")
        assert captured["detail"]["why"] == why

"""``PUT /v1/reps/{id}``: a rep's profile and a team's roster are bounded, with a 422 naming the field.

A security audit crash-looped a worker with ~110 PUTs of ~9 KB reps into one team: its state
outgrew Kafka's 1 MB record limit. The team refuses such a rep itself (``rules.team``); the API
says so first when it can see the team.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rules.reps import RepEntry
from rules.roster import (
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PLACES,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TERRITORIES,
    RepState,
)
from rules.commands import RepProfile
from rules.team import MAX_REPS, STATE_BYTES_BUDGET, RepRefusal, TeamState
from tests.connectors.conftest import AUTH, Client, ClientFactory, FakeEngine, team_state
from tests.connectors.test_api import error_of, fields_of
from tests.connectors.test_doc_curls import DOCS, curls

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _full(team_id: str) -> TeamState:
    reps = {f"r{i}": RepState(profile=RepProfile(rep_id=f"r{i}", team_id=team_id, name=f"Rep {i}"))
            for i in range(MAX_REPS)}
    return TeamState(team_id=team_id, reps=reps)


def _big(team_id: str, rep_id: str) -> RepProfile:
    return RepProfile(rep_id=rep_id, team_id=team_id, name="N" * MAX_NAME_LENGTH,
                      skills=tuple(f"{i:02d}" + "s" * 62 for i in range(MAX_TAGS)),
                      languages=tuple(f"{i:02d}" + "l" * 62 for i in range(MAX_TAGS)),
                      webhook_url="https://hooks.example.com/" + "p" * 1970)


async def test_a_put_into_a_full_team_is_a_422_naming_the_team(client: Client, engine: FakeEngine) -> None:
    engine.teams["emea"] = _full("emea")
    response = await client.put("/v1/reps/newcomer", json={"team": "emea", "name": "New"}, headers=AUTH)
    error = await error_of(response, 422, "invalid")
    assert f"has {MAX_REPS} reps, the most a team may have" in fields_of(error)["team"]
    assert engine.rep_commands == []


async def test_a_rep_of_a_full_team_may_still_be_changed(client: Client, engine: FakeEngine) -> None:
    engine.teams["emea"] = _full("emea")
    engine.reps["r7"] = RepEntry(rep_id="r7", team_id="emea", updated_at=NOW)
    response = await client.put("/v1/reps/r7", json={"team": "emea", "capacity": 9}, headers=AUTH)
    assert response.status == 202
    assert len(engine.rep_commands) == 1


async def test_a_put_that_would_outgrow_the_teams_byte_budget_is_a_422(client: Client, engine: FakeEngine) -> None:
    reps = {f"big{i}": RepState(profile=_big("emea", f"big{i}")) for i in range(70)}
    engine.teams["emea"] = TeamState(team_id="emea", reps=reps)
    body = {"team": "emea", "name": "N" * MAX_NAME_LENGTH, "skills": [f"{i:02d}" + "s" * 62 for i in range(MAX_TAGS)],
            "webhook_url": "https://hooks.example.com/" + "p" * 1970}
    response = await client.put("/v1/reps/big-new", json=body, headers=AUTH)
    error = await error_of(response, 422, "invalid")
    assert f"more than the {STATE_BYTES_BUDGET} a team may" in fields_of(error)["team"]
    assert engine.rep_commands == []


async def test_a_team_this_worker_does_not_see_is_left_to_the_team(client: Client, engine: FakeEngine) -> None:
    # The team's owner is another worker (or the team is new): accepted here, judged by the team.
    response = await client.put("/v1/reps/newcomer", json={"team": "elsewhere"}, headers=AUTH)
    assert response.status == 202


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "N" * (MAX_NAME_LENGTH + 1)}, "name"),
    ({"skills": ["s"] * (MAX_TAGS + 1)}, "skills"),
    ({"skills": ["s" * (MAX_TAG_LENGTH + 1)]}, "skills.0"),
    ({"skills": [""]}, "skills.0"),
    ({"languages": ["en"] * (MAX_TAGS + 1)}, "languages"),
    ({"languages": ["l" * (MAX_TAG_LENGTH + 1)]}, "languages.0"),
    ({"territories": ["US"] * (MAX_TERRITORIES + 1)}, "territories"),
    ({"webhook_url": "https://hooks.example.com/" + "p" * 2000}, "webhook_url"),
    ({"email": "e" * (MAX_EMAIL_LENGTH + 1)}, "email"),
])
async def test_an_oversize_field_is_a_422_naming_it(client: Client, engine: FakeEngine, body: dict[str, Any],
                                                    field: str) -> None:
    response = await client.put("/v1/reps/rep-ana", json={"team": "emea", **body}, headers=AUTH)
    error = await error_of(response, 422, "invalid")
    assert field in fields_of(error), fields_of(error)
    assert engine.rep_commands == []


async def test_territories_that_stand_for_too_many_places_are_a_422(make_client: ClientFactory,
                                                                    engine: FakeEngine) -> None:
    regions = {f"region{r}": tuple(f"US-{r:02d}{i:03d}" for i in range(100)) for r in range(6)}
    client = await make_client(regions=regions)
    response = await client.put("/v1/reps/rep-ana", json={"team": "emea", "territories": list(regions)},
                                headers=AUTH)
    error = await error_of(response, 422, "invalid")
    assert f"at most {MAX_PLACES}" in fields_of(error)["territories"]
    assert engine.rep_commands == []


async def test_the_team_view_shows_the_reps_the_team_refused(client: Client, engine: FakeEngine) -> None:
    state = team_state("emea", NOW)
    engine.teams["emea"] = state
    view = await (await client.get("/v1/teams/emea", headers=AUTH)).json()
    assert "refused_reps" not in view  # none refused: the view is as it was
    reason = f"team emea has {MAX_REPS} reps, the most a team may have ({MAX_REPS})"
    engine.teams["emea"] = TeamState(team_id="emea", reps=state.reps,
                                     refused_reps=(RepRefusal(rep_id="newcomer", reason=reason, at=NOW),))
    view = await (await client.get("/v1/teams/emea", headers=AUTH)).json()
    assert view["refused_reps"] == [{"rep_id": "newcomer", "reason": reason, "at": "2026-03-02T10:00:00+00:00"}]


async def test_the_full_team_example_is_refused_as_written(client: Client, engine: FakeEngine) -> None:
    """docs/routing.md, "How big a rep and a team may be": the PUT into a full team and its 422."""
    engine.teams["sdr-emea"] = _full("sdr-emea")
    (words,) = [w for w in curls("routing.md")
                if "PUT" in w and "-d" in w and w[w.index("-d") + 1] == '{"team": "sdr-emea"}']
    url = next(w for w in words if w.startswith("$API/"))
    headers = {v.split(":", 1)[0]: v.split(":", 1)[1].strip() for f, v in zip(words, words[1:]) if f == "-H"}
    headers["Authorization"] = AUTH["Authorization"]
    response = await client.put(url.removeprefix("$API"), data=words[words.index("-d") + 1].encode(), headers=headers)
    assert response.status == 422
    error = (await response.json())["error"]
    [field] = error["fields"]
    text = (DOCS / "routing.md").read_text(encoding="utf-8")
    assert f'"message": "{error["message"]}"' in text
    assert f'"field": "{field["field"]}"' in text and f'"reason": "{field["reason"]}"' in text

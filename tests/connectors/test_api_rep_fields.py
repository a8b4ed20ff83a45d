"""``PUT /v1/reps/{rep_id}``: hours or holidays need a time zone.

A time audit found a Sydney rep given mon-fri 09:00-17:00, holidays AU and no timezone read in
UTC (leads at 20:00 Sydney time, none in their day).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rules.commands import PutRep, RepProfile
from rules.reps import RepEntry
from rules.roster import RepState
from rules.team import TeamState
from tests.connectors.conftest import AUTH, Client, FakeEngine
from tests.connectors.test_api import error_of, fields_of

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOURS = {"mon-fri": ["09:00-17:00"]}


# --- the time zone of hours and holidays -----------------------------------------------------


@pytest.mark.parametrize("body", [
    {"working_hours": HOURS},
    {"holidays_country": "AU"},
    {"working_hours": HOURS, "holidays_country": "AU"},
])
async def test_hours_or_holidays_without_a_timezone_are_a_422_naming_it(client: Client, engine: FakeEngine,
                                                                        body: dict[str, Any]) -> None:
    response = await client.put("/v1/reps/sydney", json={"team": "apac", **body}, headers=AUTH)
    error = await error_of(response, 422, "invalid")
    assert "required with working_hours or holidays_country" in fields_of(error)["timezone"]
    assert engine.rep_commands == []
    response = await client.put("/v1/reps/sydney", json={"team": "apac", "timezone": "Australia/Sydney", **body},
                                headers=AUTH)
    assert response.status == 202, await response.text()
    response = await client.put("/v1/reps/london", json={"team": "emea", "timezone": "UTC", **body}, headers=AUTH)
    assert response.status == 202, await response.text()  # UTC, when named, is meant


async def test_a_rep_without_hours_needs_no_timezone(client: Client, engine: FakeEngine) -> None:
    response = await client.put("/v1/reps/ana", json={"team": "emea", "working_hours": {}}, headers=AUTH)
    assert response.status == 202, await response.text()


def _stored(engine: FakeEngine, *, in_directory: bool = True, **profile: Any) -> None:
    kept = RepProfile(rep_id="ana", team_id="emea", name="Ana", **profile)
    engine.reps["ana"] = RepEntry(rep_id="ana", team_id="emea", updated_at=NOW,
                                  profile=kept if in_directory else None)
    engine.teams["emea"] = TeamState(team_id="emea", reps={"ana": RepState(profile=kept)})


@pytest.mark.parametrize(("stored", "body", "status"), [
    # A partial PUT keeps the stored timezone: a given one counts.
    ({"timezone": "Australia/Sydney"}, {"working_hours": HOURS}, 202),
    ({"timezone": "Australia/Sydney"}, {"holidays_country": "AU"}, 202),
    # Hours already read in the stored zone: changing them changes nothing about the zone.
    ({"working_hours": {"mon": ("09:00-17:00",)}}, {"working_hours": HOURS}, 202),
    # A PUT that touches none of them passes, whatever is stored.
    ({"working_hours": {"mon": ("09:00-17:00",)}}, {"capacity": 3}, 202),
    # A rep with no zone and no hours given hours now: the bug the audit found, through a partial PUT.
    ({}, {"working_hours": HOURS}, 422),
    ({}, {"holidays_country": "AU"}, 422),
])
@pytest.mark.parametrize("in_directory", [True, False])
async def test_a_partial_put_is_judged_with_the_stored_timezone(client: Client, engine: FakeEngine,
                                                                stored: dict[str, Any], body: dict[str, Any],
                                                                status: int, in_directory: bool) -> None:
    _stored(engine, in_directory=in_directory, **stored)
    response = await client.put("/v1/reps/ana", json={"team": "emea", **body}, headers=AUTH)
    if status == 422:
        assert "timezone" in fields_of(await error_of(response, 422, "invalid"))
        assert engine.rep_commands == []
    else:
        assert response.status == 202, await response.text()
        (_, command), = engine.rep_commands
        assert isinstance(command, PutRep) and "timezone" in command.keep

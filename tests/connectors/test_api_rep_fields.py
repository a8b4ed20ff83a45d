"""``/v1/reps/{rep_id}``: the id is the YAML's (ASCII), and hours or holidays need a time zone.

A time audit found a Sydney rep given mon-fri 09:00-17:00, holidays AU and no timezone read in
UTC (leads at 20:00 Sydney time, none in their day); a security audit found rep ids with a
Cyrillic "А", Arabic digits and ".." accepted, where the YAML takes ASCII only.
"""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.api.errors import ApiError
from ops.metrics import Metrics
from rules.commands import PutRep, RepProfile
from rules.reps import Joining, RepEntry
from rules.roster import RepState
from rules.team import TeamState
from tests.connectors.conftest import AUTH, KEYS, Client, FakeClock, FakeEngine, build_app
from tests.connectors.test_api import error_of, fields_of

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOURS = {"mon-fri": ["09:00-17:00"]}


async def _raw(client: Client, method: str, path: bytes, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Send ``path`` as written: aiohttp's client would resolve "." and ".." before sending."""
    payload = orjson.dumps(body)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(b"%s %s HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                 % (method.encode(), path, KEYS["web-form"].encode(), len(payload), payload))
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, text = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(text)


# --- the rep id ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/v1/reps/%D0%90na",       # a Cyrillic А: looks like the rep "Ana"
    "/v1/reps/%D9%A1%D9%A2",  # Arabic-Indic digits
    "/v1/reps/ana%0A",        # a trailing newline, which a Python "$" would take
    "/v1/reps/%C3%A9lise",    # é: ids are ASCII, as in the YAML
    "/v1/reps/-ana",          # a letter or digit first
    "/v1/reps/" + "a" * 65,
])
async def test_a_rep_id_the_yaml_would_refuse_is_a_422_naming_it(client: Client, engine: FakeEngine,
                                                                 path: str) -> None:
    for method, body in (("PUT", {"team": "emea"}), ("DELETE", None), ("GET", None),
                         ("POST", {"status": "available"})):
        url = path + "/presence" if method == "POST" else path
        response = await client.request(method, url, json=body, headers=AUTH)
        error = await error_of(response, 422, "invalid")
        assert "ASCII letters" in fields_of(error)["rep_id"], (method, error)
    assert engine.rep_commands == []


@pytest.mark.parametrize("rep_id", ["\u0410na", "\u0661\u0662", "\u00e9lise"])
async def test_a_rep_stored_under_a_legacy_id_can_still_be_seen_and_deleted(
        client: Client, engine: FakeEngine, rep_id: str) -> None:
    """Ids the API took before 8a8c8a7 (``str.isalnum``): GET and DELETE reach them; PUT stays a 422."""
    from urllib.parse import quote

    from rules.commands import RetireRep

    path = "/v1/reps/" + quote(rep_id)
    engine.reps[rep_id] = RepEntry(rep_id=rep_id, team_id="emea", updated_at=NOW)
    response = await client.get(path, headers=AUTH)
    assert response.status == 200 and (await response.json())["rep_id"] == rep_id
    response = await client.delete(path, headers=AUTH)
    assert response.status == 202, await response.text()
    assert engine.rep_commands == [(rep_id, RetireRep(rep_id=rep_id, at=engine.rep_commands[0][1].at,
                                                      reason="retired through the API"))]
    for method, body in (("PUT", {"team": "emea"}), ("POST", {"status": "available"})):
        url = path + "/presence" if method == "POST" else path
        error = await error_of(await client.request(method, url, json=body, headers=AUTH), 422, "invalid")
        assert "ASCII letters" in fields_of(error)["rep_id"], method
    assert len(engine.rep_commands) == 1
    # Not stored: the same id is a 422 naming rep_id, as any id outside the rule.
    del engine.reps[rep_id]
    for method in ("GET", "DELETE"):
        error = await error_of(await client.request(method, path, headers=AUTH), 422, "invalid")
        assert "ASCII letters" in fields_of(error)["rep_id"], method


@pytest.mark.parametrize("path", [b"/v1/reps/..", b"/v1/reps/.", b"/v1/reps/%2E%2E"])
async def test_dot_segments_are_no_rep_id(client: Client, engine: FakeEngine, path: bytes) -> None:
    status, body = await _raw(client, "PUT", path, {"team": "emea"})
    assert status in (404, 422), body
    if status == 422:  # the server took it as an id: refused, naming it
        assert "rep_id" in fields_of(body["error"])
    assert engine.rep_commands == []


async def test_the_dot_dot_id_is_refused_as_sent(client: Client, engine: FakeEngine) -> None:
    status, body = await _raw(client, "PUT", b"/v1/reps/..", {"team": "emea"})
    assert status == 422 and "rep_id" in fields_of(body["error"]), body


@pytest.mark.parametrize("rep_id", ["ana", "Ana.Lopez_2", "r-1", "9", "a" * 64])
async def test_ascii_ids_are_taken(client: Client, engine: FakeEngine, rep_id: str) -> None:
    response = await client.put(f"/v1/reps/{rep_id}", json={"team": "emea"}, headers=AUTH)
    assert response.status == 202, await response.text()


async def test_the_team_in_the_body_follows_the_same_rule(client: Client, engine: FakeEngine) -> None:
    response = await client.put("/v1/reps/ana", json={"team": "\u0410pac"}, headers=AUTH)
    assert "team" in fields_of(await error_of(response, 422, "invalid"))


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


class _TablesUnsure(FakeEngine):
    """A worker whose stop or rebalance began after the rep's ownership was checked: a team absent
    from its tables is a 503 (``streams.web.Engine._absent``), whichever worker owns the team."""

    def team(self, team_id: str) -> TeamState | None:
        if team_id in self.teams:
            return self.teams[team_id]
        raise ApiError(503, "unavailable", "the worker that owns this team is stopping; retry shortly",
                       headers={"Retry-After": "2"})


async def test_a_put_whose_team_is_elsewhere_goes_on_while_the_tables_are_unsure(
        metrics: Metrics, clock: FakeClock) -> None:
    # The s16 review: the team-room check turned "not here, tables unsure" into a 503 for a team
    # that another worker owns; the team checks admission again when it applies the rep.
    engine = _TablesUnsure()
    async with TestClient(TestServer(build_app(engine, metrics, clock))) as client:
        r = await client.put("/v1/reps/ana", json={"team": "east", "capacity": 5}, headers=AUTH)
        assert r.status == 202, await r.text()
    assert [type(c).__name__ for _, c in engine.rep_commands] == ["PutRep"]


async def test_a_partial_put_is_judged_with_the_change_still_waiting_for_the_team(
        client: Client, engine: FakeEngine) -> None:
    """Review s17-a A4: PUT {"timezone": "Australia/Sydney"}, then at once PUT {"working_hours": …}.
    The directory fills the second from the first (still waiting for the team's answer): it was a
    422 "timezone required", judged against the profile from before the first."""
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    held = RepProfile(rep_id="ana", team_id="emea", name="Ana", capacity=2)
    sydney = RepProfile(rep_id="ana", team_id="emea", name="Ana", capacity=2, timezone="Australia/Sydney")
    engine.reps["ana"] = RepEntry(rep_id="ana", team_id="emea", updated_at=now, profile=held, moves=2, answered=1,
                                  asked=Joining(team_id="emea", move=2, profile=sydney, config_digest=None,
                                                origin="api", since=now))
    response = await client.put("/v1/reps/ana", json={"team": "emea", "working_hours": HOURS}, headers=AUTH)
    assert response.status == 202, await response.text()
    (_, command), = engine.rep_commands
    assert isinstance(command, PutRep) and "timezone" in command.keep

"""POST /v1/leads/{id}/activities: a command for good input; a past ``at`` is a 422 naming it and a
rep who does not hold the lead a 409 naming rep_id (as qualification answers), nothing sent."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rules.commands import RecordActivity
from sla.clock import FakeClock
from tests.connectors.conftest import AUTH, Client, FakeEngine, lead_state


async def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


async def test_the_holders_call_is_sent_to_the_lead(client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    engine.leads[state.lead_id] = state
    clock.advance(30)
    response = await client.post(f"/v1/leads/{state.lead_id}/activities", headers=AUTH,
                                 json={"type": "call", "rep_id": "rep-ana", "outcome": "connected"})
    assert response.status == 202, await response.text()
    ((lead_id, command),) = engine.lead_commands
    assert lead_id == state.lead_id and isinstance(command, RecordActivity)
    assert command.rep_id == "rep-ana" and command.at == clock.now()


@pytest.mark.parametrize("at", ["2020-01-01T00:00:00Z", "captured-1s"])
async def test_an_activity_before_the_capture_is_a_422_naming_at(client: Client, engine: FakeEngine,
                                                                 clock: FakeClock, at: str) -> None:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    engine.leads[state.lead_id] = state
    clock.advance(60)
    when = (state.captured_at - timedelta(seconds=1)).isoformat() if at == "captured-1s" else at
    error = await error_of(await client.post(f"/v1/leads/{state.lead_id}/activities", headers=AUTH,
                                             json={"type": "call", "rep_id": "rep-ana", "at": when}),
                           422, "invalid")
    assert [f["field"] for f in error["fields"]] == ["at"]
    assert "before the lead was captured" in error["fields"][0]["reason"]
    assert engine.lead_commands == []
    # The capture instant itself, and anything after it, is fine.
    response = await client.post(f"/v1/leads/{state.lead_id}/activities", headers=AUTH,
                                 json={"type": "call", "rep_id": "rep-ana", "at": state.captured_at.isoformat()})
    assert response.status == 202, await response.text()


@pytest.mark.parametrize(("holder", "rep_id"), [("rep-eva", "rep-ana"), (None, "rep-ana"),
                                                ("rep-ana", "nobody-at-all")],
                         ids=["held by another rep", "held by nobody", "no such rep"])
async def test_a_rep_who_does_not_hold_the_lead_cannot_log_work_on_it(
        client: Client, engine: FakeEngine, clock: FakeClock, holder: str | None, rep_id: str) -> None:
    state = lead_state("ana@example.com", clock.now(), assigned_to=holder)
    engine.leads[state.lead_id] = state
    error = await error_of(await client.post(f"/v1/leads/{state.lead_id}/activities", headers=AUTH,
                                             json={"type": "call", "rep_id": rep_id}), 409, "conflict")
    assert [f["field"] for f in error["fields"]] == ["rep_id"]
    assert rep_id in error["fields"][0]["reason"] and "rep_id" in error["message"]
    if holder is not None:
        assert error["fields"][0]["reason"] == f"the lead is held by another rep, not {rep_id}"
    assert engine.lead_commands == []
    # Without a rep_id (the CRM, a manager) the activity is taken, as qualification answers are.
    response = await client.post(f"/v1/leads/{state.lead_id}/activities", headers=AUTH, json={"type": "call"})
    assert response.status == 202, await response.text()


async def test_a_closed_lead_takes_an_activity_without_a_rep(client: Client, engine: FakeEngine,
                                                             clock: FakeClock) -> None:
    closed = lead_state("bo@example.com", clock.now(), assigned_to="rep-ana", closed=True)
    engine.leads[closed.lead_id] = closed
    # Its rep let it go: naming them is a 409; without a rep it is history (never a first contact).
    await error_of(await client.post(f"/v1/leads/{closed.lead_id}/activities", headers=AUTH,
                                     json={"type": "call", "rep_id": "rep-ana"}), 409, "conflict")
    response = await client.post(f"/v1/leads/{closed.lead_id}/activities", headers=AUTH, json={"type": "call"})
    assert response.status == 202, await response.text()

"""``POST /v1/leads/{id}/accept`` and ``/decline``: the rep's answer to an offer."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from rules.commands import AnswerOffer
from rules.lead import LeadState
from sla.clock import FakeClock
from tests.connectors.conftest import AUTH, Client, FakeEngine, lead_state
from tests.connectors.test_api import error_of, fields_of


def offered(clock: FakeClock, rep_id: str = "rep-ana") -> LeadState:
    state = lead_state("ana@example.com", clock.now(), assigned_to=rep_id)
    return replace(state, routing="offered", offer_expires_at=clock.now() + timedelta(seconds=30))


@pytest.mark.parametrize(("verb", "accepted"), [("accept", True), ("decline", False)])
async def test_the_offered_rep_answers(client: Client, engine: FakeEngine, clock: FakeClock,
                                       verb: str, accepted: bool) -> None:
    state = offered(clock)
    engine.leads[state.lead_id] = state
    body: dict[str, Any] = {"rep_id": "rep-ana"} if accepted else {"rep_id": "rep-ana", "reason": "no German"}
    response = await client.post(f"/v1/leads/{state.lead_id}/{verb}", json=body, headers=AUTH)
    assert response.status == 202
    # Received, not decided: the lead applies the first answer to reach it (docs/routing.md); the
    # answer is never claimed as "accepted"/"declined" here, since a racing one may win.
    assert await response.json() == {"lead_id": state.lead_id, "status": "received", "answer": verb,
                                     "rep_id": "rep-ana", "route_id": state.route_id}
    assert engine.lead_commands == [(state.lead_id, AnswerOffer(
        lead_id=state.lead_id, rep_id="rep-ana", route_id=state.route_id, accepted=accepted,
        reason=body.get("reason"), at=clock.now()))]
    assert engine.forwarded == [("lead", state.lead_id)]  # answered by the lead's owner


async def test_answers_that_do_not_match_an_open_offer_are_409(client: Client, engine: FakeEngine,
                                                               clock: FakeClock) -> None:
    state = offered(clock)
    engine.leads[state.lead_id] = state
    error = await error_of(await client.post(f"/v1/leads/{state.lead_id}/accept", json={"rep_id": "rep-bo"},
                                             headers=AUTH), 409, "conflict")
    assert "offered to another rep, not rep-bo" in error["message"]
    assigned = lead_state("bo@example.com", clock.now(), assigned_to="rep-bo")
    engine.leads[assigned.lead_id] = assigned
    error = await error_of(await client.post(f"/v1/leads/{assigned.lead_id}/decline", json={"rep_id": "rep-bo"},
                                             headers=AUTH), 409, "conflict")
    assert "no open offer (it is assigned)" in error["message"]
    await error_of(await client.post("/v1/leads/ld_000000000000000000000000/accept", json={"rep_id": "rep-bo"},
                                     headers=AUTH), 404, "not_found")
    assert engine.lead_commands == []


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({}, "rep_id", "required"),
    ({"rep_id": ""}, "rep_id", "required"),
    ({"rep_id": 7}, "rep_id", "required"),
    ({"rep_id": "rep-ana", "reason": "x" * 501}, "reason", "at most 500"),
    ({"rep_id": "rep-ana", "why": "x"}, "why", "unknown field"),
    (["rep-ana"], "(body)", "expected an object"),
])
async def test_a_bad_answer_is_422(client: Client, engine: FakeEngine, clock: FakeClock,
                                   body: Any, field: str, reason: str) -> None:
    state = offered(clock)
    engine.leads[state.lead_id] = state
    error = await error_of(await client.post(f"/v1/leads/{state.lead_id}/decline", json=body, headers=AUTH),
                           422, "invalid")
    assert reason in fields_of(error)[field]
    assert engine.lead_commands == []

"""POST /v1/leads/{id}/qualification and POST /v1/crm/events: commands for good input, clear 4xx and nothing sent otherwise."""
from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook

from connectors.crm import EventsAuth
from rules.commands import RecordActivity, RecordCrmEvent, RecordQualification
from rules.opportunity import Opportunity, opportunity_id_for
from sla.clock import FakeClock
from tests.connectors.conftest import AUTH, Client, ClientFactory, FakeEngine, lead_state

SECRET = "whsec_" + base64.b64encode(b"c" * 32).decode()
BANT = {"budget": "approved", "authority": "decision_maker", "need": "leads wait days", "timeline": "this_quarter"}


async def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


@pytest.fixture
async def crm_client(make_client: ClientFactory) -> Client:
    return await make_client(crm_events=EventsAuth(secret=SECRET, tolerance_s=300))


# --- qualification ---------------------------------------------------------------------------


async def test_answers_are_sent_to_the_lead_with_the_verdict(client: Client, engine: FakeEngine,
                                                             clock: FakeClock) -> None:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    engine.leads[state.lead_id] = state
    response = await client.post(f"/v1/leads/{state.lead_id}/qualification", headers=AUTH,
                                 json={"framework": "bant", "answers": BANT, "rep_id": "rep-ana"})
    assert response.status == 202, await response.text()
    body = await response.json()
    assert body["sql"] is True and body["framework"] == "BANT" and body["missing"] == []
    ((lead_id, command),) = engine.lead_commands
    assert lead_id == state.lead_id and isinstance(command, RecordQualification)
    assert command.answers == BANT and command.qualification_id == body["qualification_id"]


@pytest.mark.parametrize(("body", "fields"), [
    ({"framework": "SPICED", "answers": BANT}, ["framework"]),
    ({"framework": 3, "answers": BANT}, ["framework"]),
    ({"framework": "BANT", "answers": {"budget": 5000}}, ["answers.budget"]),
    ({"framework": "BANT", "answers": {"colour": "red"}}, ["answers.colour"]),
    ({"framework": "MEDDIC", "answers": {"champion": "yes", "metrics": 3}}, ["answers.champion", "answers.metrics"]),
    ({"framework": "BANT", "answers": []}, ["answers"]),
    ({"framework": "BANT", "answers": BANT, "extra": 1}, ["extra"]),
    ({"framework": "BANT", "answers": BANT, "at": "yesterday"}, ["at"]),
])
async def test_bad_answers_are_a_422_naming_the_field_and_change_nothing(
        client: Client, engine: FakeEngine, clock: FakeClock, body: dict[str, Any], fields: list[str]) -> None:
    state = lead_state("ana@example.com", clock.now())
    engine.leads[state.lead_id] = state
    error = await error_of(await client.post(f"/v1/leads/{state.lead_id}/qualification", headers=AUTH, json=body),
                           422, "invalid")
    assert [f["field"] for f in error["fields"]] == fields
    assert engine.lead_commands == []


@pytest.mark.parametrize(("holder", "rep_id"), [("rep-eva", "rep-ana"), (None, "rep-ana")],
                         ids=["held by another rep", "held by nobody"])
async def test_a_rep_who_does_not_hold_the_lead_cannot_qualify_it(
        client: Client, engine: FakeEngine, clock: FakeClock, holder: str | None, rep_id: str) -> None:
    """As accept/decline: a rep answers only for a lead they hold; a 409 that names rep_id, nothing sent."""
    state = lead_state("ana@example.com", clock.now(), assigned_to=holder)
    engine.leads[state.lead_id] = state
    error = await error_of(await client.post(f"/v1/leads/{state.lead_id}/qualification", headers=AUTH,
                                             json={"framework": "BANT", "answers": BANT, "rep_id": rep_id}),
                           409, "conflict")
    assert [f["field"] for f in error["fields"]] == ["rep_id"]
    assert rep_id in error["fields"][0]["reason"] and "rep_id" in error["message"]
    if holder is not None:
        assert error["fields"][0]["reason"] == f"the lead is held by another rep, not {rep_id}"
    assert engine.lead_commands == []
    # Without a rep_id (the CRM, a manager) the answers are taken.
    response = await client.post(f"/v1/leads/{state.lead_id}/qualification", headers=AUTH,
                                 json={"framework": "BANT", "answers": BANT})
    assert response.status == 202, await response.text()


async def test_unknown_or_closed_leads(client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    await error_of(await client.post("/v1/leads/ld_000000000000000000000000/qualification", headers=AUTH,
                                     json={"framework": "BANT", "answers": BANT}), 404, "not_found")
    closed = lead_state("bo@example.com", clock.now(), closed=True)
    engine.leads[closed.lead_id] = closed
    error = await error_of(await client.post(f"/v1/leads/{closed.lead_id}/qualification", headers=AUTH,
                                             json={"framework": "BANT", "answers": BANT}), 409, "conflict")
    assert "the lead is nurture" in error["message"]
    await error_of(await client.post(f"/v1/leads/{closed.lead_id}/qualification",
                                     json={"framework": "BANT", "answers": BANT}), 401, "unauthorized")
    assert engine.lead_commands == []


# --- CRM events ------------------------------------------------------------------------------


def signed(body: dict[str, Any], clock: FakeClock, msg_id: str = "msg_crm_1", *, secret: str = SECRET,
           age_s: int = 0) -> tuple[bytes, dict[str, str]]:
    raw = orjson.dumps(body)
    stamp = clock.now().timestamp() - age_s
    from datetime import UTC, datetime
    headers = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), raw.decode())
    return raw, {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp)), "webhook-signature": headers,
                 "Content-Type": "application/json"}


def converted(engine: FakeEngine, clock: FakeClock) -> str:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    state = replace(state, status="converted", routing="released",
                    opportunity=Opportunity(opportunity_id="op_1", created_at=clock.now()))
    engine.leads[state.lead_id] = state
    return state.lead_id


async def test_a_signed_lost_event_becomes_a_command_once(crm_client: Client, engine: FakeEngine,
                                                          clock: FakeClock) -> None:
    lead_id = converted(engine, clock)
    raw, headers = signed({"type": "opportunity.lost", "data": {"lead_id": lead_id, "reason": "no budget"}}, clock)
    first = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert first.status == 202, await first.text()
    again = await crm_client.post("/v1/crm/events", data=raw, headers=headers)  # replayed: same answer
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    ((_, command),) = engine.lead_commands
    assert isinstance(command, RecordCrmEvent) and command.kind == "lost" and command.reason == "no budget"
    assert command.event_id == "crm:msg_crm_1"


async def test_an_activity_logged_in_the_crm_counts_as_contact(crm_client: Client, engine: FakeEngine,
                                                               clock: FakeClock) -> None:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    engine.leads[state.lead_id] = state
    raw, headers = signed({"type": "activity.logged", "data": {"lead_id": state.lead_id,
                                                               "activity": {"type": "call", "rep_id": "rep-ana"}}},
                          clock)
    assert (await crm_client.post("/v1/crm/events", data=raw, headers=headers)).status == 202
    ((_, command),) = engine.lead_commands
    assert isinstance(command, RecordActivity) and command.type == "call" and command.activity_id == "crm:msg_crm_1"


@pytest.mark.parametrize(("activity", "status", "field"), [
    ({"type": "call", "rep_id": "rep-ana", "at": "2020-01-01T00:00:00Z"}, 422, "data.activity.at"),
    ({"type": "call", "rep_id": "nobody-at-all"}, 409, "data.activity.rep_id"),
], ids=["before the capture", "a rep who does not hold the lead"])
async def test_a_crm_activity_gets_the_activity_endpoints_checks_up_front(
        crm_client: Client, engine: FakeEngine, clock: FakeClock, activity: dict[str, str], status: int,
        field: str) -> None:
    # As POST /v1/leads/{id}/activities: refused naming the field, nothing sent (it answered 202
    # and the lead dropped it later).
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    engine.leads[state.lead_id] = state
    clock.advance(60)
    raw, headers = signed({"type": "activity.logged", "data": {"lead_id": state.lead_id, "activity": activity}},
                          clock)
    response = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert response.status == status, await response.text()
    assert [f["field"] for f in (await response.json())["error"]["fields"]] == [field]
    assert engine.lead_commands == []


@pytest.mark.parametrize(("case", "status", "code"), [
    ("bad signature", 401, "bad_signature"), ("stale timestamp", 401, "bad_signature"),
    ("no headers", 401, "bad_signature"), ("unknown lead", 404, "not_found"), ("wrong type", 422, "invalid"),
    ("unknown event", 422, "invalid"), ("no opportunity", 409, "conflict"), ("no stage", 422, "invalid"),
])
async def test_bad_crm_events_are_refused_and_change_nothing(crm_client: Client, engine: FakeEngine,
                                                             clock: FakeClock, case: str, status: int,
                                                             code: str) -> None:
    lead_id = converted(engine, clock)
    open_lead = lead_state("bo@example.com", clock.now())
    engine.leads[open_lead.lead_id] = open_lead
    body: dict[str, Any] = {"type": "opportunity.won", "data": {"lead_id": lead_id, "amount": 1200}}
    options: dict[str, Any] = {}
    if case == "bad signature":
        options["secret"] = "whsec_" + base64.b64encode(b"x" * 32).decode()
    elif case == "stale timestamp":
        options["age_s"] = 301
    elif case == "unknown lead":
        body["data"]["lead_id"] = "ld_000000000000000000000000"
    elif case == "wrong type":
        body["data"]["amount"] = "a lot"
    elif case == "unknown event":
        body["type"] = "opportunity.exploded"
    elif case == "no opportunity":
        body["data"]["lead_id"] = open_lead.lead_id
    elif case == "no stage":
        body["type"] = "opportunity.stage_changed"
    raw, headers = signed(body, clock, **options)
    if case == "no headers":
        headers = {"Content-Type": "application/json"}
    error = await error_of(await crm_client.post("/v1/crm/events", data=raw, headers=headers), status, code)
    if case == "wrong type":
        assert error["fields"][0]["field"] == "data.amount"
    assert engine.lead_commands == []


async def test_crm_events_are_off_without_a_secret(client: Client) -> None:
    await error_of(await client.post("/v1/crm/events", json={}), 404, "not_found")


def _with_opportunity(engine: FakeEngine, clock: FakeClock, cycle: int = 1) -> tuple[str, str]:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    opportunity_id = opportunity_id_for(state.lead_id, cycle)
    engine.leads[state.lead_id] = replace(state, status="converted", routing="released", opportunity=Opportunity(
        opportunity_id=opportunity_id, created_at=clock.now()))
    return state.lead_id, opportunity_id


async def test_an_event_naming_only_the_opportunity_is_a_422_saying_why(crm_client: Client, engine: FakeEngine,
                                                                       clock: FakeClock) -> None:
    """The op_ id is a one-way hash of the lead id and cycle: it cannot name the lead on its own."""
    _, opportunity_id = _with_opportunity(engine, clock)
    raw, headers = signed({"type": "opportunity.won", "data": {"opportunity_id": opportunity_id}}, clock)
    error = await error_of(await crm_client.post("/v1/crm/events", data=raw, headers=headers), 422, "invalid")
    (field,) = error["fields"]
    assert field["field"] == "data.lead_id" and "one-way hash" in field["reason"]
    assert "crm.hubspot.lead_id_property" in field["reason"] and engine.lead_commands == []


async def test_an_event_naming_the_lead_and_its_opportunity_is_taken(crm_client: Client, engine: FakeEngine,
                                                                     clock: FakeClock) -> None:
    lead_id, opportunity_id = _with_opportunity(engine, clock)
    raw, headers = signed({"type": "opportunity.won", "data": {"lead_id": lead_id, "opportunity_id": opportunity_id,
                                                               "amount": 1200}}, clock)
    response = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert response.status == 202, await response.text()
    ((_, command),) = engine.lead_commands
    assert isinstance(command, RecordCrmEvent) and command.kind == "won"


async def test_an_event_about_an_earlier_cycles_opportunity_is_a_409(crm_client: Client, engine: FakeEngine,
                                                                     clock: FakeClock) -> None:
    lead_id, current = _with_opportunity(engine, clock, cycle=2)
    earlier = opportunity_id_for(lead_id, 1)
    raw, headers = signed({"type": "opportunity.lost", "data": {"lead_id": lead_id, "opportunity_id": earlier}},
                          clock)
    error = await error_of(await crm_client.post("/v1/crm/events", data=raw, headers=headers), 409, "conflict")
    assert [f["field"] for f in error["fields"]] == ["data.opportunity_id"] and current in error["message"]
    assert engine.lead_commands == []

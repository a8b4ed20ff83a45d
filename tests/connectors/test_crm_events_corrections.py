"""POST /v1/crm/events: a deal closed the other way is a correction (202), a stage change of a closed
deal a reopen (202), the same close again a 409, and the command carries the opportunity the CRM
named for the lead to check."""
from __future__ import annotations

from dataclasses import replace

import pytest

from rules.commands import RecordCrmEvent
from rules.opportunity import Opportunity, opportunity_id_for
from sla.clock import FakeClock
from tests.connectors.conftest import Client, FakeEngine, lead_state
from tests.connectors.test_crm_api import crm_client, error_of, signed

__all__ = ["crm_client"]  # the fixture, imported for pytest

CLOSED = {"won": "won", "lost": "recycled"}


def closed(engine: FakeEngine, clock: FakeClock, how: str) -> tuple[str, str]:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    opportunity_id = opportunity_id_for(state.lead_id, 1)
    engine.leads[state.lead_id] = replace(state, status=CLOSED[how], routing="released", opportunity=Opportunity(
        opportunity_id=opportunity_id, created_at=clock.now(), status=how))  # type: ignore[arg-type]
    return state.lead_id, opportunity_id


@pytest.mark.parametrize(("was", "now"), [("lost", "won"), ("won", "lost")])
async def test_a_close_the_other_way_is_a_correction_sent_to_the_lead(crm_client: Client, engine: FakeEngine,
                                                                      clock: FakeClock, was: str, now: str) -> None:
    lead_id, opportunity_id = closed(engine, clock, was)
    raw, headers = signed({"type": f"opportunity.{now}", "data": {"lead_id": lead_id, "opportunity_id": opportunity_id,
                                                                  "amount": 48000}}, clock)
    response = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert response.status == 202, await response.text()
    ((_, command),) = engine.lead_commands
    assert isinstance(command, RecordCrmEvent) and (command.kind, command.opportunity_id) == (now, opportunity_id)


@pytest.mark.parametrize("how", ["won", "lost"])
async def test_the_same_close_again_is_a_409(crm_client: Client, engine: FakeEngine, clock: FakeClock,
                                             how: str) -> None:
    lead_id, _ = closed(engine, clock, how)
    raw, headers = signed({"type": f"opportunity.{how}", "data": {"lead_id": lead_id}}, clock)
    error = await error_of(await crm_client.post("/v1/crm/events", data=raw, headers=headers), 409, "conflict")
    assert error["message"].endswith(f"the opportunity is already {how}") and engine.lead_commands == []


async def test_an_event_without_an_opportunity_id_sends_none(crm_client: Client, engine: FakeEngine,
                                                             clock: FakeClock) -> None:
    lead_id, _ = closed(engine, clock, "lost")
    raw, headers = signed({"type": "opportunity.won", "data": {"lead_id": lead_id}}, clock)
    assert (await crm_client.post("/v1/crm/events", data=raw, headers=headers)).status == 202
    ((_, command),) = engine.lead_commands
    assert isinstance(command, RecordCrmEvent) and command.opportunity_id is None


@pytest.mark.parametrize("how", ["won", "lost"])
async def test_a_stage_change_of_a_closed_deal_is_a_reopen_sent_to_the_lead(crm_client: Client, engine: FakeEngine,
                                                                           clock: FakeClock, how: str) -> None:
    """It was a 409, and the Salesforce relay's fault had Salesforce redeliver it for 24 h."""
    lead_id, opportunity_id = closed(engine, clock, how)
    raw, headers = signed({"type": "opportunity.stage_changed", "data": {
        "lead_id": lead_id, "opportunity_id": opportunity_id, "stage": "Negotiation"}}, clock)
    response = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert response.status == 202, await response.text()
    ((_, command),) = engine.lead_commands
    assert isinstance(command, RecordCrmEvent) and (command.kind, command.stage) == ("stage_changed", "Negotiation")


async def test_a_stage_change_to_the_stage_the_deal_closed_at_is_a_409(crm_client: Client, engine: FakeEngine,
                                                                        clock: FakeClock) -> None:
    lead_id, _ = closed(engine, clock, "lost")
    state = engine.leads[lead_id]
    assert state.opportunity is not None
    engine.leads[lead_id] = replace(state, opportunity=replace(state.opportunity, stage="Closed Lost"))
    raw, headers = signed({"type": "opportunity.stage_changed", "data": {"lead_id": lead_id, "stage": "Closed Lost"}},
                          clock)
    error = await error_of(await crm_client.post("/v1/crm/events", data=raw, headers=headers), 409, "conflict")
    assert error["message"].endswith("the opportunity is already lost at stage Closed Lost")
    assert engine.lead_commands == []

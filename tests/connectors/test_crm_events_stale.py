"""POST /v1/crm/events: an event that happened before the deal's last close, correction or reopen is
stale (a redelivery out of order): 200 ``ignored``, never a 409 that Salesforce would redeliver for
24 h, and still sent to the lead, which says ``opportunity.event_ignored`` (review s18-b F1)."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rules.commands import RecordCrmEvent
from sla.clock import FakeClock
from tests.connectors.conftest import Client, FakeEngine
from tests.connectors.test_crm_api import crm_client, error_of, signed
from tests.connectors.test_crm_events_corrections import closed
from tests.connectors.test_openapi import _conforms

__all__ = ["crm_client"]  # the fixture, imported for pytest


def closed_an_hour_ago(engine: FakeEngine, clock: FakeClock, how: str) -> tuple[str, str]:
    lead_id, opportunity_id = closed(engine, clock, how)
    state = engine.leads[lead_id]
    assert state.opportunity is not None
    an_hour_ago = clock.now() - timedelta(hours=1)  # by the CRM's clock, as its close's timestamp said
    engine.leads[lead_id] = replace(state, opportunity=replace(state.opportunity, closed_at=an_hour_ago,
                                                               crm_moved_at=an_hour_ago))
    return lead_id, opportunity_id


@pytest.mark.parametrize(("how", "kind", "extra"), [("lost", "stage_changed", {"stage": "Negotiation"}),
                                                    ("lost", "won", {"amount": 48000}),
                                                    ("won", "lost", {}),
                                                    ("won", "won", {})])  # the same close, older: ignored too
async def test_an_event_older_than_the_close_is_answered_ignored(crm_client: Client, engine: FakeEngine,
                                                                 clock: FakeClock, how: str, kind: str,
                                                                 extra: dict[str, object]) -> None:
    lead_id, opportunity_id = closed_an_hour_ago(engine, clock, how)
    when = (clock.now() - timedelta(hours=2)).isoformat()
    raw, headers = signed({"type": f"opportunity.{kind}", "timestamp": when,
                           "data": {"lead_id": lead_id, "opportunity_id": opportunity_id, **extra}}, clock)
    response = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert response.status == 200, await response.text()
    await _conforms(response, "/v1/crm/events", "post")  # documented: 200 CrmEventIgnored
    body = await response.json()
    assert body["status"] == "ignored" and body["why"].startswith("stale: it happened at")
    ((_, command),) = engine.lead_commands  # the lead decides the same and says opportunity.event_ignored
    assert isinstance(command, RecordCrmEvent) and command.at == command.crm_at == clock.now() - timedelta(hours=2)
    # Delivered again (a CRM retry, the same webhook-id): the same answer, nothing sent twice.
    again = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert (await again.json())["status"] == "ignored" and len(engine.lead_commands) == 1


async def test_an_event_after_the_close_is_still_a_correction(crm_client: Client, engine: FakeEngine,
                                                              clock: FakeClock) -> None:
    lead_id, _ = closed_an_hour_ago(engine, clock, "lost")
    raw, headers = signed({"type": "opportunity.won", "timestamp": (clock.now() - timedelta(minutes=5)).isoformat(),
                           "data": {"lead_id": lead_id}}, clock)
    response = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert response.status == 202 and (await response.json())["status"] == "accepted"


async def test_without_a_timestamp_the_event_is_as_late_as_its_arrival(crm_client: Client, engine: FakeEngine,
                                                                       clock: FakeClock) -> None:
    """No time from the CRM: ordered by arrival, as before (the same close again stays a 409)."""
    lead_id, _ = closed_an_hour_ago(engine, clock, "lost")
    raw, headers = signed({"type": "opportunity.lost", "data": {"lead_id": lead_id}}, clock)
    error = await error_of(await crm_client.post("/v1/crm/events", data=raw, headers=headers), 409, "conflict")
    assert error["message"].endswith("the opportunity is already lost")


@pytest.mark.parametrize(("field", "stamp"), [("timestamp", "0001-01-01T00:00:00+14:00"),  # before year 1 in UTC
                                              ("timestamp", "0001-01-01T00:00:00Z"),  # .NET's DateTime.MinValue
                                              ("timestamp", "1970-01-01T00:00:00Z")])  # an epoch 0
async def test_an_implausible_time_is_a_4xx_naming_the_field(crm_client: Client, engine: FakeEngine,
                                                            clock: FakeClock, field: str, stamp: str) -> None:
    """Was a 500 (OverflowError in astimezone) for the first; the placeholders would have been taken
    for when the CRM moved the deal (review s18-e E5)."""
    lead_id, opportunity_id = closed_an_hour_ago(engine, clock, "lost")
    raw, headers = signed({"type": "opportunity.won", "timestamp": stamp,
                           "data": {"lead_id": lead_id, "opportunity_id": opportunity_id}}, clock)
    error = await error_of(await crm_client.post("/v1/crm/events", data=raw, headers=headers), 422, "invalid")
    assert [f["field"] for f in error["fields"]] == [field]
    assert not engine.lead_commands


async def test_the_clamp_does_not_order_the_crms_clock_ahead(crm_client: Client, engine: FakeEngine,
                                                             clock: FakeClock) -> None:
    """The CRM's clock 2 min ahead: its loss (CRM now + 2 min) is clamped to now for ``at``, but
    ordered by its own time; the won it corrected (CRM now + 1 min, really a minute earlier),
    redelivered, is stale. Ordered by the clamped time it was a correction (review s18-e E4)."""
    lead_id, opportunity_id = closed_an_hour_ago(engine, clock, "won")
    ahead = clock.now() + timedelta(minutes=2)
    raw, headers = signed({"type": "opportunity.lost", "timestamp": ahead.isoformat(),
                           "data": {"lead_id": lead_id, "opportunity_id": opportunity_id}}, clock)
    assert (await crm_client.post("/v1/crm/events", data=raw, headers=headers)).status == 202
    ((_, command),) = engine.lead_commands
    assert isinstance(command, RecordCrmEvent) and (command.at, command.crm_at) == (clock.now(), ahead)
    state = engine.leads[lead_id]  # as the lead applied it (the fake engine only records commands)
    assert state.opportunity is not None
    engine.leads[lead_id] = replace(state, status="recycled", opportunity=replace(
        state.opportunity, status="lost", closed_at=command.at, moved_at=command.at, crm_moved_at=command.crm_at))
    raw, headers = signed({"type": "opportunity.won", "timestamp": (ahead - timedelta(minutes=1)).isoformat(),
                           "data": {"lead_id": lead_id, "opportunity_id": opportunity_id}}, clock, "msg_crm_2")
    response = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert response.status == 200 and (await response.json())["why"].startswith("stale"), await response.text()


async def test_a_close_stamped_on_arrival_orders_nothing(crm_client: Client, engine: FakeEngine,
                                                         clock: FakeClock) -> None:
    """The loss came without ``timestamp`` (stamped on arrival, after retries); the reopen the rep
    made after it in the CRM carries the CRM's time, earlier than that arrival. It applies: 202
    (it was 200 ignored, and the CRM never sent it again; review s18-e E3)."""
    lead_id, opportunity_id = closed_an_hour_ago(engine, clock, "lost")
    state = engine.leads[lead_id]
    assert state.opportunity is not None
    engine.leads[lead_id] = replace(state, opportunity=replace(state.opportunity, closed_at=clock.now(),
                                                               moved_at=clock.now(), crm_moved_at=None))
    raw, headers = signed({"type": "opportunity.stage_changed",
                           "timestamp": (clock.now() - timedelta(seconds=5)).isoformat(),
                           "data": {"lead_id": lead_id, "opportunity_id": opportunity_id, "stage": "Negotiation"}},
                          clock)
    response = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert response.status == 202, await response.text()


async def test_a_timestamp_more_than_a_day_ahead_is_a_4xx(crm_client: Client, engine: FakeEngine,
                                                          clock: FakeClock) -> None:
    """Ordered by the CRM's own time, a placeholder far ahead (9999-12-31) would make every later
    event of the deal stale: refused, naming the field."""
    lead_id, opportunity_id = closed_an_hour_ago(engine, clock, "lost")
    raw, headers = signed({"type": "opportunity.won", "timestamp": "9999-12-31T00:00:00Z",
                           "data": {"lead_id": lead_id, "opportunity_id": opportunity_id}}, clock)
    error = await error_of(await crm_client.post("/v1/crm/events", data=raw, headers=headers), 422, "invalid")
    assert [f["field"] for f in error["fields"]] == ["timestamp"] and not engine.lead_commands


async def test_the_close_held_with_a_later_timestamp_is_taken(crm_client: Client, engine: FakeEngine,
                                                              clock: FakeClock) -> None:
    """It moves the order on (the lead keeps its CRM time), so a 202, not a 409 retried for 24 h."""
    lead_id, opportunity_id = closed_an_hour_ago(engine, clock, "lost")
    raw, headers = signed({"type": "opportunity.lost", "timestamp": (clock.now() - timedelta(minutes=5)).isoformat(),
                           "data": {"lead_id": lead_id, "opportunity_id": opportunity_id}}, clock)
    response = await crm_client.post("/v1/crm/events", data=raw, headers=headers)
    assert response.status == 202, await response.text()
    ((_, command),) = engine.lead_commands
    assert isinstance(command, RecordCrmEvent) and command.crm_at == clock.now() - timedelta(minutes=5)

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
    engine.leads[lead_id] = replace(state, opportunity=replace(state.opportunity,
                                                               closed_at=clock.now() - timedelta(hours=1)))
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
    assert isinstance(command, RecordCrmEvent) and command.at == clock.now() - timedelta(hours=2)
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

"""GET /v1/leads/{lead_id}: the OpenAPI document lists every field of the lead's opportunity."""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from aiohttp.test_utils import TestClient

from connectors.api.openapi import openapi_document
from rules.opportunity import Opportunity, opportunity_id_for
from sla.clock import FakeClock
from tests.connectors.conftest import AUTH, FakeEngine, lead_state
from tests.connectors.test_openapi import _conforms

Client = TestClient[Any, Any]


def _opportunity_schema() -> dict[str, Any]:
    lead_view = openapi_document()["components"]["schemas"]["LeadView"]
    (schema, _null) = lead_view["properties"]["opportunity"]["anyOf"]
    return schema  # type: ignore[no-any-return]


def test_every_field_of_the_opportunity_is_documented() -> None:
    schema = _opportunity_schema()
    documented = list(schema["properties"])
    assert documented == [f.name for f in fields(Opportunity)]
    assert schema["required"] == documented  # the view always has them all (``asdict``)
    for name in ("source", "segment", "lost_weight", "corrections", "status", "closed_at"):
        assert schema["properties"][name].get("description"), name


async def test_a_lead_with_a_reopened_opportunity_answers_as_documented(client: Client, engine: FakeEngine,
                                                                         clock: FakeClock) -> None:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    engine.leads[state.lead_id] = replace(state, status="converted", routing="released", opportunity=Opportunity(
        opportunity_id=opportunity_id_for(state.lead_id, 1), created_at=clock.now(), stage="Negotiation",
        rep_id="rep-ana", amount=48000.0, source="web-form", segment="mid/software", corrections=1))
    response = await client.get(f"/v1/leads/{state.lead_id}", headers=AUTH)
    await _conforms(response, "/v1/leads/{lead_id}", "get")
    opportunity = (await response.json())["opportunity"]
    assert (opportunity["status"], opportunity["corrections"], opportunity["lost_weight"]) == ("open", 1, None)

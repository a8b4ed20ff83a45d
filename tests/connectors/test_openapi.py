"""The OpenAPI document: valid 3.1, in step with the mounted routes, and true to what the handlers answer."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse, web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from prometheus_client import CollectorRegistry

from connectors.api.leads import DISPOSITIONS
from connectors.api.openapi import _encoded, openapi_document
from connectors.api.ports import Readiness
from connectors.api.reps import PRESENCE_INPUT_MODEL, REP_INPUT_MODEL
from connectors.lead_input import LEAD_FIELDS
from leadflow.errors import TransientError
from ops.metrics import Metrics
from rules.commands import Candidate, LeadQueued, RoutingDecision
from rules.lead import LeadPolicy
from rules.lead import apply as apply_to_lead
from rules.reps import RepEntry
from sla.clock import FakeClock
from tests.connectors.conftest import AUTH, Client, ClientFactory, FakeEngine, build_app, lead_state, team_state

DOC = openapi_document()


def _schema_validator(schema: dict[str, Any], *, closed: bool = False) -> Draft202012Validator:
    """Validate against ``schema`` with the document's components resolvable by ``$ref``.

    ``closed`` treats every documented object as closed, so a field the handler sends but the
    document does not mention fails (the published schemas stay open for additions).
    """
    components = DOC["components"]
    if closed:
        components = _closed(components)
    root = {**schema, "components": components}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _closed(node: Any) -> Any:
    if isinstance(node, list):
        return [_closed(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _closed(v) for k, v in node.items()}
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def _mounted_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for resource in app.router.resources():
        info = resource.get_info()
        if "app" in info:  # a sub-application (/v1); its resources already carry the prefix
            routes |= _mounted_routes(info["app"])
            continue
        routes |= {(route.method, resource.canonical) for route in resource if route.method != "HEAD"}
    return routes


# --- the document itself -----------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1.")
    validate(DOC)


def test_the_validator_is_not_vacuous() -> None:
    broken = openapi_document()
    broken["paths"]["/v1/leads"]["post"]["responses"]["202"]["headers"]["Idempotent-Replayed"] = {"schema": 3}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_ref_resolves() -> None:
    # The spec validator does not follow $refs; a dangling one would only show up in a client.
    refs = [(where, node["$ref"]) for where, node in _walk(DOC) if isinstance(node, dict) and "$ref" in node]
    assert refs
    for where, ref in refs:
        assert ref.startswith("#/components/"), where
        _resolve({"$ref": ref})


def test_every_mounted_route_is_documented_and_nothing_else() -> None:
    app = build_app(FakeEngine(), Metrics(CollectorRegistry()), FakeClock())
    mounted = _mounted_routes(app)
    documented = {(method.upper(), path) for path, item in DOC["paths"].items()
                  for method in item if method != "parameters"}
    assert mounted == documented


def test_operations_have_ids_and_the_v1_ones_need_the_key() -> None:
    operations = [(path, op) for path, item in DOC["paths"].items() for m, op in item.items() if m != "parameters"]
    assert len({op["operationId"] for _, op in operations}) == len(operations)
    assert DOC["security"] == [{"bearerAuth": []}]
    assert DOC["components"]["securitySchemes"]["bearerAuth"] == {
        **DOC["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    for path, op in operations:
        assert (op.get("security", DOC["security"]) == []) != path.startswith("/v1/"), path
        if path.startswith("/v1/"):
            assert "401" in op["responses"] and "503" in op["responses"], path


def test_request_schemas_come_from_the_models_and_refuse_unknown_fields() -> None:
    schemas = DOC["components"]["schemas"]
    assert tuple(schemas["Lead"]["properties"]) == LEAD_FIELDS
    assert set(schemas["RepInput"]["properties"]) == set(REP_INPUT_MODEL.model_fields)
    assert set(schemas["PresenceInput"]["properties"]) == set(PRESENCE_INPUT_MODEL.model_fields)
    assert schemas["DispositionInput"]["properties"]["status"]["enum"] == list(DISPOSITIONS)
    for name in ("Lead", "LeadBatch", "RepInput", "PresenceInput", "DispositionInput"):
        assert schemas[name]["additionalProperties"] is False, name
    for name in ("Lead", "RepInput", "PresenceInput"):  # the model-derived ones: every field explained
        assert all(prop.get("description") for prop in schemas[name]["properties"].values()), name
    capture = DOC["paths"]["/v1/leads"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert capture == {"oneOf": [{"$ref": "#/components/schemas/Lead"}, {"$ref": "#/components/schemas/LeadBatch"}]}


def test_the_error_shape_is_a_component_every_error_response_uses() -> None:
    error = DOC["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    inner = error["properties"]["error"]
    assert inner["required"] == ["code", "message"] and set(inner["properties"]) == {"code", "message", "fields"}
    assert DOC["components"]["schemas"]["FieldError"]["required"] == ["field", "reason"]
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method == "parameters" or path == "/readyz":
                continue
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    schema = _resolve(response)["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)


def _examples() -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every example in the document with the schema it illustrates."""
    for name, schema in DOC["components"]["schemas"].items():
        for value in schema.get("examples", []):
            yield f"schemas/{name}", {"$ref": f"#/components/schemas/{name}"}, value
    for where, node in _walk(DOC):
        if isinstance(node, dict) and "schema" in node and ("example" in node or "examples" in node):
            if "example" in node:
                yield where, node["schema"], node["example"]
            for key, example in node.get("examples", {}).items():
                yield f"{where}/{key}", node["schema"], example["value"]


def test_every_example_matches_its_schema() -> None:
    examples = list(_examples())
    assert len(examples) >= 15
    for where, schema, value in examples:
        errors = list(_schema_validator(schema).iter_errors(value))
        assert not errors, (where, [e.message for e in errors])


def test_the_document_is_cached_and_each_caller_gets_its_own_copy() -> None:
    first = openapi_document()
    first["paths"].clear()
    first["components"]["schemas"]["Lead"]["properties"]["email"] = "changed"
    second = openapi_document()
    assert second == DOC and second is not DOC
    assert orjson.loads(orjson.dumps(second)) == second
    assert _encoded.cache_info().currsize == 1


# --- the document against the running handlers --------------------------------------------


async def _conforms(response: ClientResponse, path: str, method: str) -> None:
    """The status is documented for this operation, and the body and headers are as documented."""
    operation = DOC["paths"][path][method]
    assert str(response.status) in operation["responses"], (path, method, response.status)
    documented = _resolve(operation["responses"][str(response.status)])
    for header in documented.get("headers", {}):
        if header != "Idempotent-Replayed":  # only on replays
            assert header in response.headers, (path, response.status, header)
    content = documented["content"]
    assert response.content_type in content, (path, response.status, response.content_type)
    if response.content_type == "application/json":
        schema = content["application/json"]["schema"]
        body = await response.json()
        errors = list(_schema_validator(schema, closed=True).iter_errors(body))
        assert not errors, (path, method, response.status, [e.message for e in errors], body)


def _example(path: str, method: str, name: str) -> Any:
    media = DOC["paths"][path][method]["requestBody"]["content"]["application/json"]
    return media["examples"][name]["value"]


async def test_the_documented_capture_examples_are_what_the_api_answers(client: Client) -> None:
    responses = DOC["paths"]["/v1/leads"]["post"]["responses"]["202"]["content"]["application/json"]["examples"]
    for name in ("single", "batch"):
        response = await client.post("/v1/leads", json=_example("/v1/leads", "post", name), headers=AUTH)
        assert response.status == 202
        assert await response.json() == responses[name]["value"]


async def test_every_answer_is_as_documented(make_client: ClientFactory, engine: FakeEngine,
                                             clock: FakeClock) -> None:
    client = await make_client(client_max_size=4096, max_batch=3)
    lead = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    closed = lead_state("bo@example.com", clock.now(), closed=True)
    engine.leads.update({lead.lead_id: lead, closed.lead_id: closed})
    engine.teams["emea"] = team_state("emea", clock.now())
    engine.reps["rep-bo"] = RepEntry(rep_id="rep-bo", team_id="emea", updated_at=clock.now())
    schemas = DOC["components"]["schemas"]

    async def post(path: str, body: Any, template: str | None = None, **headers: str) -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        response = await client.post(path, data=data,
                                     headers={**AUTH, "Content-Type": "application/json", **headers})
        await _conforms(response, template or path, "post")

    await post("/v1/leads", schemas["Lead"]["examples"][0])
    await post("/v1/leads", schemas["Lead"]["examples"][0], **{"Idempotency-Key": "k1"})
    await post("/v1/leads", {"email": "x@example.com"}, **{"Idempotency-Key": "k1"})  # replayed
    await post("/v1/leads", {"leads": [{"email": "a@example.com"}, {"email": "nope"}, 3]})
    await post("/v1/leads", {"email": "nope"})
    await post("/v1/leads", {"leads": [{"email": "a@example.com"}], "x": 1})
    await post("/v1/leads", {"leads": [{"email": "a@example.com"}] * 4})
    await post("/v1/leads", {"email": "a@example.com", "message": "x" * 5000})
    await post("/v1/leads", b"{")
    await post("/v1/leads", {"email": "a@example.com"}, Authorization="Bearer nope")
    await post("/v1/leads", {"email": "a@example.com"}, **{"Content-Type": "text/plain"})
    engine.capture_error = TransientError("down")
    await post("/v1/leads", {"email": "a@example.com"})

    disposition = "/v1/leads/{lead_id}/disposition"
    await post(f"/v1/leads/{lead.lead_id}/disposition", {"status": "nurture", "reason": "later"}, disposition)
    await post(f"/v1/leads/{closed.lead_id}/disposition", {"status": "nurture"}, disposition)
    await post("/v1/leads/ld_000000000000000000000000/disposition", {"status": "nurture"}, disposition)
    await post(f"/v1/leads/{lead.lead_id}/disposition", {"status": "won"}, disposition)

    offered = replace(lead_state("cy@example.com", clock.now(), assigned_to="rep-ana"), routing="offered",
                      offer_expires_at=clock.now() + timedelta(seconds=30))
    engine.leads[offered.lead_id] = offered
    for verb in ("accept", "decline"):
        answer = f"/v1/leads/{{lead_id}}/{verb}"
        await post(f"/v1/leads/{offered.lead_id}/{verb}", {"rep_id": "rep-ana"}, answer)
        await post(f"/v1/leads/{offered.lead_id}/{verb}", {"rep_id": "rep-bo"}, answer)  # 409
        await post(f"/v1/leads/{lead.lead_id}/{verb}", {"rep_id": "rep-ana"}, answer)  # 409: assigned
        await post(f"/v1/leads/{offered.lead_id}/{verb}", {"rep": "rep-ana"}, answer)  # 422

    activities = "/v1/leads/{lead_id}/activities"
    await post(f"/v1/leads/{lead.lead_id}/activities", {"type": "call", "rep_id": "rep-ana"}, activities)
    await post(f"/v1/leads/{lead.lead_id}/activities", {"type": "call", "rep_id": "nobody-at-all"}, activities)
    await post(f"/v1/leads/{lead.lead_id}/activities", {"type": "call", "at": "2020-01-01T00:00:00Z"}, activities)

    presence = "/v1/reps/{rep_id}/presence"
    await post("/v1/reps/rep-bo/presence", {"status": "available"}, presence)
    await post("/v1/reps/rep-zed/presence", {"status": "available"}, presence)
    await post("/v1/reps/rep-bo/presence", {"status": "away"}, presence)

    rep = "/v1/reps/{rep_id}"
    for body in (schemas["RepInput"]["examples"][0], {"team": "emea", "timezone": "Nowhere/Land"}):
        await _conforms(await client.put("/v1/reps/rep-ana", json=body, headers=AUTH), rep, "put")
    for path in ("/v1/reps/rep-bo", "/v1/reps/rep-zed", "/v1/reps/bad%20id"):  # 202, 404, 422
        await _conforms(await client.delete(path, headers=AUTH), rep, "delete")

    for path, template in [(f"/v1/leads/{lead.lead_id}", "/v1/leads/{lead_id}"),
                           (f"/v1/leads/{closed.lead_id}", "/v1/leads/{lead_id}"),
                           ("/v1/leads/ld_000000000000000000000000", "/v1/leads/{lead_id}"),
                           ("/v1/teams/emea", "/v1/teams/{team_id}"), ("/v1/teams/apac", "/v1/teams/{team_id}")]:
        await _conforms(await client.get(path, headers=AUTH), template, "get")
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        await _conforms(await client.get(path), path, "get")
    engine.ready = Readiness(False, "rebalancing")
    await _conforms(await client.get("/readyz"), "/readyz", "get")


async def test_a_queued_lead_shows_who_could_not_take_it_and_why(client: Client, engine: FakeEngine,
                                                                 clock: FakeClock) -> None:
    """docs/routing.md: the ``queued`` timeline entry carries the decision record, bounded, as documented."""
    captured = lead_state("sam@example.com", clock.now())
    refused = tuple(Candidate(rep_id=f"rep-{i:02d}", eligible=False, reasons=("at capacity (6/6 open)",))
                    for i in range(25))
    decision = RoutingDecision(team_id=captured.team_id, strategy="weighted_round_robin", candidates=refused,
                               winner=None, reason="no rep is eligible", decided_at=clock.now())
    queued = apply_to_lead(captured, LeadQueued(
        lead_id=captured.lead_id, route_id=captured.route_id, team_id=captured.team_id, depth=1,
        decision=decision, queued_at=clock.now()), clock.now(), LeadPolicy()).state
    assert queued is not None
    engine.leads[queued.lead_id] = queued
    response = await client.get(f"/v1/leads/{queued.lead_id}", headers=AUTH)
    await _conforms(response, "/v1/leads/{lead_id}", "get")
    body = await response.json()
    assert body["routing"] == "queued" and body["assignment"] is None
    entry = body["timeline"][-1]
    assert entry["kind"] == "queued" and entry["detail"]["why"] == "no rep is eligible"
    shown = entry["detail"]["decision"]
    assert shown["candidates"][0] == {"rep_id": "rep-00", "eligible": False, "reasons": ["at capacity (6/6 open)"]}
    assert len(shown["candidates"]) == LeadPolicy().timeline_candidates == 10
    assert shown["candidates_left_out"] == 15

"""The OpenAPI 3.1 document of the HTTP API (DESIGN §3), built from the request models, served at ``/openapi.json``."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import orjson
from pydantic import BaseModel

from connectors.api.context import ApiContext
from connectors.api.leads import _IDEMPOTENCY_MAX, DISPOSITIONS
from connectors.api.reps import PRESENCE_INPUT_MODEL, REP_INPUT_MODEL
from connectors.lead_input import LEAD_INPUT_MODEL, LeadInvalid, validate_lead

__all__ = ["openapi_document"]

Schema = dict[str, Any]

# The document can only show the defaults: a deployment may change the batch bound
# (LEADFLOW_MAX_BATCH) and the body size (LEADFLOW_MAX_BODY_BYTES).
_MAX_BATCH = next(f.default for f in dataclasses.fields(ApiContext) if f.name == "max_batch")
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# Field documentation for the request models. Every model field must be described here: the
# build fails loudly on a field without a description, so the document cannot drift silently.
_LEAD_FIELDS = {
    "email": "E-mail address. Trimmed and lower-cased; reserved domains (.test, .invalid, ...) are refused. "
             "The first identity: the same address from any channel is the same lead.",
    "phone": "Phone number, in +E.164 form or national form together with `country`. Stored as E.164; "
             "the identity when there is no e-mail.",
    "first_name": "Given name.",
    "last_name": "Family name.",
    "company": "Company name.",
    "title": "Job title.",
    "country": "ISO 3166-1 alpha-2 country code (any case); used for routing and for national phone numbers.",
    "source": "Where the lead came from (`website`, `partner-portal`, ...). Defaults to the API key's name.",
    "external_id": "The lead's id in the sending system; with `source`, the identity when there is neither "
                   "e-mail nor phone.",
    "campaign": "Marketing campaign, kept per touch for attribution.",
    "message": "Free text the lead wrote.",
    "attributes": "Extra string key/value pairs carried with the lead (at most 50).",
}
_REP_FIELDS = {
    "team": "The team the rep belongs to; changing it moves the rep (their open leads stay with them).",
    "name": "Display name; defaults to the rep id.",
    "capacity": "Most leads the rep holds open at once.",
    "daily_cap": "Most leads assigned to the rep per day (no cap when null).",
    "weight": "Share of leads under weighted routing, relative to the other reps of the team.",
    "skills": "Skills routing rules can require.",
    "languages": "Languages the rep speaks.",
    "territories": "Territories the rep covers.",
    "timezone": "IANA time zone of the rep's working hours, e.g. Europe/Madrid.",
    "webhook_url": "Where the rep's `lead.assigned` webhooks go (public http/https only).",
    "webhook_secret": "Standard Webhooks signing secret (`whsec_` + base64 of 24-64 bytes). When omitted for a "
                      "new rep one is generated and returned once; an update without it keeps the old one.",
    "email": "The rep's e-mail address.",
}
_PRESENCE_FIELDS = {"status": "The rep's presence; only `available` reps receive leads."}

_LEAD_EXAMPLE: Schema = {
    "email": "Ana.Garcia@Example.com", "phone": "+34 612 345 678", "first_name": "Ana", "last_name": "García",
    "company": "Acme Iberia", "title": "Head of Operations", "country": "ES", "source": "website",
    "campaign": "spring-webinar", "message": "We would like a demo for 40 seats.",
    "attributes": {"employees": "200-500", "utm_medium": "email"},
}
_BATCH_EXAMPLE: Schema = {"leads": [
    {"email": "li.wei@example.org", "company": "Northwind", "source": "trade-show", "country": "SG"},
    {"phone": "+1 555 0100", "first_name": "Sam"},  # fits the schema, but no such number
    {"phone": "020 7946 0018", "country": "GB", "external_id": "crm-1042", "source": "partner-portal"},
]}
_API_KEY_EXAMPLE = "website"  # the API key name the examples' results assume (the default source)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None, *,
            description: str | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": {**required, **(optional or {})}, "required": list(required)}
    if description:
        schema["description"] = description
    return schema


def _json_body(schema: Schema, **extra: Any) -> Schema:
    return {"content": {"application/json": {"schema": schema, **extra}}}


_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time"}
_STRINGS = {"type": "array", "items": _STR}


def _model_schema(model: type[BaseModel], title: str, description: str, fields: dict[str, str]) -> Schema:
    """The model's JSON schema (pydantic emits 2020-12, which OpenAPI 3.1 uses), documented for users."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    if "$defs" in schema:
        raise ValueError(f"{title}: nested models need hoisting into components")
    if schema.get("additionalProperties") is not False:
        raise ValueError(f"{title}: the model must forbid extra fields (the API refuses them)")
    undocumented = set(schema["properties"]) ^ set(fields)
    if undocumented:
        raise ValueError(f"{title}: fields without documentation or documented but gone: {sorted(undocumented)}")
    schema["title"], schema["description"] = title, description
    for name, prop in schema["properties"].items():
        prop.pop("title", None)
        prop["description"] = fields[name]
    return schema


def _lead_schema() -> Schema:
    schema = _model_schema(LEAD_INPUT_MODEL, "Lead", "One lead. Unknown fields are refused with 422.", _LEAD_FIELDS)
    for branch in schema["properties"]["email"]["anyOf"]:
        if branch.get("type") == "string":
            branch["format"] = "email"
    # A lead needs an identity; the server also checks the values (a valid e-mail or phone).
    schema["anyOf"] = [{"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}
                       for name in ("email", "phone", "external_id")]
    schema["examples"] = [_LEAD_EXAMPLE]
    return schema


def _capture_results() -> tuple[Schema, Schema]:
    """The 202 bodies for the examples, computed by the real validation so they never lie."""
    def result(index: int, lead: Schema) -> Schema:
        try:
            valid = validate_lead(lead, default_source=_API_KEY_EXAMPLE, channel="api",
                                  prefix=f"leads[{index}]")
        except LeadInvalid as exc:
            return {"index": index, "status": "rejected",
                    "errors": [{"field": f.field, "reason": f.reason} for f in exc.fields]}
        return {"index": index, "lead_id": valid.lead_id, "status": "accepted"}

    single = result(0, _LEAD_EXAMPLE)
    items = [result(i, lead) for i, lead in enumerate(_BATCH_EXAMPLE["leads"])]
    counts = {s: sum(1 for r in items if r["status"] == s) for s in ("accepted", "duplicate", "rejected")}
    return {"lead_id": single["lead_id"], "status": "accepted"}, {**counts, "results": items}


def _schemas() -> dict[str, Schema]:
    field_error = _object({"field": _STR, "reason": _STR}, description=(
        "`field` names the offending input: `email`, `attributes.plan`, `leads[3].email`, or `(body)`."))
    captured_lead = _object(
        {"source": _STR, "channel": _STR, "attributes": {"type": "object", "additionalProperties": _STR}},
        {name: _nullable(_STR) for name in ("email", "phone", "external_id", "first_name", "last_name", "company",
                                            "title", "country", "campaign", "message")},
        description="The lead as captured and normalized (e-mail lower-cased, phone in E.164).")
    candidate = _object({"rep_id": _STR, "eligible": _BOOL, "reasons": _STRINGS, "open_leads": _INT,
                         "capacity": _INT, "weight": _INT})
    return {
        "Lead": _lead_schema(),
        "LeadBatch": {
            "title": "LeadBatch", "description": f"Up to {_MAX_BATCH} leads (by default), each checked on its own.",
            "type": "object", "additionalProperties": False, "required": ["leads"],
            "properties": {"leads": {"type": "array", "minItems": 1, "maxItems": _MAX_BATCH, "items": _ref("Lead")}},
            "examples": [_BATCH_EXAMPLE],
        },
        "CaptureResult": _object(
            {"lead_id": _STR, "status": {"enum": ["accepted", "duplicate"]}},
            description="`duplicate`: this person was captured before (a new touch of the same lead)."),
        "BatchItemResult": {"oneOf": [
            _object({"index": _INT, "lead_id": _STR, "status": {"enum": ["accepted", "duplicate"]}}),
            _object({"index": _INT, "status": {"const": "rejected"}, "errors": {"type": "array",
                                                                             "items": _ref("FieldError")}}),
        ]},
        "BatchResult": _object(
            {"accepted": _INT, "duplicate": _INT, "rejected": _INT,
             "results": {"type": "array", "items": _ref("BatchItemResult")}},
            description="One result per submitted lead, in order; rejected items were not captured."),
        "FieldError": field_error,
        "Error": _object({"error": _object(
            {"code": {**_STR, "examples": ["invalid_lead", "malformed_json", "unauthorized"]}, "message": _STR},
            {"fields": {"type": "array", "items": _ref("FieldError")}})},
            description="Every error: a stable machine `code`, a human `message`, and the offending `fields`."),
        "CapturedLead": captured_lead,
        "Touch": _object({"capture_id": _STR, "source": _STR, "channel": _STR, "campaign": _nullable(_STR),
                          "at": _TIME}),
        "Candidate": candidate,
        "RoutingDecision": _object(
            {"team_id": _STR, "strategy": _STR, "candidates": {"type": "array", "items": _ref("Candidate")},
             "winner": _nullable(_STR), "reason": _STR, "decided_at": _TIME},
            description="Why the lead went to this rep (or waits): every candidate with its reasons."),
        "Assignment": _object({"rep_id": _STR, "rep_name": _STR, "team_id": _STR, "assigned_at": _TIME,
                               "decision": _ref("RoutingDecision")}),
        "TimelineEntry": _object({"at": _TIME, "kind": _STR, "detail": {"type": "object"}}),
        "LeadView": _object({
            "lead_id": _STR, "cycle": _INT,
            "status": {**_STR, "description": f"`new`, or the disposition: {', '.join(DISPOSITIONS)}"},
            "routing": {"enum": ["routing", "queued", "assigned", "released"]},
            "team_id": _STR, "lead": _ref("CapturedLead"), "captured_at": _TIME, "touches": _INT,
            "first_touch": _ref("Touch"), "last_touch": _ref("Touch"), "assignment": _nullable(_ref("Assignment")),
            "sla_deadline": _nullable(_TIME), "notified_at": _nullable(_TIME),
            "timeline": {"type": "array", "items": _ref("TimelineEntry")},
        }, description="The lead's current state and its recent timeline."),
        "DispositionInput": {
            "type": "object", "additionalProperties": False, "required": ["status"],
            "properties": {
                "status": {"enum": list(DISPOSITIONS)},
                "reason": _nullable({"type": "string", "maxLength": 500}),
                "rep_id": _nullable({"type": "string", "minLength": 1, "maxLength": 64}),
            },
            "examples": [{"status": "nurture", "reason": "budget next quarter", "rep_id": "rep-ana"}],
        },
        "DispositionAccepted": _object({"lead_id": _STR, "status": {"const": "accepted"}}),
        "RepInput": {**_model_schema(REP_INPUT_MODEL, "RepInput", "A rep's profile; unknown fields are refused.",
                                     _REP_FIELDS),
                     "examples": [{"team": "emea", "name": "Ana Ruiz", "capacity": 8, "languages": ["es", "en"],
                                   "territories": ["ES", "PT"], "timezone": "Europe/Madrid",
                                   "webhook_url": "https://hooks.example.com/leadflow/ana"}]},
        "RepAccepted": _object(
            {"rep_id": _STR, "team": _STR, "status": {"const": "accepted"}, "created": _BOOL},
            {"webhook_secret": {**_STR, "pattern": "^whsec_", "description": (
                "Only when the rep is new and no secret was sent: the generated secret, shown this once.")}}),
        "PresenceInput": {**_model_schema(PRESENCE_INPUT_MODEL, "PresenceInput", "A rep's presence.",
                                          _PRESENCE_FIELDS), "examples": [{"status": "available"}]},
        "PresenceAccepted": _object({"rep_id": _STR, "presence": {"enum": ["available", "busy", "offline"]},
                                     "status": {"const": "accepted"}}),
        "TeamRep": _object({
            "rep_id": _STR, "name": _STR, "presence": {"enum": ["available", "busy", "offline"]}, "open_leads": _INT,
            "capacity": _INT, "weight": _INT, "assigned_total": _INT, "last_assigned_at": _nullable(_TIME),
            "webhook_configured": _BOOL, "skills": _STRINGS, "languages": _STRINGS, "territories": _STRINGS,
            "timezone": _STR,
        }, description="A rep as the team sees them (webhook secrets are never shown)."),
        "TeamView": _object({
            "team_id": _STR, "reps": {"type": "array", "items": _ref("TeamRep")}, "open_leads": _INT,
            "capacity": _INT, "available_capacity": _INT, "reps_available": _INT, "queue_depth": _INT,
            "routed_total": _INT,
        }, description="Roster, load against capacity, presence and queue depth."),
        "Health": _object({"status": {"const": "ok"}}),
        "Readiness": _object({"status": {"enum": ["ready", "not_ready"]}, "detail": _STR}),
    }


def _error(description: str, *, code: str, message: str, headers: dict[str, Schema] | None = None,
           fields: list[dict[str, str]] | None = None) -> Schema:
    example: Schema = {"code": code, "message": message}
    if fields:
        example["fields"] = fields
    response = {"description": description, **_json_body(_ref("Error"), example={"error": example})}
    if headers:
        response["headers"] = headers
    return response


def _responses() -> dict[str, Schema]:
    retry = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return {
        "BadRequest": _error("The body is not JSON (`malformed_json`) or a header is invalid.",
                             code="malformed_json", message="the body is not valid JSON: unexpected character"),
        "Unauthorized": _error("Missing or unknown API key.", code="unauthorized",
                               message="missing or unknown API key; send 'Authorization: Bearer <key>'",
                               headers={"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}}),
        "NotFound": _error("No such resource.", code="not_found", message="no lead ld_0123456789abcdef01234567"),
        "Conflict": _error("The resource cannot change that way now.", code="conflict",
                           message="lead ld_0123456789abcdef01234567: the lead is already closed (nurture)"),
        "PayloadTooLarge": _error("The body is larger than the server allows (1 MiB by default), or a batch holds "
                                  "too many leads (`batch_too_large`).", code="payload_too_large",
                                  message="the request body is larger than the 1048576 bytes allowed"),
        "UnsupportedMediaType": _error("The body is not `application/json`.", code="unsupported_media_type",
                                       message="expected Content-Type application/json, got text/plain"),
        "Invalid": _error("The body is JSON but not valid: `fields` names each problem.", code="invalid",
                          message="the rep is not valid", fields=[{"field": "capacity", "reason": "unknown field"}]),
        "Unavailable": _error("Not ready to take this now (Kafka unavailable, partitions being assigned); "
                              "retry after `Retry-After` seconds.", code="unavailable",
                              message="leads could not be stored right now; retry", headers=retry),
    }


def _op(operation_id: str, tag: str, summary: str, responses: dict[str, Schema], **extra: Any) -> Schema:
    return {"operationId": operation_id, "tags": [tag], "summary": summary, "responses": responses, **extra}


def _refs(*statuses: int) -> dict[str, Schema]:
    names = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 409: "Conflict", 413: "PayloadTooLarge",
             415: "UnsupportedMediaType", 422: "Invalid", 503: "Unavailable"}
    return {str(s): {"$ref": f"#/components/responses/{names[s]}"} for s in statuses}


def _param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _paths(single_result: Schema, batch_result: Schema) -> dict[str, Schema]:
    body_errors = _refs(400, 401, 413, 415, 422, 503)
    invalid_lead = {"error": {"code": "invalid_lead", "message": "the lead is not valid",
                              "fields": [{"field": "email", "reason": "An email address must have an @-sign."}]}}
    capture = _op(
        "captureLeads", "leads", "Capture one lead, or a batch of leads",
        {
            "202": {
                "description": "Stored (Kafka acknowledged). `duplicate` means a known person (a new touch). "
                               "With an `Idempotency-Key` seen before, the first response is replayed.",
                "headers": {"Idempotent-Replayed": {"$ref": "#/components/headers/IdempotentReplayed"}},
                **_json_body({"oneOf": [_ref("CaptureResult"), _ref("BatchResult")]}, examples={
                    "single": {"summary": "one lead", "value": single_result},
                    "batch": {"summary": "a batch with one invalid lead", "value": batch_result},
                }),
            },
            **body_errors,
            "422": {"description": "A single lead is not valid (`invalid_lead`), or the batch envelope is not.",
                    **_json_body(_ref("Error"), example=invalid_lead)},
        },
        description=(
            "Send one lead object, or `{\"leads\": [...]}`. The lead's id is derived from its identity "
            "(e-mail, else phone, else source and external id), so the same person from any channel is one "
            "lead. A single invalid lead is a 422; in a batch each invalid lead is reported in `results` "
            "and the valid ones are captured."),
        parameters=[_param("IdempotencyKey")],
        requestBody={"required": True, **_json_body(
            {"oneOf": [_ref("Lead"), _ref("LeadBatch")]},
            examples={"single": {"summary": "one lead", "value": _LEAD_EXAMPLE},
                      "batch": {"summary": "a batch", "value": _BATCH_EXAMPLE}})},
    )
    return {
        "/v1/leads": {"post": capture},
        "/v1/leads/{lead_id}": {"parameters": [_param("LeadId")], "get": _op(
            "getLead", "leads", "A lead's state and timeline",
            {"200": {"description": "The lead.", **_json_body(_ref("LeadView"))}, **_refs(401, 404, 503)},
            description="Answered by any worker: the request is relayed to the one that owns the lead.")},
        "/v1/leads/{lead_id}/disposition": {"parameters": [_param("LeadId")], "post": _op(
            "dispositionLead", "leads", "Close a lead with a disposition (releases the rep's capacity)",
            {"202": {"description": "The disposition is on its way to the lead.",
                     **_json_body(_ref("DispositionAccepted"))},
             **_refs(400, 401, 404, 409, 413, 415, 422, 503)},
            requestBody={"required": True, **_json_body(_ref("DispositionInput"))})},
        "/v1/reps/{rep_id}": {"parameters": [_param("RepId")], "put": _op(
            "putRep", "reps", "Create or update a rep",
            {"202": {"description": "The change is on its way to the rep's team.",
                     **_json_body(_ref("RepAccepted"), example={
                         "rep_id": "rep-ana", "team": "emea", "status": "accepted", "created": True,
                         "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})},
             **body_errors},
            requestBody={"required": True, **_json_body(_ref("RepInput"))})},
        "/v1/reps/{rep_id}/presence": {"parameters": [_param("RepId")], "post": _op(
            "setPresence", "reps", "Set a rep's presence",
            {"202": {"description": "The change is on its way to the rep's team.",
                     **_json_body(_ref("PresenceAccepted"))},
             **_refs(400, 401, 404, 413, 415, 422, 503)},
            requestBody={"required": True, **_json_body(_ref("PresenceInput"))})},
        "/v1/teams/{team_id}": {"parameters": [_param("TeamId")], "get": _op(
            "getTeam", "teams", "A team's roster, load and queue",
            {"200": {"description": "The team.", **_json_body(_ref("TeamView"))}, **_refs(401, 404, 503)})},
        "/healthz": {"get": _op("healthz", "operations", "Liveness",
                                {"200": {"description": "The process is up.", **_json_body(_ref("Health"))}},
                                security=[])},
        "/readyz": {"get": _op(
            "readyz", "operations", "Readiness: partitions assigned and tables recovered",
            {"200": {"description": "Ready.", **_json_body(_ref("Readiness"))},
             "503": {"description": "Not ready (rebalancing or recovering tables).", **_json_body(_ref("Readiness"))}},
            security=[])},
        "/metrics": {"get": _op(
            "metrics", "operations", "Prometheus metrics",
            {"200": {"description": "Prometheus text exposition format.",
                     "content": {"text/plain": {"schema": _STR}}}},
            security=[])},
        "/openapi.json": {"get": _op(
            "openapi", "operations", "This document",
            {"200": {"description": "The OpenAPI document.", **_json_body({"type": "object"})}}, security=[])},
    }


def _build() -> Schema:
    single_result, batch_result = _capture_results()
    id_param = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": _ID_PATTERN}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadflow", "version": "1",
            "summary": "Capture leads and route them to the right rep in seconds.",
            "description": "JSON everywhere. Errors have one shape (`Error`). Authenticate with "
                           "`Authorization: Bearer <api key>`; the key's name is the default lead source.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://localhost:6066", "description": "a local worker (any worker answers)"}],
        "tags": [{"name": "leads"}, {"name": "reps"}, {"name": "teams"}, {"name": "operations"}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(single_result, batch_result),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "An API key from LEADFLOW_API_KEYS or the config."}},
            "schemas": _schemas(),
            "responses": _responses(),
            "parameters": {
                "LeadId": {"name": "lead_id", "in": "path", "required": True,
                           "description": "The id `POST /v1/leads` returned.",
                           "schema": {"type": "string", "pattern": "^ld_[0-9a-f]{24}$"}},
                "RepId": {"name": "rep_id", "in": "path", "required": True, "schema": id_param},
                "TeamId": {"name": "team_id", "in": "path", "required": True, "schema": id_param},
                "IdempotencyKey": {
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "Retry safely: a repeated key (per API key, for 24 h) gets the first response.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": _IDEMPOTENCY_MAX}},
            },
            "headers": {
                "RetryAfter": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
                "WWWAuthenticate": {"description": "The auth scheme: `Bearer realm=\"leadflow\"`.", "schema": _STR},
                "IdempotentReplayed": {"description": "`true` when this is the stored response to an earlier "
                                                      "request with the same `Idempotency-Key`.",
                                       "schema": {"const": "true"}},
            },
        },
    }


@functools.cache
def _encoded() -> bytes:
    return orjson.dumps(_build())


def openapi_document() -> dict[str, Any]:
    """The document, as a fresh dict each call (callers may change it; the cache stays intact)."""
    document: dict[str, Any] = orjson.loads(_encoded())
    return document

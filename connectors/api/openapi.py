"""The OpenAPI 3.1 document of the HTTP API (DESIGN §3), built from the request models, served at ``/openapi.json``."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import orjson
from pydantic import BaseModel

from connectors.api.bulk import CHUNK_ROWS, CSV_CONTENT_TYPES
from connectors.api.context import ApiContext
from connectors.api.forms import FORM_CONTENT_TYPES, REDIRECT_FIELD
from connectors.api.leads import _IDEMPOTENCY_MAX, DISPOSITIONS
from connectors.rep_fields import ID_PATTERN as _ID_PATTERN
from connectors.api.activities import ACTIVITY_INPUT_MODEL
from connectors.api.crm_events import EVENT_TYPES
from rules.lead_state import LeadPolicy
from rules.lifecycle import STATUSES
from rules.qualification import DEFAULT_FRAMEWORKS
from connectors.api.accounts import ACCOUNT_INPUT_MODEL
from connectors.api.reps import PRESENCE_INPUT_MODEL, REP_INPUT_MODEL
from connectors.auth import Scope
from connectors.lead_input import LEAD_INPUT_MODEL, LeadInvalid, validate_lead

__all__ = ["openapi_document"]

Schema = dict[str, Any]

# The document can only show the defaults: a deployment may change the batch bound
# (LEADFLOW_MAX_BATCH) and the body size (LEADFLOW_MAX_BODY_BYTES).
_MAX_BATCH = next(f.default for f in dataclasses.fields(ApiContext) if f.name == "max_batch")
_MAX_IMPORT_ROWS = next(f.default for f in dataclasses.fields(ApiContext) if f.name == "max_import_rows")

# Field documentation for the request models. Every model field must be described here: the
# build fails loudly on a field without a description, so the document cannot drift silently.
_LEAD_FIELDS = {
    "email": "E-mail address. Trimmed and lower-cased; reserved domains (.test, .invalid, ...) are refused. "
             "The first identity: the same address from any channel is the same lead.",
    "phone": "Phone number, in +E.164 form or national form together with `country`, with an extension if "
             "any (`ext. 123`, `x 123`, `;ext=123`). Stored as E.164, the extension as `phone_extension`; "
             "the identity when there is no e-mail (a number with an extension is another person than "
             "the switchboard).",
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
_ACTIVITY_FIELDS = {
    "type": "call, email, meeting or sms count as contact; a note does not.",
    "rep_id": "Who did it.",
    "at": "When it happened (ISO 8601 with a time zone); default: when received. Never in the future.",
    "outcome": "Free text, e.g. connected, voicemail.",
    "activity_id": "Your id for it (e.g. the CRM's): sending the same activity twice records it once.",
}
#: What a PUT of an existing rep changes (connectors/api/reps.py keeps what the body leaves out).
_REP_UPDATE = ("A rep's profile; unknown fields are refused. On an existing rep only the fields the body names "
               "change (besides the required `team`); every field left out keeps its value, the webhook "
               "included. `null` (or `[]`) clears a field, e.g. `\"webhook_url\": null`. The defaults shown apply "
               "only to a new rep. A team holds at most 500 reps and 600,000 bytes of encoded profiles: a PUT "
               "the team cannot take is a 422 naming `team` when this worker can see it, and otherwise refused "
               "by the team after the 202, listed in `refused_reps` of `GET /v1/teams/{team_id}`.")
_REP_FIELDS = {
    "team": "The team the rep belongs to; changing it moves the rep (their open leads stay with them).",
    "name": "Display name; defaults to the rep id.",
    "capacity": "Most leads the rep holds open at once.",
    "daily_cap": "Most leads assigned to the rep per day in their time zone (no cap when null). "
                 "Offers the rep declined or let lapse do not count.",
    "weight": "Share of leads under weighted routing, relative to the other reps of the team.",
    "skills": "Skills routing rules can require.",
    "languages": "Languages the rep speaks.",
    "territories": "Territories the rep covers: ISO 3166-1 countries (`US`), ISO 3166-2 states (`US-CA`) or "
                   "regions of the config's `routing.regions` (`EMEA`), which stand for their countries. Anything "
                   "else is a 422 naming `territories[i]`. At most 500 places once regions are expanded.",
    "timezone": ("IANA time zone of the rep's working hours and holidays, e.g. Europe/Madrid. Required with "
                 "working_hours or holidays_country (422 naming timezone); a PUT that leaves it out keeps the "
                 "stored one. Otherwise UTC."),
    "webhook_url": "Where the rep's webhooks go (`lead.assigned`, `lead.offered`, `lead.touched`, `lead.reminder`, "
                   "`lead.reassigned`; public http/https only). Without it the rep still gets leads, unnotified "
                   "(timeline `not_notified`, event `lead.not_notified`).",
    "webhook_secret": "Standard Webhooks signing secret (`whsec_` + base64 of 24-64 bytes). When omitted for a "
                      "new rep one is generated and returned once; an update without it keeps the old one.",
    "email": "The rep's e-mail address.",
    "weekly_cap": "Most leads assigned to the rep per ISO week in their time zone (no cap when null). "
                  "Offers the rep declined or let lapse do not count.",
    "working_hours": "Weekly hours in the rep's time zone, e.g. `{\"mon-fri\": [\"09:00-17:00\"]}` (a weekday or "
                     "range, `24:00` for midnight); the rep gets leads only inside them. Empty: always on. A "
                     "weekday's spans must not overlap, whichever keys name them (`mon-fri` 09:00-17:00 with `fri` "
                     "16:00-18:00 is a 422 naming working_hours; write `mon-thu` plus `fri`). Requires `timezone`.",
    "holidays_country": "ISO 3166-1 alpha-2 country whose public holidays the rep does not work, e.g. `ES`.",
}
_PRESENCE_FIELDS = {"status": "The rep's presence; only `available` reps receive leads."}
_ACCOUNT_FIELDS = {
    "name": "The company's name, shown in routing reasons.",
    "owner": "The rep who owns the account: its leads go to them when they are eligible, else to the team's "
             "strategy (the decision says why).",
    "team": "The team the account's leads go to. Defaults to the owner's current team; required when the owner "
            "is not a rep yet.",
    "tier": "A label such as `strategic`; `routing.tier_priorities` in the config turns it into a queue priority.",
}

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
        {name: _nullable(_STR) for name in ("email", "phone", "phone_extension", "external_id", "first_name",
                                            "last_name", "company", "title", "country", "campaign", "message")},
        description="The lead as captured and normalized (e-mail lower-cased, phone in E.164, its extension apart).")
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
        "TimelineDecision": _object(
            {"strategy": _STR, "winner": _nullable(_STR), "reason": _STR,
             "candidates": {"type": "array", "items": _object({"rep_id": _STR, "eligible": _BOOL,
                                                               "reasons": _STRINGS})},
             "candidates_left_out": _INT},
            description=("A routing decision as the timeline keeps it: the strategy, the reason and the first "
                         f"{LeadPolicy().timeline_candidates} candidates with the filters that removed each; "
                         "`candidates_left_out` counts the rest (the whole record is on `lead.events`).")),
        "TimelineEntry": _object({"at": _TIME, "kind": _STR, "detail": {
            "type": "object", "additionalProperties": True,
            "properties": {"decision": _ref("TimelineDecision")},
            "description": ("Depends on `kind`. `queued`: `team_id`, `depth` (leads waiting in the team), "
                            "`expected_wait_s` (null: no pace yet, or no rep of the team may take this lead), `why` (with the leads served first and the "
                            "queue priority) and `decision`, who could not take the lead and why."),
        }}, description=f"The newest {LeadPolicy().timeline_limit} entries of the lead's timeline are kept."),
        "LeadView": _object({
            "lead_id": _STR, "cycle": _INT,
            "status": {**_STR, "description": f"`new`, or the disposition: {', '.join(DISPOSITIONS)}"},
            "routing": {"enum": ["routing", "queued", "offered", "assigned", "released"]},
            "team_id": _STR, "lead": _ref("CapturedLead"), "captured_at": _TIME, "touches": _INT,
            "first_touch": _ref("Touch"), "last_touch": _ref("Touch"), "assignment": _nullable(_ref("Assignment")),
            "sla_deadline": _nullable(_TIME), "notified_at": _nullable(_TIME),
            "contacted_at": _nullable(_TIME), "sla": _nullable(_ref("SlaView")),
            "enrichment": _nullable({"type": "object", "description": (
                "Built-in enrichment: email_type (corporate, free, disposable, role, none), email_domain, "
                "company_domain, company_guess, phone_country, phone_type, seniority, department, and the "
                "reasons for each; provided: the fields HTTP enrichment providers found (company_name, "
                "employees, industry, ...; docs/capture.md).")}),
            "account": _nullable({**_ref("Account"), "description": (
                "The account the lead's e-mail or website domain matched at capture (lead-to-account "
                "matching): its owner is preferred when eligible.")}),
            "score": _nullable(_ref("ScoreView")),
            "qualification": _nullable({"type": "object", "description": (
                "The current cycle's answers: framework, answers, met, missing, sql, reason.")}),
            "opportunity": _nullable(_object({
                "opportunity_id": {**_STR, "description": "leadflow's id, the CRM's upsert key (one per lead and "
                                                          "cycle)."},
                "created_at": {**_TIME, "description": "When the lead converted."},
                "status": {"enum": ["open", "won", "lost"], "description": (
                    "`open` again after the CRM reopened a closed deal (a stage change after the close).")},
                "stage": {**_STR, "description": "The CRM's latest stage (`closed_won`/`closed_lost` when a close "
                                                 "named none)."},
                "rep_id": {**_nullable(_STR), "description": "The SDR who qualified it."},
                "crm": _nullable(_STR), "crm_id": _nullable(_STR), "synced_at": _nullable(_TIME),
                "sync_failed": {**_nullable(_STR), "description": "Why the CRM upsert was dead-lettered."},
                "amount": _nullable({"type": "number"}),
                "closed_at": {**_nullable(_TIME), "description": "null while open (also after a reopen)."},
                "lost_reason": _nullable(_STR),
                "source": {**_nullable(_STR), "description": (
                    "The source its outcome is credited to on the won/lost board, frozen at conversion: the lead's "
                    "latest touch's then. null for an opportunity made before it was kept.")},
                "segment": {**_nullable(_STR), "description": (
                    "The score segment its outcome is credited to, frozen at conversion (null as `source`).")},
                "lost_weight": {**_nullable({"type": "number"}), "description": (
                    "How many losses its loss counted for the segment (the lost reason's weight), kept so a "
                    "correction or a reopen takes off exactly that; null while open or won.")},
                "corrections": {**_INT, "description": (
                    "How many times the CRM changed its close since it first closed: closed the other way, "
                    "or reopened (numbers the outcomes' ids so each counts once).")},
                "revenue_counted": {**_nullable({"type": "number"}), "description": (
                    "The won amount already added to leadflow_won_revenue_total for it: won again after a "
                    "correction or a reopen, it adds only what it won beyond that. null for an opportunity kept "
                    "before it was.")},
                "moved_at": {**_nullable(_TIME), "description": (
                    "When the last won, lost or stage change applied to it happened, on leadflow's clock (the "
                    "event's `timestamp` clamped to now, else its arrival). For reading, not ordering. null if "
                    "none was applied since it was kept.")},
                "crm_moved_at": {**_nullable(_TIME), "description": (
                    "The CRM's own time (the event's `timestamp`, unclamped) of the newest move applied that "
                    "carried one: a won, lost or stage change with an earlier `timestamp` is stale and ignored, "
                    "and the close it holds sent again at this very time is a repeat (ignored too). null: no move "
                    "with a `timestamp` applied yet (events then apply in arrival order).")},
            }, description="The opportunity it converted into (this cycle's).")),
            "timeline": {"type": "array", "items": _ref("TimelineEntry")},
        }, description="The lead's current state and its recent timeline."),
        "SlaStep": _object({"step": _INT, "kind": {"enum": ["breach", "remind", "reassign", "alert_manager",
                                                             "release_to_pool"]},
                            "due_at": _TIME, "done": {"type": "boolean"}}),
        "SlaView": _object({
            "policy": _STR, "started_at": _TIME, "breached_at": _nullable(_TIME), "stopped_at": _nullable(_TIME),
            "previous_reps": {"type": "array", "items": _STR}, "steps": {"type": "array", "items": _ref("SlaStep")},
        }, description="The SLA of the current cycle: each step once, stopped by the first contact."),
        "ActivityInput": {**_model_schema(ACTIVITY_INPUT_MODEL, "ActivityInput",
                                          "Something the rep (or the CRM) did with the lead.", _ACTIVITY_FIELDS),
                          "examples": [{"type": "call", "rep_id": "ana", "outcome": "connected",
                                        "at": "2026-11-26T09:03:00+00:00", "activity_id": "crm-call-881"}]},
        "ActivityAccepted": _object({"lead_id": _STR, "activity_id": _STR, "status": {"const": "accepted"}}),
        **_crm_schemas(),
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
        "OfferAnswer": {
            "type": "object", "additionalProperties": False, "required": ["rep_id"],
            "properties": {
                "rep_id": {"type": "string", "minLength": 1, "maxLength": 64,
                           "description": "The rep the lead is offered to."},
                "reason": _nullable({"type": "string", "maxLength": 500,
                                     "description": "Why the rep declines (kept in the timeline)."}),
            },
            "examples": [{"rep_id": "rep-ana", "reason": "I do not speak German"}],
        },
        "OfferAnswered": {
            **_object({
                "lead_id": _STR,
                "status": {"enum": ["received"],
                           "description": "The answer is stored and on its way to the lead; not yet that it "
                                          "counted (only the first answer to an offer does)."},
                "answer": {"enum": ["accept", "decline"], "description": "The answer received."},
                "rep_id": _STR,
                "route_id": {"type": "string", "description": "The offer this answer is for."},
            }),
            "examples": [{"lead_id": "ld_0123456789abcdef01234567", "status": "received", "answer": "accept",
                          "rep_id": "rep-ana", "route_id": "ld_0123456789abcdef01234567:1:2"}],
        },
        "RepInput": {**_model_schema(REP_INPUT_MODEL, "RepInput", _REP_UPDATE,
                                     _REP_FIELDS),
                     "examples": [{"team": "emea", "name": "Ana Ruiz", "capacity": 8, "languages": ["es", "en"],
                                   "territories": ["ES", "PT"], "timezone": "Europe/Madrid",
                                   "webhook_url": "https://hooks.example.com/leadflow/ana"}]},
        "RepAccepted": _object(
            {"rep_id": _STR, "team": _STR, "status": {"const": "accepted"}, "created": _BOOL},
            {"webhook_secret": {**_STR, "pattern": "^whsec_", "description": (
                "Only when the rep is new and no secret was sent: the generated secret, shown this once.")}}),
        "RepRetired": _object({"rep_id": _STR, "status": {"const": "retired"}}, description=(
            "The retirement is on its way to the rep's team: no new leads; the leads they hold stay theirs "
            "until released. A later PUT of the rep brings them back.")),
        "RepView": _object(
            {"rep_id": _STR, "team": _STR, "status": {"enum": ["active", "retired"]}, "updated_at": _TIME,
             "held_elsewhere": _INT,
             "in_team": {**_BOOL, "description": (
                 "Whether `team` holds the rep as a member, as its last answer said: false for a new rep it has "
                 "not taken yet (`pending`) or refused (`refused`), who is in no team, and for a retired rep.")}},
            {"retired_by": {"enum": ["api", "config"]}, "name": _STR, "capacity": _INT,
             "daily_cap": {"type": ["integer", "null"]}, "weekly_cap": {"type": ["integer", "null"]},
             "weight": _INT, "skills": _STRINGS, "languages": _STRINGS, "territories": _STRINGS, "timezone": _STR,
             "webhook_configured": _BOOL,
             "moving_to": _object({"team": _STR, "since": _TIME}),
             "move_refused": _object({"team": _STR, "reason": _STR, "at": _TIME}),
             "pending": _object({"team": _STR, "since": _TIME}),
             "refused": _object({"team": _STR, "reason": _STR, "at": _TIME})},
            description=("The rep as the rep directory knows them; never the webhook secret. `team` is the rep's "
                         "team: a move (a PUT naming another team) happens once the new team takes the rep in "
                         "(`moving_to` meanwhile); a team that refuses them (full, or too big) leaves them in "
                         "`team`, as they were, and says why in `move_refused` until their next change. A new "
                         "rep or a change in the rep's team is shown once the team has taken it (`pending` "
                         "meanwhile); a team that refuses it keeps what it held, shown here (a new rep: in no "
                         "team, `in_team` false, no profile), and says why in `refused` until a change is taken.")),
        "PresenceInput": {**_model_schema(PRESENCE_INPUT_MODEL, "PresenceInput", "A rep's presence.",
                                          _PRESENCE_FIELDS), "examples": [{"status": "available"}]},
        "PresenceAccepted": _object({"rep_id": _STR, "presence": {"enum": ["available", "busy", "offline"]},
                                     "status": {"const": "accepted"}}),
        "AccountInput": {**_model_schema(ACCOUNT_INPUT_MODEL, "AccountInput",
                                         "A company's owner, team and tier; unknown fields are refused.",
                                         _ACCOUNT_FIELDS),
                         "examples": [{"name": "Acme", "owner": "rep-ana", "tier": "strategic"}]},
        "Account": _object({
            "domain": {**_STR, "description": "The registrable domain: the account's key."}, "name": _STR,
            "owner": _nullable(_STR), "team": _nullable(_STR), "tier": _nullable(_STR), "updated_at": _TIME,
        }, description="A company leadflow matches leads to by their e-mail or website domain."),
        "AccountAccepted": _object({
            "domain": _STR, "name": _STR, "owner": _nullable(_STR), "team": _nullable(_STR),
            "tier": _nullable(_STR), "updated_at": _TIME, "status": {"const": "accepted"},
        }, description="The account as it will be stored (the owner's team filled in)."),
        "AccountRemoved": _object({"domain": _STR, "status": {"const": "accepted"}}),
        "TeamRep": _object({
            "rep_id": _STR, "name": _STR, "presence": {"enum": ["available", "busy", "offline"]},
            "open_leads": {**_INT, "description": "Every lead counted against the rep's capacity: those they hold "
                                                  "in this team plus `held_elsewhere`."},
            "held_elsewhere": {**_INT, "description": "Leads the rep still holds in teams they left (they keep "
                                                      "counting against the capacity until closed)."},
            "capacity": _INT, "weight": _INT, "assigned_total": _INT, "last_assigned_at": _nullable(_TIME),
            "webhook_configured": _BOOL, "skills": _STRINGS, "languages": _STRINGS, "territories": _STRINGS,
            "timezone": _STR,
            "departed": {**_BOOL, "description": "Moved to another team or retired; listed here until the leads "
                                                 "they hold here are closed, never routed new ones, and not counted in "
                                                 "the team's capacity, available_capacity or reps_available."},
        }, description="A rep as the team sees them (webhook secrets are never shown)."),
        "TeamView": _object({
            "team_id": _STR, "reps": {"type": "array", "items": _ref("TeamRep")},
            "open_leads": {**_INT, "description": "Leads of this team held open by its reps, departed ones "
                                                  "included; never leads its reps hold in other teams."},
            "capacity": {**_INT, "description": "Capacity of the reps who have not departed."},
            "available_capacity": {**_INT, "description": "Free slots (capacity - open_leads) of the available "
                                                          "reps who have not departed."},
            "reps_available": {**_INT, "description": "Available reps who have not departed."},
            "queue_depth": _INT,
            "routed_total": _INT, "sla": _ref("TeamSla"),
        }, {"refused_reps": {"type": "array", "items": _ref("RepRefusal"), "description": (
            "Reps the team refused after their PUT's 202 (the team full, or its state too big to write), "
            "the last 20; present only when there is one. An entry goes when the rep is taken in or deleted.")}},
            description="Roster, load against capacity, presence, queue depth and windowed SLA counts."),
        "RepRefusal": _object({"rep_id": _STR, "reason": _STR, "at": _TIME},
                              description="A rep the team could not take, and why."),
        "TeamSla": {"type": "object", "description": (
            "SLA signals of the team in the current minute (tumbling) and the last hour (the twelve "
            "5-minute windows ending with the current one: the last 55-60 minutes): arrival, "
            "contact_in_sla, contact_late, breach, escalation (steps that did something), sla_met and "
            "sla_missed (each lead-cycle once: met at a first contact by the deadline, missed at the breach "
            "or at a late first contact with no breach before it), and compliance = sla_met / (sla_met + "
            "sla_missed), null when none."),
            "properties": {"minute": {"type": "object"}, "hour": {"type": "object"}}},
        "Health": _object({"status": {"const": "ok"}}),
        "Readiness": _object({"status": {"enum": ["ready", "not_ready"]}, "detail": _STR}),
    }


_QUALIFICATION_EXAMPLE: Schema = {"framework": "BANT", "rep_id": "rep-ana", "answers": {
    "budget": "approved", "authority": "decision_maker", "need": "leads wait two days for a call",
    "timeline": "this_quarter"}}
_CRM_EVENT_EXAMPLE: Schema = {"type": "opportunity.lost", "timestamp": "2026-03-20T16:00:00+00:00",
                              "data": {"lead_id": "ld_0123456789abcdef01234567", "reason": "no budget"}}


def _crm_schemas() -> dict[str, Schema]:
    """Qualification and CRM events (issue 5): inputs and answers."""
    frameworks = ", ".join(f"`{f.name}` ({', '.join(c.key for c in f.criteria)})" for f in DEFAULT_FRAMEWORKS.values())
    return {
        "QualificationInput": {
            "title": "QualificationInput", "type": "object", "additionalProperties": False,
            "required": ["framework", "answers"],
            "description": "Answers to one framework's criteria; later answers merge with earlier ones of the same "
                           "framework, `null` clears one. When the SQL criteria are met the lead converts into an "
                           f"opportunity. Shipped: {frameworks}.",
            "properties": {
                "framework": {**_STR, "description": "The framework's name (case-blind)."},
                "answers": {"type": "object", "minProperties": 1, "description": (
                    "Criterion key to answer: choice criteria take one of their choices, boolean ones true or "
                    "false, number ones a number, text ones a string.")},
                "rep_id": _nullable({"type": "string", "minLength": 1, "maxLength": 64, "description": (
                    "The rep answering: they must hold the lead (offered or assigned to them), else 409 on "
                    "`rep_id`. Leave it out for answers that come from no rep (the CRM, a manager).")}),
                "qualification_id": _nullable({"type": "string", "minLength": 1, "maxLength": 128}),
                "at": _nullable(_TIME),
            },
            "examples": [_QUALIFICATION_EXAMPLE],
        },
        "QualificationAccepted": _object({
            "lead_id": _STR, "qualification_id": _STR, "status": {"const": "accepted"}, "framework": _STR,
            "met": _STRINGS, "missing": _STRINGS, "sql": _BOOL, "reason": _STR},
            description="`sql`: the answers meet the SQL criteria, so the lead converts into an opportunity."),
        "CrmEventInput": {
            "title": "CrmEventInput", "type": "object", "additionalProperties": False, "required": ["type", "data"],
            "description": "An opportunity moved in the CRM. `opportunity.lost` recycles the lead to nurture with "
                           "the reason; `activity.logged` is checked and counted like "
                           "`POST /v1/leads/{lead_id}/activities`.",
            "properties": {
                "type": {"enum": list(EVENT_TYPES)},
                "timestamp": {**_TIME, "description": (
                    "When it happened by the CRM's clock (Salesforce's LastModifiedDate, HubSpot's stage time); "
                    "default: when it arrives. Events are ordered by this time only: a won, lost or stage change "
                    "with a `timestamp` before the newest one applied to the deal is stale, and the close the deal "
                    "holds sent again at that close's own `timestamp` is a repeat: both 200 `ignored`. Without "
                    "one, or at the same time otherwise, events apply in arrival order. Out of range in UTC, "
                    "before 1970-01-02 or more than a day ahead: 422.")},
                "data": {"type": "object", "additionalProperties": False, "required": ["lead_id"], "properties": {
                    "lead_id": {"type": "string", "pattern": "^ld_[0-9a-f]{24}$", "description": (
                        "The lead, as leadflow wrote it into the CRM (`crm.hubspot.lead_id_property`, "
                        "`crm.salesforce.lead_id_field`). Required: an opportunity id alone cannot name its lead.")},
                    "opportunity_id": {"type": "string", "pattern": "^op_[0-9a-f]{24}$", "description": (
                        "leadflow's opportunity id (the CRM's upsert key); if given it must be the lead's current "
                        "opportunity, else 409.")},
                    "crm_id": {"type": "string", "maxLength": 64},
                    "stage": {"type": "string", "maxLength": 100, "description": "For `opportunity.stage_changed`."},
                    "amount": {"type": "number", "minimum": 0},
                    "reason": {"type": "string", "maxLength": 500, "description": "Why it was lost."},
                    "activity": {"type": "object", "additionalProperties": False, "required": ["type"], "properties": {
                        "type": {"enum": ["call", "email", "meeting", "sms", "note"]},
                        "rep_id": _STR, "at": _TIME, "outcome": _STR}},
                }},
            },
            "examples": [_CRM_EVENT_EXAMPLE],
        },
        "CrmEventAccepted": _object({"lead_id": _STR, "event_id": _STR, "type": {"enum": list(EVENT_TYPES)},
                                     "status": {"const": "accepted"}}),
        "CrmEventIgnored": _object({"lead_id": _STR, "event_id": _STR, "type": {"enum": list(EVENT_TYPES)},
                                    "status": {"const": "ignored"}, "why": _STR},
                                   description="A stale event (its `timestamp` is before the newest move "
                                               "applied) or a repeat of the close held at its own time. Nothing "
                                               "changed."),
        "ScoreView": _object({"value": _INT, "tier": _STR, "fit": _INT, "intent": _INT, "outcomes": _INT,
                              "segment": _STR, "reasons": _STRINGS},
                             description="Fit + intent (+ what won/lost outcomes taught), 0-100, with the reasons."),
    }


def _crm_paths() -> dict[str, Schema]:
    signed = _error("The Standard Webhooks signature is missing or wrong, or `webhook-timestamp` is outside the "
                    "tolerance (`bad_signature`).", code="bad_signature",
                    message="CRM event refused: webhook-timestamp is more than 300 s from now")
    return {
        "/v1/leads/{lead_id}/qualification": {"parameters": [_param("LeadId")], "post": _op(
            "recordQualification", "leads", "Record qualification answers; SQL criteria met convert the lead",
            {"202": {"description": "The answers are on their way to the lead; `sql` says whether it converts.",
                     **_json_body(_ref("QualificationAccepted"))},
             **_refs(400, 401, 404, 413, 415, 429, 503),
             "409": _error("The lead cannot take answers now (nurture, converted, closed), or `rep_id` names a "
                           "rep who does not hold the lead (`fields` names `rep_id` then).", code="conflict",
                           message="lead ld_0123456789abcdef01234567: rep_id ana: the lead is held by another rep, "
                                   "not ana",
                           fields=[{"field": "rep_id", "reason": "the lead is held by another rep, not ana"}]),
             "422": _error("Unknown framework, unknown criterion, or an answer of the wrong type: `fields` names it.",
                           code="invalid", message="the qualification is not valid",
                           fields=[{"field": "answers.budget", "reason": "expected one of approved, allocated, "
                                                                         "being_set, none, unknown"}])},
            requestBody={"required": True, **_json_body(_ref("QualificationInput"))})},
        "/v1/crm/events": {"post": _op(
            "crmEvent", "crm", "The CRM reports an opportunity's stage change, win, loss or an activity",
            {"202": {"description": "Accepted; sent to the lead.",
                     "headers": {"Idempotent-Replayed": {"$ref": "#/components/headers/IdempotentReplayed"}},
                     **_json_body(_ref("CrmEventAccepted"))},
             "200": {"description": "Ignored: a won, lost or stage change whose `timestamp` is before the newest "
                                    "one applied to the deal (a CRM redelivery out of order), or the close the "
                                    "deal holds at that close's own `timestamp` (a redelivery). Nothing changes; the lead says `opportunity.event_ignored`. A 2xx, so the CRM "
                                    "does not deliver it again.",
                     "headers": {"Idempotent-Replayed": {"$ref": "#/components/headers/IdempotentReplayed"}},
                     **_json_body(_ref("CrmEventIgnored"))},
             "401": signed,
             **_refs(413, 429, 503),
             "404": _error("Unknown lead, or CRM events are not configured on this worker.", code="not_found",
                           message="no lead ld_0123456789abcdef01234567"),
             "409": _error("The lead has no open opportunity, `data.opportunity_id` is not its current one (an "
                           "earlier cycle's deal), or an `activity.logged` names in "
                           "`data.activity.rep_id` a rep who does not hold the lead (`fields` names it).",
                           code="conflict",
                           message="lead ld_0123456789abcdef01234567: the opportunity is already lost"),
             "422": _error("Not a valid CRM event: `fields` names the problem (a missing `data.lead_id`, or an "
                           "`activity.logged` whose `data.activity.at` is in the future or before the lead's capture "
                           "too, a `timestamp` out of range in UTC or before 1970-01-02).", code="invalid",
                           message="the CRM event is not valid",
                           fields=[{"field": "data.amount", "reason": "Input should be a valid number"}])},
            description="Not authenticated by API key: signed per Standard Webhooks with the CRM events secret "
                        "(`webhook-id`, `webhook-timestamp`, `webhook-signature`). A timestamp more than the "
                        "tolerance (5 minutes by default) from now is refused; a `webhook-id` seen before gets the "
                        "first answer again and changes nothing.",
            requestBody={"required": True, **_json_body(_ref("CrmEventInput"))})},
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
        "BadRequest": _error("The body is not JSON (`malformed_json`), or a header is invalid "
                             "(`invalid_idempotency_key`: an `Idempotency-Key` that is not 1 to 255 printable "
                             "ASCII characters).",
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
        "Forbidden": _error("The API key is valid but lacks the scope this operation needs (the operation's "
                            "`security` names it; `WWW-Authenticate` says `insufficient_scope` and the scope).",
                            code="forbidden", message="API key 'website' lacks the 'admin' scope this request needs "
                                                      "(its scopes: capture)",
                            headers={"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}}),
        "RateLimited": _error("Over the API key's requests per minute (GCRA, bursts up to the limit), or, on any "
                              "operation taking a key, more than 30 failed authentications per minute from the "
                              "client's address (then every request with a key from it is refused until "
                              "`Retry-After`); retry after `Retry-After` seconds.", code="rate_limited",
                              message="more than 600 requests per minute for website; retry in 2 s", headers=retry),
        "Unavailable": _error("Not ready to take this now (Kafka unavailable; partitions being assigned; the "
                              "worker that owns the key loading its tables, not answering the relay, or the key "
                              "moving between workers); retry after `Retry-After` seconds.", code="unavailable",
                              message="leads could not be stored right now; retry", headers=retry),
    }


def _op(operation_id: str, tag: str, summary: str, responses: dict[str, Schema], **extra: Any) -> Schema:
    return {"operationId": operation_id, "tags": [tag], "summary": summary, "responses": responses, **extra}


def _refs(*statuses: int) -> dict[str, Schema]:
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
             413: "PayloadTooLarge", 429: "RateLimited",
             415: "UnsupportedMediaType", 422: "Invalid", 503: "Unavailable"}
    return {str(s): {"$ref": f"#/components/responses/{names[s]}"} for s in statuses}


def _param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _paths(single_result: Schema, batch_result: Schema) -> dict[str, Schema]:
    body_errors = _refs(400, 401, 413, 415, 422, 429, 503)
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
            "409": {"description": "A request with the same `Idempotency-Key` and body is being answered now "
                                   "(`idempotency_key_in_use`): nothing was done; retry after `Retry-After` seconds "
                                   "to get its answer.",
                    "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
                    **_json_body(_ref("Error"))},
            "422": {"description": "A single lead is not valid (`invalid_lead`), the batch envelope is not, or the "
                                   "`Idempotency-Key` was already used with a different body (`idempotency_key_reused`), "
                                   "including by a request being answered now.",
                    **_json_body(_ref("Error"), example=invalid_lead)},
        },
        description=(
            "Send one lead object, or `{\"leads\": [...]}`. The lead's id is derived from its identity "
            "(e-mail, else phone with its extension, else source and external id), so the same person from any channel is one "
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
             **_refs(400, 401, 404, 409, 413, 415, 422, 429, 503)},
            requestBody={"required": True, **_json_body(_ref("DispositionInput"))})},
        **{f"/v1/leads/{{lead_id}}/{verb}": {"parameters": [_param("LeadId")], "post": _op(
            f"{verb}Offer", "leads", summary,
            {"202": {"description": "The answer was received (stored on Kafka), not yet applied: the lead applies "
                                    "answers in order and only the first one to an offer counts. An answer that "
                                    "lost a race (an accept and a decline at once, or an accept as the offer "
                                    "lapsed) is recorded on the lead's timeline as `offer_answer_rejected` with "
                                    "why, and published as `lead.offer_answer_rejected`. Confirm with "
                                    "`GET /v1/leads/{lead_id}`: an accept counted when the timeline has your "
                                    "`accepted` entry.",
                     **_json_body(_ref("OfferAnswered"))},
             **_refs(400, 401, 404, 409, 413, 415, 422, 429, 503)},
            description=("For teams with an `offer_timeout`: the lead is offered to one rep (a `lead.offered` "
                         "webhook with `offer.expires_at`) who accepts or declines it. A decline or a lapsed offer "
                         "goes to the next eligible rep, never back to whoever declined. 409 when, as the request "
                         "arrives, the lead has no open offer for this rep."),
            requestBody={"required": True, **_json_body(_ref("OfferAnswer"))})}
           for verb, summary in (("accept", "Accept the lead offered to you"),
                                 ("decline", "Decline the lead offered to you, with a reason"))},
        **_crm_paths(),
        "/v1/leads/{lead_id}/activities": {"parameters": [_param("LeadId")], "post": _op(
            "recordActivity", "leads", "Record a call, e-mail, meeting, SMS or note; the first contact stops the SLA",
            {"202": {"description": "The activity is on its way to the lead.",
                     **_json_body(_ref("ActivityAccepted"))},
             **_refs(400, 401, 404, 409, 413, 415, 422, 429, 503)},
            description=("`at` (default: now) may be neither in the future nor before the lead's capture "
                         "(422 naming `at`). A `rep_id` must be the rep who holds the lead (offered or "
                         "assigned), as for qualification answers: 409 naming `rep_id` otherwise; an activity "
                         "without `rep_id` (the CRM, a manager) is not tied to a holder. On a closed lead (which "
                         "nobody holds) an activity without `rep_id` is recorded, never as a first contact."),
            requestBody={"required": True, **_json_body(_ref("ActivityInput"))})},
        "/v1/reps/{rep_id}": {"parameters": [_param("RepId")], "get": _op(
            "getRep", "reps", "A rep: their team, and a move waiting or refused",
            {"200": {"description": "The rep.", **_json_body(_ref("RepView"))}, **_refs(401, 404, 422, 503)},
            description=("A rep stored under an id from before ids were ASCII only is still found here (and by "
                         "DELETE); any other id outside the rule is a 422 naming rep_id.")), "put": _op(
            "putRep", "reps", "Create or update a rep",
            {"202": {"description": ("The change is on its way to the rep's team. The team may still refuse "
                                     "it: see `refused_reps` in `GET /v1/teams/{team_id}`."),
                     **_json_body(_ref("RepAccepted"), example={
                         "rep_id": "rep-ana", "team": "emea", "status": "accepted", "created": True,
                         "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})},
             **body_errors},
            requestBody={"required": True, **_json_body(_ref("RepInput"))}, description=_REP_UPDATE),
            "delete": _op(
                "deleteRep", "reps", "Retire a rep (no new leads; the leads they hold stay theirs)",
                {"202": {"description": "The retirement is on its way to the rep's team (also for a rep "
                                        "already retired).",
                         **_json_body(_ref("RepRetired"), example={"rep_id": "rep-ana", "status": "retired"})},
                 **_refs(401, 404, 422, 429, 503)},
                description=("Any rep, made through the API or the config file, or stored under an id from "
                             "before ids were ASCII only (only GET and DELETE still take such an id). The team lists a rep who still "
                             "holds leads with `departed: true` until their last lead is released; a rep "
                             "without leads leaves the team at once. Their presence can no longer be set "
                             "(404). `PUT /v1/reps/{rep_id}` brings them back, with the profile they had for "
                             "what the body leaves out. A config file that still names the rep, unchanged, "
                             "does not bring them back at the next start; a changed entry does."))},
        "/v1/reps/{rep_id}/presence": {"parameters": [_param("RepId")], "post": _op(
            "setPresence", "reps", "Set a rep's presence",
            {"202": {"description": "The change is on its way to the rep's team.",
                     **_json_body(_ref("PresenceAccepted"))},
             **_refs(400, 401, 404, 413, 415, 422, 429, 503)},
            requestBody={"required": True, **_json_body(_ref("PresenceInput"))})},
        "/v1/accounts/{domain}": {
            "parameters": [_param("Domain")],
            "put": _op(
                "putAccount", "accounts", "Create or replace an account (its owner, team and tier)",
                {"202": {"description": "The change is on its way to the account book.",
                         **_json_body(_ref("AccountAccepted"))}, **body_errors},
                requestBody={"required": True, **_json_body(_ref("AccountInput"))}),
            "get": _op("getAccount", "accounts", "An account",
                       {"200": {"description": "The account.", **_json_body(_ref("Account"))},
                        **_refs(401, 404, 422, 503)}),
            "delete": _op("deleteAccount", "accounts", "Forget an account (its leads route by the rules again)",
                          {"202": {"description": "The removal is on its way to the account book.",
                                   **_json_body(_ref("AccountRemoved"))}, **_refs(401, 404, 422, 429, 503)}),
        },
        "/v1/teams/{team_id}": {"parameters": [_param("TeamId")], "get": _op(
            "getTeam", "teams", "A team's roster, load and queue",
            {"200": {"description": "The team.", **_json_body(_ref("TeamView"))}, **_refs(401, 404, 503)})},
        "/healthz": {"get": _op("healthz", "operations", "Liveness",
                                {"200": {"description": "The process is up.", **_json_body(_ref("Health"))}},
                                security=[])},
        "/readyz": {"get": _op(
            "readyz", "operations",
            "Readiness: partitions assigned, tables recovered and Kafka taking this worker's writes",
            {"200": {"description": "Ready.", **_json_body(_ref("Readiness"))},
             "503": {"description": "Not ready (starting: joining the group, recovering tables; Kafka "
                                    "did not take this worker's last write and has not answered since; or "
                                    "stopping, from the SIGTERM on). A worker that was ready once stays "
                                    "ready through a rebalance (200, `detail` \"rebalancing: …\"). "
                                    "`detail` says which.", **_json_body(_ref("Readiness"))}},
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


# --- the capture channels besides JSON: forms, CSV import, provider webhooks ------------------

_FORM_EXAMPLE = {"email": "ana.garcia@example.com", "First Name": "Ana", "company": "Acme Iberia",
                 "phone": "+34 612 345 678", "plan": "team", REDIRECT_FIELD: "https://www.example.com/thanks"}
_CSV_EXAMPLE = ("E-mail,First Name,Company,Phone,Country,Plan\r\n"
                "ana.garcia@example.com,Ana,\"Acme, Iberia\",+34 612 345 678,ES,team\r\n"
                "not-an-email,Bo,Northwind,,,\r\n")
_FACEBOOK_EXAMPLE: Schema = {"object": "page", "entry": [{"id": "516540199134611", "time": 1767603600, "changes": [
    {"field": "leadgen", "value": {"leadgen_id": "444444444444", "page_id": "516540199134611",
                                   "form_id": "551111744595541", "ad_id": "0", "created_time": 1767603600}}]}]}
_TYPEFORM_EXAMPLE: Schema = {"event_id": "01HZX0", "event_type": "form_response", "form_response": {
    "form_id": "lT4Z3j", "token": "a3a12ec67a1365927098a606107fac15", "submitted_at": "2026-01-05T09:00:00Z",
    "hidden": {"utm_campaign": "spring-webinar"},
    "answers": [{"type": "email", "email": "ana.garcia@example.com", "field": {"id": "SMEUb7VJz92Q", "type": "email",
                                                                          "ref": "work_email"}},
                {"type": "text", "text": "Acme Iberia", "field": {"id": "JwWggjAKtOkA", "type": "short_text",
                                                                  "ref": "company"}}]}}


def _channel_schemas() -> dict[str, Schema]:
    rejected_row = _object({"row": _INT, "status": {"const": "rejected"},
                            "errors": {"type": "array", "items": _ref("FieldError")}})
    provider_rejected = _object({"leadgen_id": _STR, "status": {"const": "rejected"},
                                 "errors": {"type": "array", "items": _ref("FieldError")}})
    return {
        "FormFields": {
            "title": "FormFields", "type": "object", "additionalProperties": {"type": "string"},
            "description": "Inputs named like lead fields (`email`, `first_name`, ...) or their common spellings "
                           "(`E-mail`, `First Name`, `name` = full name); every other input is kept in "
                           "`attributes` (at most 50, values up to 200 characters). Inputs starting with `_` are "
                           f"controls and not stored; `{REDIRECT_FIELD}` is the redirect target.",
            "properties": {REDIRECT_FIELD: {"type": "string", "format": "uri"}},
            "examples": [_FORM_EXAMPLE],
        },
        "ImportColumns": _object({"columns": {"type": "object", "additionalProperties": _STR}}, description=(
            "The first line: what each column holds (`email`, `attributes.Plan`, ...).")),
        "ImportRow": {"oneOf": [
            _object({"row": _INT, "lead_id": _STR, "status": {"enum": ["accepted", "duplicate"]}}), rejected_row]},
        "ImportSummary": _object(
            {"summary": _object({"rows": _INT, "accepted": _INT, "duplicate": _INT, "rejected": _INT},
                                {"resume_from_row": _INT})},
            {"error": {"$ref": "#/components/schemas/Error/properties/error"}},
            description="The last line. With `error` the import stopped early: rows from `resume_from_row` on "
                        "were not stored."),
        "ImportLine": {"oneOf": [_ref("ImportColumns"), _ref("ImportRow"), _ref("ImportSummary")]},
        "FacebookLeadgenWebhook": {
            "title": "FacebookLeadgenWebhook", "type": "object", "required": ["object", "entry"],
            "description": "Meta's Page webhook with `leadgen` changes. Other changes are ignored. `field_data` "
                           "(the Graph API's answers) is optional: without it the lead is read from the Graph API. "
                           "Up to 1000 changes per delivery, as Meta batches them. A long value is cut to fit an "
                           "attribute (200 characters ending in …), never a 422 that would fail the whole batch.",
            "properties": {"object": {"const": "page"}, "entry": {"type": "array", "items": {
                "type": "object", "required": ["changes"], "properties": {"changes": {"type": "array", "items": {
                    "type": "object", "properties": {"field": _STR, "value": {
                        "type": "object", "required": ["leadgen_id"],
                        "properties": {"leadgen_id": {"type": ["string", "integer"]},
                                       "page_id": {"type": ["string", "integer"]},
                                       "form_id": {"type": ["string", "integer"]},
                                       "ad_id": {"type": ["string", "integer"]},
                                       "field_data": {"type": "array", "items": _object(
                                           {"name": _STR, "values": _STRINGS})}}}}}}}}}},
            "examples": [_FACEBOOK_EXAMPLE],
        },
        "FacebookResult": _object(
            {"accepted": _INT, "duplicate": _INT, "rejected": _INT, "ignored": _INT, "results": {
                "type": "array", "items": {"oneOf": [
                    _object({"leadgen_id": _STR, "lead_id": _STR, "status": {"enum": ["accepted", "duplicate"]}}),
                    provider_rejected]}}},
            description="One result per `leadgen` change; `ignored` counts changes of other fields."),
        "TypeformWebhook": {
            "title": "TypeformWebhook", "type": "object", "required": ["event_type"],
            "description": "Typeform's webhook. Only `form_response` events are captured; others are ignored. A "
                           "long answer is cut to fit an attribute (200 characters ending in …), never a 422: "
                           "Typeform drops a response after five 4xx.",
            "properties": {"event_id": _STR, "event_type": _STR, "form_response": {
                "type": "object", "required": ["form_id", "token"],
                "properties": {"form_id": _STR, "token": _STR, "hidden": {"type": "object"},
                               "answers": {"type": "array", "items": {"type": "object", "required": ["type", "field"]}}}}},
            "examples": [_TYPEFORM_EXAMPLE],
        },
        "ProviderIgnored": _object({"status": {"const": "ignored"}}),
    }


def _signature(header: str, how: str) -> str:
    return (f"Not authenticated by API key: the body must be signed by the provider in `{header}` ({how}). "
            "A missing or wrong signature is a 401 saying which. The same body again within 24 h gets the first "
            "answer (`Idempotent-Replayed: true`) and stores nothing; a lead made before the replay window "
            "(`max_age_hours`, 48 h) is refused as a replay.")


def _channel_paths() -> dict[str, Schema]:
    see_other = {
        "description": "With a valid redirect target: back to the site, with `status=accepted`, or with "
                       "`error=<code>` and `fields=<names>` when the lead is refused or cannot be stored now. "
                       "The body is what the JSON answer would have been.",
        "headers": {"Location": {"description": "The redirect target with the outcome in its query.",
                                 "schema": {"type": "string", "format": "uri"}}},
        **_json_body({"oneOf": [_ref("CaptureResult"), _ref("Error")]}),
    }
    form_body = {"schema": _ref("FormFields"), "example": _FORM_EXAMPLE}
    form = _op(
        "postForm", "leads", "Capture a lead from an HTML form post",
        {"202": {"description": "Stored (Kafka acknowledged); no redirect was asked for.",
                 **_json_body(_ref("CaptureResult"))},
         "303": see_other,
         **_refs(401, 413, 415, 429, 503),
         "400": _error("The form body cannot be read.", code="malformed_form",
                       message="the form body cannot be read (UnicodeDecodeError)"),
         "422": _error("The lead is not valid (`invalid_lead`), the redirect target is not allowed "
                       "(`invalid_redirect`), or an input is a file.", code="invalid_redirect",
                       message="will not redirect there: evil.example is not an allowed redirect host",
                       fields=[{"field": "redirect", "reason": "evil.example is not an allowed redirect host"}])},
        description="For sites whose forms post to leadflow through their own backend or edge function, which adds "
                    "the API key (never put a key in a page). Field names follow `FormFields`.",
        parameters=[
            {"name": "form_id", "in": "path", "required": True, "description": "Which form on the site; kept in "
             "the lead's `attributes.form_id`.", "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                                           "maxLength": 64}},
            {"name": "redirect", "in": "query", "required": False, "description": "Where to send the browser "
             f"afterwards (like the `{REDIRECT_FIELD}` input): http(s) on a host in the worker's allowed redirect "
             "hosts.", "schema": {"type": "string", "format": "uri"}},
        ],
        requestBody={"required": True, "content": {ctype: form_body for ctype in FORM_CONTENT_TYPES}},
    )
    csv_import = _op(
        "importLeads", "leads", "Import a CSV file of leads, streamed, with a result per row",
        {"202": {"description": "NDJSON, one `ImportLine` per line: the column mapping, a result per row (sent as "
                                f"each chunk of {CHUNK_ROWS} rows is stored), and a summary.",
                 "content": {"application/x-ndjson": {"schema": _ref("ImportLine")}}},
         **_refs(401, 415, 429, 503),
         "400": _error("The file cannot be read: `bad_encoding` (name the charset or send UTF-8) or "
                       "`malformed_csv` (a quote never closed, a row over 64 KiB), found before anything was stored.",
                       code="bad_encoding", message="row 3 (line 4) is not valid utf-8-sig at byte 7 of the line",
                       fields=[{"field": "rows[3]", "reason": "row 3 (line 4) is not valid utf-8-sig at byte 7"}]),
         "413": _error(f"More rows than an import may hold ({_MAX_IMPORT_ROWS} by default), found before anything "
                       "was stored.", code="too_many_rows", message="an import holds at most 100000 rows"),
         "422": _error("The header row cannot be used (no identity column, two columns for one field) or the "
                       "source is not valid.", code="invalid_header", message="the header row cannot be used",
                       fields=[{"field": "columns[2]", "reason": "'Mail' holds email, like 'E-mail'"}])},
        description="The first row names the columns: lead fields or their common spellings, case-insensitive "
                    "(`E-mail`, `First Name`, `Job Title`, `Name` = full name); other columns become attributes. "
                    "`;` or tab separate columns when the header has no comma. UTF-8 (a BOM is fine) unless "
                    "`charset` says otherwise. Problems found after the first chunk end the stream with an "
                    "`error` and `resume_from_row`.",
        parameters=[
            {"name": "source", "in": "query", "required": False, "description": "The source of rows without a "
             "`source` column (default: the API key's name).", "schema": {"type": "string", "maxLength": 100}},
            _param("IdempotencyKey"),
        ],
        requestBody={"required": True, "content": {ctype: {"schema": {"type": "string"}, "example": _CSV_EXAMPLE}
                                                   for ctype in CSV_CONTENT_TYPES}},
    )
    provider_unavailable = _error(
        "Not now, retry after `Retry-After` seconds (the provider redelivers): Kafka unavailable, the provider not "
        "configured on this worker (never a 404: Typeform switches a webhook off at its first 404), or, for "
        "Facebook, a lead that cannot be read from the Graph API now (throttled, or an access token or permission "
        "to fix); the delivery's readable leads are stored and its redelivery captures none twice.",
        code="unavailable", message="the typeform provider is not configured on this worker "
                                    "(providers.typeform in its config); retry later",
        headers={"Retry-After": {"$ref": "#/components/headers/RetryAfter"}})
    provider_errors = {
        **_refs(413, 429),
        "503": provider_unavailable,
        "401": _error("The signature is missing or does not match the body (`bad_signature`), or, for Typeform, "
                      "the response was submitted before the replay window (`stale`).", code="bad_signature",
                      message="facebook webhook refused: missing X-Hub-Signature-256 header"),
        "400": _error("The body is not JSON.", code="malformed_json", message="the body is not valid JSON"),
    }
    return {
        "/v1/forms/{form_id}": {"post": form},
        "/v1/leads/import": {"post": csv_import},
        "/v1/providers/facebook": {
            "get": _op(
                "verifyFacebookWebhook", "providers", "Meta's webhook verification handshake",
                {"200": {"description": "`hub.challenge`, echoed.", "content": {"text/plain": {"schema": _STR}}},
                 "503": provider_unavailable,
                 "401": _error("`hub.verify_token` is not the configured verify token.", code="unauthorized",
                               message="hub.verify_token does not match the configured verify token"),
                 "400": _error("Not a verification request.", code="bad_request",
                               message="expected hub.mode=subscribe and a hub.challenge to echo")},
                description="Meta calls this once when the webhook is configured; a wrong `hub.verify_token` is a "
                            "401. Not authenticated by API key.",
                parameters=[{"name": name, "in": "query", "required": True, "schema": _STR}
                            for name in ("hub.mode", "hub.verify_token", "hub.challenge")]),
            "post": _op(
                "facebookLeads", "providers", "Facebook Lead Ads webhook (leadgen)",
                {"200": {"description": "Each lead stored (Kafka acknowledged) or rejected (unreadable, or made "
                                        "before the replay window). A replayed body gets its first answer.",
                         "headers": {"Idempotent-Replayed": {"$ref": "#/components/headers/IdempotentReplayed"}},
                         **_json_body(_ref("FacebookResult"))},
                 **provider_errors,
                 "422": _error("Not a Lead Ads payload: `fields` names the first wrong field.",
                               code="invalid_payload", message="not a Lead Ads webhook payload",
                               fields=[{"field": "entry[0].changes[0].value.leadgen_id",
                                        "reason": "expected a numeric Graph API id"}])},
                description=_signature("X-Hub-Signature-256", "`sha256=` + hex HMAC-SHA256 of the raw body with the "
                                       "app secret") + " Up to 1000 leadgen changes (Meta's batch). Leads without "
                                       "`field_data` are read from the Graph API; when one cannot be read now the "
                                       "answer is 503 and Meta redelivers.",
                requestBody={"required": True, **_json_body(_ref("FacebookLeadgenWebhook"))})},
        "/v1/providers/typeform": {"post": _op(
            "typeformResponse", "providers", "Typeform webhook (form_response)",
            {"200": {"description": "Stored (Kafka acknowledged), or an event that is not a submission (`ignored`). "
                                    "A replayed body gets its first answer.",
                     "headers": {"Idempotent-Replayed": {"$ref": "#/components/headers/IdempotentReplayed"}},
                     **_json_body({"oneOf": [_ref("CaptureResult"), _ref("ProviderIgnored")]})},
             **provider_errors,
             "422": _error("Not a Typeform payload (`invalid_payload`, naming the field), or no lead can be made "
                           "of it (`invalid_lead`).", code="invalid_payload", message="not a Typeform webhook payload",
                           fields=[{"field": "form_response.token", "reason": "expected a non-empty string"}])},
            description=_signature("Typeform-Signature", "`sha256=` + base64 HMAC-SHA256 of the raw body with the "
                                   "webhook secret") + " Answers map to lead fields by `field.ref` through the "
                                   "per-form field map in the config; e-mail and phone answers are found by type.",
            requestBody={"required": True, **_json_body(_ref("TypeformWebhook"))})},
    }


#: The scope each operation taking an API key needs (connectors/auth.py); the handlers name the same.
_SCOPES: dict[tuple[str, str], Scope] = {
    ("post", "/v1/leads"): "capture", ("post", "/v1/leads/import"): "capture", ("post", "/v1/forms/{form_id}"): "capture",
    ("get", "/v1/leads/{lead_id}"): "read", ("get", "/v1/teams/{team_id}"): "read",
    ("get", "/v1/accounts/{domain}"): "read",
    **{("post", f"/v1/leads/{{lead_id}}/{verb}"): "work"
       for verb in ("accept", "decline", "activities", "qualification", "disposition")},
    ("post", "/v1/reps/{rep_id}/presence"): "work",
    ("get", "/v1/reps/{rep_id}"): "read",
    ("put", "/v1/reps/{rep_id}"): "admin", ("delete", "/v1/reps/{rep_id}"): "admin",
    ("put", "/v1/accounts/{domain}"): "admin", ("delete", "/v1/accounts/{domain}"): "admin",
}


def _scoped(paths: dict[str, Schema]) -> dict[str, Schema]:
    """Each keyed operation names its scope (OpenAPI 3.1: role names for an http scheme) and documents the 403
    for a key without it and the 429 for an address with too many failed authentications."""
    for (method, path), scope in _SCOPES.items():
        op = paths[path][method]
        op["security"] = [{"bearerAuth": [scope]}]
        responses = {}
        for status, response in op["responses"].items():
            responses[status] = response
            if status == "401":
                responses.update(_refs(403))
        op["responses"] = {**responses, **({} if "429" in responses else _refs(429))}
    return paths


def _build() -> Schema:
    single_result, batch_result = _capture_results()
    id_param = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": _ID_PATTERN}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadflow", "version": "1",
            "summary": "Capture leads and route them to the right rep in seconds.",
            "description": "JSON everywhere. Errors have one shape (`Error`). Authenticate with "
                           "`Authorization: Bearer <api key>`; the key's name is the default lead source, and its "
                           "scopes say which operations it may call (403 naming the scope it lacks).",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://localhost:6066", "description": "a local worker (any worker answers)"}],
        "tags": [{"name": "leads"}, {"name": "providers"}, {"name": "crm"}, {"name": "reps"}, {"name": "teams"},
                 {"name": "accounts"},
                 {"name": "operations"}],
        "security": [{"bearerAuth": []}],
        "paths": _scoped({**_paths(single_result, batch_result), **_channel_paths()}),
        "components": {
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "An API key from LEADFLOW_API_KEYS or the config. Each operation's `security` names "
                               "the scope its key needs: `capture` (send leads), `read` (leads, teams, accounts), "
                               "`work` (an SDR tool: offers, activities, qualification, disposition, presence), "
                               "`admin` (reps and accounts). A key configured without scopes has them all. Keys "
                               "have at least 16 printable ASCII characters."}},
            "schemas": {**_schemas(), **_channel_schemas()},
            "responses": _responses(),
            "parameters": {
                "LeadId": {"name": "lead_id", "in": "path", "required": True,
                           "description": "The id `POST /v1/leads` returned.",
                           "schema": {"type": "string", "pattern": "^ld_[0-9a-f]{24}$"}},
                "RepId": {"name": "rep_id", "in": "path", "required": True, "schema": id_param,
                          "description": "1-64 ASCII letters, digits, '_', '.' or '-', beginning with a letter "
                                         "or digit; otherwise a 422 naming rep_id."},
                "TeamId": {"name": "team_id", "in": "path", "required": True, "schema": id_param},
                "Domain": {"name": "domain", "in": "path", "required": True,
                           "description": "A company domain (`acme.com`); a sub-domain names its registrable "
                                          "domain's account (`www.acme.com` is `acme.com`).",
                           "schema": {"type": "string", "minLength": 1, "maxLength": 253}},
                "IdempotencyKey": {
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "description": ("Retry safely: a repeated key (per API key, for 24 h) gets the first response. "
                                    "1 to 255 printable ASCII characters; anything else is a 400 "
                                    "(`invalid_idempotency_key`) naming the header."),
                    "schema": {"type": "string", "minLength": 1, "maxLength": _IDEMPOTENCY_MAX,
                               "pattern": "^[\\x20-\\x7e]+$"}},
            },
            "headers": {
                "RetryAfter": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
                "WWWAuthenticate": {"description": "The auth scheme: `Bearer realm=\"leadflow\"`; on a 403 also "
                                                   "`error=\"insufficient_scope\", scope=\"<scope>\"`.",
                                    "schema": _STR},
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

"""``POST /v1/crm/events``: the CRM tells leadflow how an opportunity moved (signed per Standard Webhooks).

No API key: the body is signed with the CRM events secret (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``). A timestamp further than
the tolerance from now is refused (a captured request cannot be replayed later), and a
``webhook-id`` seen before gets the first answer again without sending anything twice.

Body: ``{"type": "opportunity.stage_changed" | "opportunity.won" | "opportunity.lost" |
"activity.logged", "data": {"lead_id", "opportunity_id"?, "stage"?, "amount"?, "reason"?,
"activity"?}}``; an ``activity.logged`` counts as contact exactly like
``POST /v1/leads/{id}/activities``. ``data.lead_id`` is what the CRM holds in the lead id
property leadflow writes (``crm.hubspot.lead_id_property``, ``crm.salesforce.lead_id_field``).
``data.opportunity_id`` alone cannot name the lead: leadflow's ``op_…`` id is a one-way hash of
the lead id and cycle (``rules.opportunity.opportunity_id_for``), so it gets a 422 saying so;
given with the lead id, it must be the lead's current opportunity (an event about an earlier
cycle's deal is a 409, not applied to the new one), and the lead checks it again when it applies
the event. A won for a deal closed lost, or a lost for one closed won, is a correction and is
taken (202) while the lead is still in that deal's cycle (``rules.lead_crm``); the same close
again is a 409. So is a stage change of that cycle's closed deal: a reopen (202; Closed Lost →
Negotiation, HubSpot's ``closedlost`` → a pipeline stage), unless it names the stage the deal
closed at (409).

Order: events are ordered by the CRM's own clock only, the event's ``timestamp`` (the Salesforce
relay sends ``LastModifiedDate``, the HubSpot relay the stage's time), carried unclamped as
``RecordCrmEvent.crm_at``; ``at`` (the timeline's) is that time clamped to now, or the arrival.
A won, lost or stage change whose ``timestamp`` is before the newest move applied to the deal is
stale (a redelivery out of order: Salesforce retries "independent of their order in the queue"),
and the close the deal holds sent again at that close's own time is a repeat (Salesforce
redelivers with the record's latest data). Either is answered **200** ``{"status": "ignored",
"why": ...}``, not 409: a 409 would have Salesforce redeliver it for 24 h. The lead still gets it
and says ``opportunity.event_ignored`` on ``lead.events`` (``rules.lead_crm.stale_crm_event``).
The close held sent with a later ``timestamp`` is taken (202) and changes only that order: an
older move still on its way is then stale. Without a ``timestamp`` on both, events apply in
arrival order (the same close again is then a 409). A ``timestamp`` out of range in
UTC, before 1970-01-02 or more than a day ahead is a 422 naming it.
"""
from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from connectors.api.activities import refuse_unfit_activity
from connectors.api.context import context
from connectors.api.errors import ApiError, json_response, no_such_lead
from connectors.lead_input import FieldError
from connectors.webhook_signing import sign
from rules.commands import RecordActivity, RecordCrmEvent
from rules.lead_crm import can_take_crm_event, confirms_close, stale_crm_event

__all__ = ["routes", "CRM_EVENT_MODEL", "EVENT_TYPES", "verify"]

routes = web.RouteTableDef()

EVENT_TYPES = ("opportunity.stage_changed", "opportunity.won", "opportunity.lost", "activity.logged")
_Text = Annotated[str, Field(min_length=1, max_length=500)]


class _Activity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["call", "email", "meeting", "sms", "note"]
    rep_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    at: AwareDatetime | None = None
    outcome: _Text | None = None


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Required in effect (checked after parsing, to say why an opportunity id alone is not enough).
    lead_id: Annotated[str, Field(pattern=r"^ld_[0-9a-f]{24}$")] | None = None
    #: leadflow's opportunity id, as the CRM holds it in its upsert key (``leadflow_id``, ``Leadflow_Id__c``).
    opportunity_id: Annotated[str, Field(pattern=r"^op_[0-9a-f]{24}$")] | None = None
    #: The CRM's own record id, for its logs (leadflow keys by its own lead id).
    crm_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    stage: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    amount: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    reason: _Text | None = None
    activity: _Activity | None = None


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["opportunity.stage_changed", "opportunity.won", "opportunity.lost", "activity.logged"]
    timestamp: AwareDatetime | None = None
    data: _Data


CRM_EVENT_MODEL = _Event

_NO_LEAD_ID = ("required: an opportunity id alone cannot name its lead (leadflow's op_ ids are a one-way hash of "
               "the lead id and cycle); send the ld_ id leadflow writes to the CRM (the deal property "
               "crm.hubspot.lead_id_property, or the Opportunity field crm.salesforce.lead_id_field)")


def verify(secret: str, headers: Any, body: bytes, now: datetime, tolerance_s: float) -> tuple[str, str | None]:
    """``(webhook_id, problem)``: ``problem`` says why the signature is refused, ``None`` when it verifies."""
    msg_id = headers.get("webhook-id") or ""
    stamp = headers.get("webhook-timestamp") or ""
    signatures = headers.get("webhook-signature") or ""
    if not (msg_id and stamp and signatures):
        return msg_id, "missing webhook-id, webhook-timestamp or webhook-signature header"
    if not stamp.isdigit() or len(stamp) > 12:
        return msg_id, "webhook-timestamp is not unix seconds"
    if abs(now.timestamp() - int(stamp)) > tolerance_s:
        return msg_id, f"webhook-timestamp is more than {tolerance_s:g} s from now"
    try:
        expected = sign(secret, msg_id, int(stamp), body).encode()
    except ValueError:
        return msg_id, "the configured secret is not usable"
    if not any(hmac.compare_digest(expected, s.encode()) for s in signatures.split() if s.startswith("v1,")):
        return msg_id, "webhook-signature does not match the body"
    return msg_id, None


def _fields(exc: ValidationError) -> list[FieldError]:
    return [FieldError(".".join(str(p) for p in e["loc"]) or "(body)",
                       "unknown field" if e["type"] == "extra_forbidden" else e["msg"]) for e in exc.errors()]


#: No CRM moved a deal before this: an earlier time is a placeholder (an epoch 0, .NET's
#: ``DateTime.MinValue``), not when the event happened.
_EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)


#: A CRM clock further ahead than this is not a skew but a placeholder (``9999-12-31``): taken as
#: when the CRM moved the deal, it would make every later event of the deal look stale.
_AHEAD = timedelta(days=1)


def _refuse_implausible(field: str, value: datetime | None, now: datetime) -> None:
    """A 422 naming ``field`` when the time is out of range in UTC (``0001-01-01T00:00:00+14:00``),
    before 1970 or more than a day ahead: never a 500, and never a placeholder taken for when the
    CRM moved the deal."""
    if value is None:
        return
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ApiError(422, "invalid", "the CRM event is not valid",
                       [FieldError(field, "is out of range once converted to UTC")]) from None
    if utc < _EARLIEST:
        raise ApiError(422, "invalid", "the CRM event is not valid",
                       [FieldError(field, f"is before {_EARLIEST.date().isoformat()}: not a time the CRM moved "
                                          "the deal (an epoch 0 or a minimum date?)")])
    if utc > now + _AHEAD:
        raise ApiError(422, "invalid", "the CRM event is not valid",
                       [FieldError(field, "is more than a day ahead of now: not a time the CRM moved the deal")])


@routes.post("/crm/events")
async def crm_event(request: web.Request) -> web.Response:
    ctx = context(request)
    auth = ctx.crm_events
    if auth is None:
        raise ApiError(404, "not_found", "CRM events are not configured on this worker (crm.events_secret_env)")
    body = await request.read()
    now = ctx.clock.now()
    msg_id, problem = verify(auth.secret, request.headers, body, now, auth.tolerance_s)
    if problem is not None:
        raise ApiError(401, "bad_signature", f"CRM event refused: {problem}")
    try:
        event = _Event.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(422, "invalid", "the CRM event is not valid", _fields(exc)) from None
    _refuse_implausible("timestamp", event.timestamp, now)
    lead_id = event.data.lead_id
    if lead_id is None:
        raise ApiError(422, "invalid", "the CRM event is not valid", [FieldError("data.lead_id", _NO_LEAD_ID)])
    forwarded = await ctx.engine.forward_to_owner("lead", lead_id, request)
    if forwarded is not None:
        return forwarded
    stored = await ctx.store.replay("crm-events", msg_id)
    if stored is not None:  # the same webhook-id again: the first answer, nothing sent twice
        return web.Response(body=stored[1], status=stored[0], content_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
    state = ctx.engine.lead(lead_id)
    if state is None:
        raise no_such_lead(lead_id)
    named = event.data.opportunity_id
    current = state.opportunity.opportunity_id if state.opportunity is not None else None
    if named is not None and named != current:
        reason = (f"is not the lead's current opportunity ({current}): an event about an earlier cycle's deal "
                  "is not applied to this one" if current else "the lead has no opportunity")
        raise ApiError(409, "conflict", f"lead {lead_id}: data.opportunity_id {reason}",
                       [FieldError("data.opportunity_id", reason)])
    at = event.timestamp or now
    if event.type == "activity.logged":
        activity = event.data.activity
        if activity is None:
            raise ApiError(422, "invalid", "the CRM event is not valid",
                           [FieldError("data.activity", "required for activity.logged")])
        when = activity.at or at
        if when > now:
            raise ApiError(422, "invalid", "the CRM event is not valid", [FieldError("data.activity.at",
                                                                                    "is in the future")])
        refuse_unfit_activity(state, when, activity.rep_id, what="the CRM event", prefix="data.activity.")
        command: RecordActivity | RecordCrmEvent = RecordActivity(
            lead_id=lead_id, activity_id=f"crm:{msg_id}", type=activity.type, rep_id=activity.rep_id,
            at=when.astimezone(UTC), outcome=activity.outcome)
    else:
        kind = event.type.split(".", 1)[1]
        if kind == "stage_changed" and not event.data.stage:
            raise ApiError(422, "invalid", "the CRM event is not valid",
                           [FieldError("data.stage", "required for opportunity.stage_changed")])
        happened = min(at, now).astimezone(UTC)
        crm_at = event.timestamp.astimezone(UTC) if event.timestamp is not None else None  # ordered by, unclamped
        stale = stale_crm_event(state, crm_at, named, kind)
        confirms = stale is None and confirms_close(state, kind, crm_at, named)  # a 202: its time moves the order
        conflict = None if stale is not None or confirms else can_take_crm_event(state, kind, named,
                                                                                 event.data.stage)
        if conflict is not None:
            raise ApiError(409, "conflict", f"lead {lead_id}: {conflict}")
        command = RecordCrmEvent(lead_id=lead_id, event_id=f"crm:{msg_id}", kind=kind,  # type: ignore[arg-type]
                                 stage=event.data.stage, amount=event.data.amount, reason=event.data.reason,
                                 at=happened, opportunity_id=named, crm_at=crm_at)
        if stale is not None:
            # Sent all the same: the lead, deciding by the same rule, says opportunity.event_ignored.
            await ctx.engine.send_lead_command(lead_id, command)
            ignored = {"lead_id": lead_id, "event_id": msg_id, "type": event.type, "status": "ignored", "why": stale}
            await ctx.store.remember("crm-events", msg_id, 200, orjson.dumps(ignored))
            return json_response(ignored, status=200)
    await ctx.engine.send_lead_command(lead_id, command)
    answer = {"lead_id": lead_id, "event_id": msg_id, "type": event.type, "status": "accepted"}
    await ctx.store.remember("crm-events", msg_id, 202, orjson.dumps(answer))
    return json_response(answer, status=202)

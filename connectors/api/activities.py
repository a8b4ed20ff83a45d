"""``POST /v1/leads/{lead_id}/activities``: the rep worked the lead; the first contact stops the SLA.

Refused: ``at`` in the future or before the lead's capture (``422`` naming ``at``); a ``rep_id``
who does not hold the lead (``409`` naming ``rep_id``, as qualification answers). On a closed
lead the activity is recorded, but never as a first contact (no speed-to-lead).
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError

from connectors.api.context import lead_owner, read_json
from connectors.api.errors import ApiError, json_response, no_such_lead
from connectors.lead_input import FieldError
from rules.commands import RecordActivity
from rules.lead_sla import activity_rep_problem, activity_time_problem
from rules.lead_state import LeadState

__all__ = ["routes", "ACTIVITY_INPUT_MODEL", "refuse_unfit_activity"]

routes = web.RouteTableDef()


class _ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["call", "email", "meeting", "sms", "note"]
    rep_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    at: AwareDatetime | None = None
    outcome: Annotated[str, StringConstraints(max_length=500)] | None = None
    #: The caller's id for this activity (a CRM's activity id): sending it twice records it once.
    activity_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


ACTIVITY_INPUT_MODEL = _ActivityIn


def refuse_unfit_activity(state: LeadState, at: datetime, rep_id: str | None, *, what: str,
                          prefix: str = "") -> None:
    """An activity's checks before it is sent, for this endpoint and the CRM's ``activity.logged``
    (the lead checks again on apply): ``at`` before the capture is a 422 naming ``<prefix>at``. As
    qualification answers, a named rep reports only on a lead they hold (a 409 naming
    ``<prefix>rep_id``); an activity without a rep_id (the CRM, a manager) is not tied to a holder."""
    too_early = activity_time_problem(state, at)
    if too_early is not None:
        raise ApiError(422, "invalid", f"{what} is not valid", [FieldError(f"{prefix}at", too_early)])
    not_theirs = activity_rep_problem(state, rep_id)
    if not_theirs is not None:
        raise ApiError(409, "conflict", f"lead {state.lead_id}: {prefix}rep_id {rep_id}: {not_theirs}",
                       [FieldError(f"{prefix}rep_id", not_theirs)])


@routes.post("/leads/{lead_id}/activities")
async def record_activity(request: web.Request) -> web.Response:
    ctx, lead_id, forwarded = await lead_owner(request, "work")
    if forwarded is not None:
        return forwarded
    try:
        activity = _ActivityIn.model_validate(await read_json(request))
    except ValidationError as exc:
        fields = [FieldError(".".join(str(p) for p in e["loc"]) or "(body)",
                             "unknown field" if e["type"] == "extra_forbidden" else e["msg"]) for e in exc.errors()]
        raise ApiError(422, "invalid", "the activity is not valid", fields) from None
    now = ctx.clock.now()
    at: datetime = activity.at or now
    if at > now:
        raise ApiError(422, "invalid", "the activity is not valid", [FieldError("at", "is in the future")])
    state = ctx.engine.lead(lead_id)
    if state is None:
        raise no_such_lead(lead_id)
    refuse_unfit_activity(state, at, activity.rep_id, what="the activity")
    activity_id = activity.activity_id or uuid.uuid4().hex
    await ctx.engine.send_lead_command(lead_id, RecordActivity(
        lead_id=lead_id, activity_id=activity_id, type=activity.type, rep_id=activity.rep_id, at=at,
        outcome=activity.outcome))
    return json_response({"lead_id": lead_id, "activity_id": activity_id, "status": "accepted"}, status=202)

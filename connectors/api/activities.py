"""``POST /v1/leads/{lead_id}/activities``: the rep worked the lead; the first contact stops the SLA."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError

from connectors.api.context import lead_owner, read_json
from connectors.api.errors import ApiError, json_response
from connectors.lead_input import FieldError
from rules.commands import RecordActivity

__all__ = ["routes", "ACTIVITY_INPUT_MODEL"]

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


@routes.post("/leads/{lead_id}/activities")
async def record_activity(request: web.Request) -> web.Response:
    ctx, lead_id, forwarded = await lead_owner(request)
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
    if ctx.engine.lead(lead_id) is None:
        raise ApiError(404, "not_found", f"no lead {lead_id}")
    activity_id = activity.activity_id or uuid.uuid4().hex
    await ctx.engine.send_lead_command(lead_id, RecordActivity(
        lead_id=lead_id, activity_id=activity_id, type=activity.type, rep_id=activity.rep_id, at=at,
        outcome=activity.outcome))
    return json_response({"lead_id": lead_id, "activity_id": activity_id, "status": "accepted"}, status=202)

"""``POST /v1/leads/{lead_id}/qualification``: the rep's answers to a framework; SQL converts the lead."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from connectors.api.context import lead_owner, read_object
from connectors.api.errors import ApiError, json_response
from connectors.lead_input import FieldError
from rules.commands import RecordQualification
from rules.lead_crm import can_qualify, qualifier_problem
from rules.qualification import check_answers, evaluate, find_framework

__all__ = ["routes", "QUALIFICATION_FIELDS"]

routes = web.RouteTableDef()

QUALIFICATION_FIELDS = ("framework", "answers", "rep_id", "qualification_id", "at")


def _text(body: dict[str, Any], name: str, limit: int, errors: list[FieldError]) -> str | None:
    value = body.get(name)
    if value is not None and not (isinstance(value, str) and 0 < len(value) <= limit):
        errors.append(FieldError(name, f"expected a string of 1 to {limit} characters"))
        return None
    return value


@routes.post("/leads/{lead_id}/qualification")
async def record_qualification(request: web.Request) -> web.Response:
    ctx, lead_id, forwarded = await lead_owner(request, "work")
    if forwarded is not None:
        return forwarded
    body, errors = await read_object(request, frozenset(QUALIFICATION_FIELDS))
    name = body.get("framework")
    framework = find_framework(ctx.frameworks, name) if isinstance(name, str) else None
    if framework is None:
        errors.append(FieldError("framework", f"unknown framework; expected one of {', '.join(sorted(ctx.frameworks))}"
                                 if isinstance(name, str) else "expected the framework's name (a string)"))
    answers = body.get("answers")
    if not isinstance(answers, dict) or not answers:
        errors.append(FieldError("answers", "expected a non-empty object of criterion: answer"))
    elif framework is not None:
        errors += [FieldError(f, r) for f, r in check_answers(framework, answers)]
    rep_id = _text(body, "rep_id", 64, errors)
    qualification_id = _text(body, "qualification_id", 128, errors)
    at = ctx.clock.now()
    if body.get("at") is not None:
        try:
            at = datetime.fromisoformat(str(body["at"]))
            if at.tzinfo is None or at > ctx.clock.now():
                raise ValueError
        except ValueError:
            errors.append(FieldError("at", "expected an ISO 8601 time with a time zone, not in the future"))
    if errors:
        raise ApiError(422, "invalid", "the qualification is not valid", errors)
    assert framework is not None and isinstance(answers, dict)
    state = ctx.engine.lead(lead_id)
    problem = can_qualify(state)
    if problem is not None:
        raise ApiError(404 if state is None else 409, "not_found" if state is None else "conflict",
                       f"lead {lead_id}: {problem}")
    assert state is not None
    # As accept/decline: a rep answers only for a lead they hold (the lead checks again on apply).
    not_theirs = qualifier_problem(state, rep_id)
    if not_theirs is not None:
        raise ApiError(409, "conflict", f"lead {lead_id}: rep_id {rep_id}: {not_theirs}",
                       [FieldError("rep_id", not_theirs)])
    # What the lead will decide, answered now (the lead agent applies the same pure rules).
    merged = dict(state.qualification.answers) if state.qualification and \
        state.qualification.framework == framework.name else {}
    merged = {k: v for k, v in {**merged, **answers}.items() if v is not None}
    verdict = evaluate(framework, merged)
    qualification_id = qualification_id or uuid.uuid4().hex
    await ctx.engine.send_lead_command(lead_id, RecordQualification(
        lead_id=lead_id, qualification_id=qualification_id, framework=framework.name, answers=answers,
        rep_id=rep_id, at=at))
    return json_response({"lead_id": lead_id, "qualification_id": qualification_id, "status": "accepted",
                          "framework": framework.name, "met": list(verdict.met), "missing": list(verdict.missing),
                          "sql": verdict.sql, "reason": verdict.reason}, status=202)

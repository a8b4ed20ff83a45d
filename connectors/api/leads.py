"""``/v1/leads``: capture (single and batch), read a lead with its timeline, disposition, offer answers."""
from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from connectors.api.accounts import account_view
from connectors.api.context import ApiContext, authenticate, context, lead_owner, read_json, read_object
from connectors.api.errors import ApiError, json_response, no_such_lead
from connectors.lead_input import FieldError, LeadInvalid, ValidLead, sealed_record, validate_lead
from leadflow.errors import TransientError, Unconfirmed
from rules.commands import AnswerOffer, DispositionLead
from rules.lead import LeadState, can_disposition
from rules.lead_crm import score_view
from rules.lead_offer import offer_problem

__all__ = ["routes", "DISPOSITIONS", "Outcome", "capture_id", "capture_many", "lead_fingerprint", "lead_view"]

DISPOSITIONS = ("disqualified", "nurture", "recycled", "unresponsive")
_IDEMPOTENCY_MAX = 255
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
#: Seconds a request sent again while its first copy is being answered waits before retrying (409).
_IN_FLIGHT_RETRY_S = 1

routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one submitted lead."""

    status: Literal["accepted", "duplicate", "rejected"]
    lead_id: str | None = None
    errors: tuple[FieldError, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        if self.status == "rejected":
            return {"status": "rejected", "errors": [{"field": f.field, "reason": f.reason} for f in self.errors]}
        return {"lead_id": self.lead_id, "status": self.status}


async def capture_many(ctx: ApiContext, items: Sequence[Any], *, channel: str, default_source: str,
                       capture_ids: Callable[[int, ValidLead], str], prefix: Callable[[int], str] = lambda index: "",
                       metric_source: str | None = None) -> list[Outcome]:
    """Validate each lead, put the valid ones on ``leads.inbound`` (acknowledged), mark them seen.

    The one capture path of every HTTP channel (JSON, forms, CSV, provider webhooks): the record
    is the lead as received plus ``_meta``, so the intake agent validates it exactly as here.
    ``capture_ids(index, lead)`` names each valid lead's capture (see ``capture_id``).
    Raises ``TransientError`` (nothing stored) when Kafka cannot take them; ``metric_source``
    labels the captured counter (default ``default_source``; keep it a bounded set).
    """
    valid: list[tuple[int, ValidLead]] = []
    outcomes: list[Outcome] = []
    for index, item in enumerate(items):
        try:
            checked = validate_lead(item, default_source=default_source, channel=channel, prefix=prefix(index))
        except LeadInvalid as exc:
            ctx.metrics.leads_rejected.labels(channel, "invalid").inc()
            outcomes.append(Outcome("rejected", errors=tuple(exc.fields)))
            continue
        valid.append((index, checked))
        outcomes.append(Outcome("accepted", checked.lead_id))

    received_at = ctx.clock.now().isoformat()
    records, captures = [], []
    for index, checked in valid:
        captures.append(capture_ids(index, checked))
        meta = {"capture_id": captures[-1], "received_at": received_at,
                "channel": channel, "default_source": default_source}
        records.append((checked.lead_id, sealed_record(items[index], meta)))
    if records:
        # On Kafka, acknowledged, before the answer (a TransientError becomes a 503 with Retry-After).
        await ctx.engine.capture(records)
    seen = await ctx.store.mark_seen([checked.lead_id for _, checked in valid], captures)
    for (index, checked), was_seen in zip(valid, seen):
        ctx.metrics.leads_captured.labels(metric_source or default_source, channel).inc()
        if was_seen:
            outcomes[index] = Outcome("duplicate", checked.lead_id)
    return outcomes


def lead_fingerprint(checked: ValidLead) -> str:
    """What a captured lead says, normalized (key order, spacing and case of the e-mail do not count)."""
    return hashlib.sha256(orjson.dumps(checked.lead, option=orjson.OPT_SORT_KEYS)).hexdigest()


def capture_id(caller: str, idempotency_key: str | None, index: int, checked: ValidLead) -> str:
    """The capture id of item ``index`` of a request: random without an Idempotency-Key.

    With a key it is deterministic, so a retried request is a replay the lead agent ignores even
    when Redis (which normally answers the retry) is down. It includes what the lead says: the
    same key with another body (while Redis is down, after the key's entry expired, or a corrected
    CSV file) is a new capture, a touch that keeps the new data, never a replay silently dropped.
    """
    if idempotency_key is None:
        return uuid.uuid4().hex
    basis = f"{caller}\x00{idempotency_key}\x00{index}\x00{lead_fingerprint(checked)}"
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def _items(payload: object, max_batch: int) -> tuple[list[Any], bool]:
    """The leads in a request body, and whether it was a batch ``{"leads": [...]}``."""
    if not (isinstance(payload, dict) and "leads" in payload):
        return [payload], False
    extra = sorted(set(payload) - {"leads"})
    if extra:
        raise ApiError(422, "invalid", "unknown fields in the batch envelope",
                       [FieldError(name, "unknown field") for name in extra])
    items = payload["leads"]
    if not isinstance(items, list) or not items:
        raise ApiError(422, "invalid", "leads must be a non-empty array",
                       [FieldError("leads", "expected a non-empty array of lead objects")])
    if len(items) > max_batch:
        raise ApiError(413, "batch_too_large", f"a batch holds at most {max_batch} leads, got {len(items)}",
                       [FieldError("leads", f"at most {max_batch} items")])
    return items, True


def idempotency_key(request: web.Request) -> str | None:
    """The request's ``Idempotency-Key``: 1 to 255 printable ASCII characters, else a 400.

    aiohttp hands header bytes over as surrogate-escaped text: a key of non-ASCII bytes could not
    be hashed for the idempotency store (a 500 until this check).
    """
    idem = request.headers.get("Idempotency-Key")
    if idem is not None and not (0 < len(idem) <= _IDEMPOTENCY_MAX and _PRINTABLE_ASCII.fullmatch(idem)):
        raise ApiError(400, "invalid_idempotency_key",
                       f"Idempotency-Key must be 1 to {_IDEMPOTENCY_MAX} printable ASCII characters")
    return idem


@routes.post("/leads")
async def capture_leads(request: web.Request) -> web.Response:
    caller = authenticate(request, "capture")
    ctx = context(request)
    idem = idempotency_key(request)
    payload = await read_json(request)
    fingerprint = None
    token = None
    if idem is not None:
        # What the request asked, independent of key order and whitespace: a retry matches it.
        fingerprint = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
        claim = await ctx.store.claim(caller.name, idem, fingerprint)
        first = claim.answer[2] if claim.answer is not None else claim.in_flight or claim.in_doubt
        if first and first != fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was already used with a different request body; "
                           "use a new key for a new request")
        if claim.in_flight is not None:
            # The same request, sent again while its first copy is being answered (IETF
            # draft-ietf-httpapi-idempotency-key-header: 409); the retry gets the first answer.
            raise ApiError(409, "idempotency_key_in_use",
                           "a request with this Idempotency-Key is being answered now; retry after "
                           f"{_IN_FLIGHT_RETRY_S} s to get its answer", headers={"Retry-After": str(_IN_FLIGHT_RETRY_S)})
        if claim.answer is not None:
            status, body_bytes, _ = claim.answer
            return web.Response(body=body_bytes, status=status, content_type="application/json",
                                headers={"Idempotent-Replayed": "true"})
        token = claim.token
    try:
        items, is_batch = _items(payload, ctx.max_batch)
        outcomes = await capture_many(ctx, items, channel="api", default_source=caller.name,
                                      capture_ids=lambda index, checked: capture_id(caller.name, idem, index, checked),
                                      prefix=lambda index: f"leads[{index}]" if is_batch else "")
        if not is_batch and outcomes[0].status == "rejected":
            raise ApiError(422, "invalid_lead", "the lead is not valid", outcomes[0].errors)  # nothing was captured
    except BaseException as exc:
        if idem is not None and token is not None:
            # Refused before anything was written (a 4xx, Kafka refusing the capture): nothing
            # kept, a retry may go at once. Anything else (Kafka did not confirm in time, the
            # client gone mid-write, an unexpected error) may have stored the capture: the key
            # keeps the body's fingerprint, so another body is 422 and this one may try again
            # (its capture ids are the same: a stored first attempt makes it a replay).
            in_doubt = not isinstance(exc, ApiError) and not (
                isinstance(exc, TransientError) and not isinstance(exc, Unconfirmed))
            await ctx.store.release(caller.name, idem, token, fingerprint, in_doubt=in_doubt)
        raise
    results = [{"index": index, **outcome.as_dict()} for index, outcome in enumerate(outcomes)]

    body: dict[str, Any]
    if is_batch:
        counts = {s: sum(1 for r in results if r["status"] == s) for s in ("accepted", "duplicate", "rejected")}
        body = {**counts, "results": results}
    else:
        body = {k: v for k, v in results[0].items() if k != "index"}
    encoded = orjson.dumps(body)
    if idem is not None:
        await ctx.store.remember(caller.name, idem, 202, encoded, fingerprint, token=token)
    return web.Response(body=encoded, status=202, content_type="application/json")


def _sla_view(state: LeadState) -> dict[str, Any] | None:
    track = state.sla
    if track is None:
        return None
    return {"policy": track.policy, "started_at": track.started_at, "breached_at": track.breached_at,
            "stopped_at": track.stopped_at, "previous_reps": list(track.previous_reps),
            "steps": [{"step": d.step, "kind": d.kind, "due_at": d.due_at, "done": d.step in track.done}
                      for d in track.deadlines]}


def lead_view(state: LeadState) -> dict[str, Any]:
    """The public view of a lead: state plus its recent timeline (never the rep's webhook secret)."""
    assignment = None
    if state.assignment is not None:
        a = state.assignment
        assignment = {"rep_id": a.rep_id, "rep_name": a.rep_name, "team_id": a.team_id,
                      "assigned_at": a.assigned_at, "decision": asdict(a.decision)}
    return {
        "lead_id": state.lead_id, "cycle": state.cycle, "status": state.status, "routing": state.routing,
        "team_id": state.team_id, "lead": asdict(state.lead), "captured_at": state.captured_at,
        "touches": state.touches, "first_touch": asdict(state.first_touch), "last_touch": asdict(state.last_touch),
        "assignment": assignment, "sla_deadline": state.sla_deadline, "notified_at": state.notified_at,
        "contacted_at": state.contacted_at, "sla": _sla_view(state),
        "enrichment": asdict(state.enrichment) if state.enrichment is not None else None,
        "score": score_view(state.score),
        "qualification": asdict(state.qualification) if state.qualification is not None else None,
        "opportunity": asdict(state.opportunity) if state.opportunity is not None else None,
        "account": account_view(state.account) if state.account is not None else None,
        "timeline": [asdict(e) for e in state.timeline],
    }


@routes.get("/leads/{lead_id}")
async def get_lead(request: web.Request) -> web.Response:
    ctx, lead_id, forwarded = await lead_owner(request, "read")
    if forwarded is not None:
        return forwarded
    state = ctx.engine.lead(lead_id)
    if state is None:
        raise no_such_lead(lead_id)
    return json_response(lead_view(state))


@routes.post("/leads/{lead_id}/disposition")
async def disposition(request: web.Request) -> web.Response:
    ctx, lead_id, forwarded = await lead_owner(request, "work")
    if forwarded is not None:
        return forwarded
    body, errors = await read_object(request, frozenset({"status", "reason", "rep_id"}))
    status = body.get("status")
    if status not in DISPOSITIONS:
        errors.append(FieldError("status", f"expected one of {', '.join(DISPOSITIONS)}"))
    reason, rep_id = body.get("reason"), body.get("rep_id")
    if reason is not None and not (isinstance(reason, str) and len(reason) <= 500):
        errors.append(FieldError("reason", "expected a string of at most 500 characters"))
    if rep_id is not None and not (isinstance(rep_id, str) and 0 < len(rep_id) <= 64):
        errors.append(FieldError("rep_id", "expected a rep id string"))
    if errors:
        raise ApiError(422, "invalid", "the disposition is not valid", errors)
    state = ctx.engine.lead(lead_id)
    problem = can_disposition(state)
    if problem is not None:
        raise ApiError(404 if state is None else 409, "not_found" if state is None else "conflict",
                       f"lead {lead_id}: {problem}")
    await ctx.engine.send_lead_command(lead_id, DispositionLead(
        lead_id=lead_id, status=str(status), reason=reason, rep_id=rep_id, at=ctx.clock.now()))
    return json_response({"lead_id": lead_id, "status": "accepted"}, status=202)


async def _answer(request: web.Request, *, accepted: bool) -> web.Response:
    """``/accept`` and ``/decline``: the rep answers the offer the lead is waiting on."""
    ctx, lead_id, forwarded = await lead_owner(request, "work")
    if forwarded is not None:
        return forwarded
    body, errors = await read_object(request, frozenset({"rep_id", "reason"}))
    rep_id, reason = body.get("rep_id"), body.get("reason")
    if not (isinstance(rep_id, str) and 0 < len(rep_id) <= 64):
        errors.append(FieldError("rep_id", "required: the id of the rep the lead is offered to"))
    if reason is not None and not (isinstance(reason, str) and len(reason) <= 500):
        errors.append(FieldError("reason", "expected a string of at most 500 characters"))
    if errors:
        raise ApiError(422, "invalid", f"the {'acceptance' if accepted else 'decline'} is not valid", errors)
    state = ctx.engine.lead(lead_id)
    problem = offer_problem(state, str(rep_id))
    if state is None or state.assignment is None or problem is not None:
        raise ApiError(404 if state is None else 409, "not_found" if state is None else "conflict",
                       f"lead {lead_id}: {problem}")
    route_id = state.assignment.route_id
    await ctx.engine.send_lead_command(lead_id, AnswerOffer(
        lead_id=lead_id, rep_id=str(rep_id), route_id=route_id, accepted=accepted, reason=reason,
        at=ctx.clock.now()))
    # "received", never "accepted"/"declined": the lead applies answers in order and only the first
    # to an offer counts, so an answer racing another one (or the offer's lapse) may be refused
    # later (timeline ``offer_answer_rejected``). The route id names the offer this answer is for.
    return json_response({"lead_id": lead_id, "status": "received", "answer": "accept" if accepted else "decline",
                          "rep_id": str(rep_id), "route_id": route_id}, status=202)


@routes.post("/leads/{lead_id}/accept")
async def accept_offer(request: web.Request) -> web.Response:
    return await _answer(request, accepted=True)


@routes.post("/leads/{lead_id}/decline")
async def decline_offer(request: web.Request) -> web.Response:
    return await _answer(request, accepted=False)

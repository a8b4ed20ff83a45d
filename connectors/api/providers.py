"""``/v1/providers/*``: lead webhooks from Facebook Lead Ads and Typeform, authenticated by their signatures.

No API key here: each provider signs the raw body with a shared secret, checked in constant time
before anything else is read. A bad or missing signature is a ``401`` saying why; a payload of
the wrong shape a ``422`` naming the field. A provider cannot correct a lead, so an answer that
would not validate (an odd phone number, a country name) is kept as an attribute instead of
losing the lead; the provider's own id (``leadgen_id``, the response ``token``) is the identity
of last resort and makes redeliveries idempotent.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from connectors.api.context import context, enforce_rate_limit
from connectors.api.errors import ApiError, json_response
from connectors.api.leads import capture_many
from connectors.lead_input import LeadInvalid, validate_lead
from connectors.providers import facebook, typeform
from connectors.providers._shape import PayloadInvalid
from connectors.providers.facebook import FacebookSettings, FieldDatum, GraphAccessRefused, LeadgenChange
from connectors.providers.fields import MAX_ATTRIBUTE_VALUE, MAX_ATTRIBUTES
from connectors.providers.typeform import TypeformSettings
from leadflow.errors import PermanentError, TransientError
from ops.metrics import Metrics

__all__ = ["routes", "salvage"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

_CHALLENGE = re.compile(r"^[\x21-\x7e]{1,512}$")  # printable ASCII: it is echoed back
# Meta batches up to 1000 leads in one delivery: 1000 reads 32 at a time at a Graph latency of
# 0.1-0.3 s take 3-10 s. Meta does not say how long it waits; well under its 20 s elsewhere.
_FETCH_PARALLEL = 32
_FETCH_TIMEOUT_S = 10.0
# Retry-After for a configuration problem (no token, a token Meta refuses): minutes to fix, not seconds.
_CONFIG_RETRY_AFTER_S = 60
_UNTOUCHABLE = frozenset({"external_id", "source", "attributes"})


def _provider_capture_id(*parts: str) -> str:
    # Deterministic: a redelivered webhook is a replay the lead agent recognizes.
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def salvage(lead: dict[str, Any], *, default_source: str, channel: str) -> dict[str, Any]:
    """``lead`` with every field validation refuses moved into ``attributes`` (``<field>_as_given``).

    Validation reports shape problems before value problems, so this takes a few rounds.
    """
    for _ in range(3):
        try:
            validate_lead(lead, default_source=default_source, channel=channel)
            return lead
        except LeadInvalid as exc:
            refused = {f.field.split(".")[0].split("[")[0] for f in exc.fields} - _UNTOUCHABLE
        refused &= set(lead)
        if not refused:
            break  # nothing left to move: capture reports why the lead is refused
        attributes = dict(lead.get("attributes", {}))
        for name in sorted(refused):
            if len(attributes) < MAX_ATTRIBUTES:
                attributes[f"{name}_as_given"] = str(lead[name])[:MAX_ATTRIBUTE_VALUE]
        lead = {k: v for k, v in lead.items() if k not in refused}
        lead["attributes"] = attributes
    return lead


def _json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc.msg} at position {exc.pos}") from None


def _settings(request: web.Request, name: str) -> Any:
    """The provider's settings; ``503`` when this worker has none.

    Not ``404``: Typeform switches a webhook off for good at the first ``404`` or ``410``, and a
    worker started without the section (a rolling deploy, a typo) must not do that. Both
    providers retry a ``503`` (Typeform every few minutes for 10 h, Meta for 36 h).
    """
    ctx = context(request)
    settings = getattr(ctx.providers, name)
    if settings is None:
        ctx.metrics.provider_unavailable.labels(name, "unconfigured").inc()
        log.warning("provider webhook %s answered 503: providers.%s is not configured on this worker", name, name)
        raise ApiError(503, "unavailable", f"the {name} provider is not configured on this worker "
                       f"(providers.{name} in its config); retry later",
                       headers={"Retry-After": str(_CONFIG_RETRY_AFTER_S)})
    return settings


async def _signed_body(request: web.Request, name: str, secret: str, check: Any,
                       header: str) -> tuple[bytes, web.Response | None]:
    """The body, once its signature is checked, and the answer it got before if it is a replay.

    A provider signs the body alone, so a body sent again (the provider retrying, or someone
    replaying a delivery they caught) is the same request: within the idempotency window (24 h,
    Redis) it gets the first answer and nothing is written again. An older one is refused by its
    own signed time (``_too_old``). A replay spends none of the provider's rate allowance.
    """
    body = await request.read()
    problem = check(secret, body, request.headers.get(header))
    if problem is not None:
        raise ApiError(401, "bad_signature", f"{name} webhook refused: {problem}")
    stored = await context(request).store.replay(f"provider:{name}", _digest(body))
    if stored is not None:
        return body, web.Response(body=stored[1], status=stored[0], content_type="application/json",
                                  headers={"Idempotent-Replayed": "true"})
    await enforce_rate_limit(request, f"provider:{name}")  # after the signature: only the provider spends it
    return body, None


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def _answered(request: web.Request, name: str, body: bytes, answer: dict[str, Any]) -> web.Response:
    """``answer`` as the response, kept for a replay of the same body."""
    response = json_response(answer)
    await context(request).store.remember(f"provider:{name}", _digest(body), 200, orjson.dumps(answer))
    return response


def _too_old(at: datetime | None, where: str, max_age: timedelta, now: datetime, setting: str) -> str | None:
    """Why a delivery made at ``at`` (its signed time, at the path ``where``) is a replay, or ``None``."""
    if at is None or now - at <= max_age:
        return None
    hours = max_age.total_seconds() / 3600
    return (f"{where} is {(now - at).total_seconds() / 3600:.0f} h old, past the {hours:g} h a provider "
            f"retries a delivery ({setting}): a replay")


# --- Facebook Lead Ads -------------------------------------------------------------------


@routes.get("/providers/facebook")
async def facebook_verify(request: web.Request) -> web.Response:
    """Meta's subscription handshake: echo ``hub.challenge`` when ``hub.verify_token`` is ours."""
    settings: FacebookSettings = _settings(request, "facebook")
    token = request.query.get("hub.verify_token", "")
    if not hmac.compare_digest(token.encode(), settings.verify_token.encode()):
        raise ApiError(401, "unauthorized", "hub.verify_token does not match the configured verify token")
    mode, challenge = request.query.get("hub.mode"), request.query.get("hub.challenge", "")
    if mode != "subscribe" or not _CHALLENGE.match(challenge):
        raise ApiError(400, "bad_request", 'expected hub.mode=subscribe and a hub.challenge to echo')
    return web.Response(text=challenge, content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"})


class _NoFetcher(TransientError):
    """Leads without ``field_data`` and no access token to read them with: the config to fix."""


_Answer = Sequence[FieldDatum] | str | TransientError


async def _answers(settings: FacebookSettings, changes: list[LeadgenChange]) -> list[_Answer]:
    """Each change's answers (from the payload, else the Graph API), why they never can be had
    (``str``: the lead is rejected), or why not now (``TransientError``: Meta is asked to redeliver)."""
    fetcher = settings.fetcher
    limit = asyncio.Semaphore(_FETCH_PARALLEL)

    async def one(change: LeadgenChange) -> _Answer:
        if change.field_data is not None:
            return change.field_data
        if fetcher is None:
            return _NoFetcher("leads without field_data need the Graph API, and no access token is configured "
                              "(providers.facebook.access_token_env)")
        async with limit:
            try:
                return await asyncio.wait_for(fetcher.fetch(change.leadgen_id), _FETCH_TIMEOUT_S)
            except TimeoutError:
                return TransientError("the Graph API did not answer in time")
            except TransientError as exc:
                return exc
            except PermanentError as exc:
                return f"cannot be read from the Graph API: {exc}"

    return list(await asyncio.gather(*(one(c) for c in changes)))


def _redeliver(metrics: Metrics, deferred: Sequence[TransientError], total: int) -> ApiError:
    """The ``503`` that has Meta redeliver a delivery with leads that cannot be read now.

    A token or permission problem (``GraphAccessRefused``) or no token at all is the config to
    fix: it is logged as such (codes only, no lead data), and Meta keeps redelivering for 36 h.
    It is counted once per delivery, by the reason it names.
    """
    config = [exc for exc in deferred if isinstance(exc, GraphAccessRefused | _NoFetcher)]
    first = config[0] if config else deferred[0]
    reason = ("token_missing" if isinstance(first, _NoFetcher) else "token_refused" if config
              else "graph_unavailable")
    metrics.provider_unavailable.labels("facebook", reason).inc()
    if config:
        log.error("facebook: %d of %d leads cannot be read: %s; answered 503, Meta redelivers them for up to 36 h",
                  len(deferred), total, first)
    else:
        log.warning("facebook: %d of %d leads cannot be read now: %s; answered 503 so Meta redelivers them",
                    len(deferred), total, first)
    return ApiError(503, "unavailable",
                    f"{len(deferred)} of {total} leads cannot be read now, retry: {first}. The others are stored "
                    "and a redelivery captures none of them twice",
                    headers={"Retry-After": str(_CONFIG_RETRY_AFTER_S if config else 5)})


@routes.post("/providers/facebook")
async def facebook_leads(request: web.Request) -> web.Response:
    settings: FacebookSettings = _settings(request, "facebook")
    body, replayed = await _signed_body(request, "facebook", settings.app_secret, facebook.check_signature,
                                        facebook.SIGNATURE_HEADER)
    if replayed is not None:
        return replayed
    try:
        changes, ignored = facebook.parse_payload(_json(body))
    except PayloadInvalid as exc:
        raise ApiError(422, "invalid_payload", "not a Lead Ads webhook payload", exc.fields) from None
    ctx = context(request)
    now = ctx.clock.now()
    stale = {index: reason for index, change in enumerate(changes)
             if (reason := _too_old(change.created_at, change.created_at_path, settings.max_age, now,
                                    "providers.facebook.max_age_hours")) is not None}
    # A replayed lead is not fetched. One that cannot be read now is left for Meta's redelivery
    # (503); the others are stored now, and their capture ids make the redelivery a replay.
    fresh = [index for index in range(len(changes)) if index not in stale]
    answers = dict(zip(fresh, await _answers(settings, [changes[index] for index in fresh])))
    deferred = [got for got in answers.values() if isinstance(got, TransientError)]

    results: list[dict[str, Any]] = [{} for _ in changes]
    leads: list[tuple[int, dict[str, Any]]] = []
    refused: list[str] = []  # counted once the delivery is answered, not on each redelivery
    for index, change in enumerate(changes):
        got = answers.get(index, "")
        if isinstance(got, TransientError):
            continue
        if index in stale:
            refused.append("stale")
            results[index] = {"leadgen_id": change.leadgen_id, "status": "rejected",
                              "errors": [{"field": change.created_at_path, "reason": stale[index]}]}
        elif isinstance(got, str):
            refused.append("unreadable")
            results[index] = {"leadgen_id": change.leadgen_id, "status": "rejected",
                              "errors": [{"field": f"{change.path}.value.leadgen_id", "reason": got}]}
        else:
            lead = facebook.to_draft(change, got).as_lead()
            leads.append((index, salvage(lead, default_source=settings.source, channel="facebook")))
    outcomes = await capture_many(
        ctx, [lead for _, lead in leads], channel="facebook", default_source=settings.source,
        capture_ids=lambda i, _lead: _provider_capture_id("facebook", changes[leads[i][0]].leadgen_id))
    if deferred:
        raise _redeliver(ctx.metrics, deferred, len(changes))
    for reason in refused:
        ctx.metrics.leads_rejected.labels("facebook", reason).inc()
    for (index, _), outcome in zip(leads, outcomes):
        results[index] = {"leadgen_id": changes[index].leadgen_id, **outcome.as_dict()}
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("accepted", "duplicate", "rejected")}
    return await _answered(request, "facebook", body, {**counts, "ignored": ignored, "results": results})


# --- Typeform ------------------------------------------------------------------------------


@routes.post("/providers/typeform")
async def typeform_response(request: web.Request) -> web.Response:
    settings: TypeformSettings = _settings(request, "typeform")
    body, replayed = await _signed_body(request, "typeform", settings.secret, typeform.check_signature,
                                        typeform.SIGNATURE_HEADER)
    if replayed is not None:
        return replayed
    try:
        response = typeform.parse_payload(_json(body))
    except PayloadInvalid as exc:
        raise ApiError(422, "invalid_payload", "not a Typeform webhook payload", exc.fields) from None
    if response is None:
        return json_response({"status": "ignored"})  # an event type that is not a submission
    stale = _too_old(response.submitted_at, "form_response.submitted_at", settings.max_age,
                     context(request).clock.now(), "providers.typeform.max_age_hours")
    if stale is not None:
        context(request).metrics.leads_rejected.labels("typeform", "stale").inc()
        raise ApiError(401, "stale", f"typeform webhook refused: {stale}")
    draft = typeform.to_draft(response, settings.forms.get(response.form_id, {}))
    if draft.errors:
        raise ApiError(422, "invalid_lead", "the field map gives a lead field twice", draft.errors)
    lead = salvage(draft.as_lead(), default_source=settings.source, channel="typeform")
    [outcome] = await capture_many(
        context(request), [lead], channel="typeform", default_source=settings.source,
        capture_ids=lambda _index, _lead: _provider_capture_id("typeform", response.form_id, response.token))
    if outcome.status == "rejected":
        raise ApiError(422, "invalid_lead", "the response does not make a valid lead", outcome.errors)
    return await _answered(request, "typeform", body, outcome.as_dict())

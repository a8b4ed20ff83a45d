"""``POST /v1/forms/{form_id}``: HTML form posts, answered with a redirect back to the site when asked.

Field names are lead fields or their common spellings ("E-mail", "First Name", "name"); any
other input is kept in ``attributes`` (bounded as in the JSON API), and inputs whose names start
with ``_`` are controls, not lead data. The API key is required in the ``Authorization`` header,
never in the page: a site posts through its own backend or edge function, which adds the key and
hands the ``303`` back to the browser.

With ``?redirect=<url>`` (or a hidden ``_redirect`` input) to a host in ``allowed_redirect_hosts``
the answer is ``303 See Other`` to that URL with ``status=accepted``, or with ``error=<code>`` and
``fields=<names>`` when the lead is refused or cannot be stored now, so a plain browser form
works. Problems with the request itself (key, content type, a redirect to another host, size)
stay JSON errors: they are the integration's to fix, not the visitor's.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import orjson
from aiohttp import web
from yarl import URL

from connectors.api.context import authenticate, context
from connectors.api.errors import ApiError, json_response
from connectors.api.leads import capture_many
from connectors.lead_input import FieldError
from connectors.providers.fields import LeadDraft, lead_field
from leadflow.errors import TransientError

__all__ = ["routes", "FORM_CONTENT_TYPES", "REDIRECT_FIELD", "form_lead", "redirect_problem"]

routes = web.RouteTableDef()

FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
REDIRECT_FIELD = "_redirect"
_FORM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_REDIRECT = 2000


def form_lead(pairs: Sequence[tuple[str, str]], form_id: str) -> LeadDraft:
    """The lead a form's inputs describe; repeated lead fields with different values are errors."""
    draft = LeadDraft()
    for name, value in pairs:
        if name.startswith("_"):
            continue  # controls: _redirect, honeypots, CSRF tokens
        target = lead_field(name)
        if target is None:
            draft.add_attribute(name, value)  # checkboxes with one name are joined
        else:
            draft.set(target, value, given_as=name)
    draft.attributes["form_id"] = form_id  # which form on the site, for attribution
    return draft


def redirect_problem(raw: str, allowed_hosts: Collection[str]) -> str | None:
    """Why the browser may not be sent to ``raw``, or ``None``: only http(s) to an allow-listed host."""
    if len(raw) > _MAX_REDIRECT:
        return f"longer than {_MAX_REDIRECT} characters"
    if not raw.isprintable() or any(c.isspace() or c == "\\" for c in raw):
        return "contains spaces, control characters or backslashes"
    if not raw.lower().startswith(("https://", "http://")):
        return "must be an absolute http or https URL"
    try:
        url = URL(raw)
        # yarl decodes IDNA hosts lazily: a malformed punycode label fails here, not above.
        host = (url.host or "").lower().rstrip(".")
    except (ValueError, UnicodeError):
        return "not a valid URL"
    if url.user is not None or url.password is not None:
        return "must not carry a user name or password"
    if not allowed_hosts:
        return "no redirect hosts are configured (allowed_redirect_hosts)"
    if host not in {h.lower().rstrip(".") for h in allowed_hosts}:
        return f"{host or 'the host'} is not an allowed redirect host"
    return None


async def _form_pairs(request: web.Request) -> list[tuple[str, str]]:
    try:
        form = await request.post()
    except web.HTTPException:
        raise  # 413: the body is larger than the server takes
    except Exception as exc:
        # aiohttp's form and multipart parsers signal a malformed body with many exception types
        # (UnicodeDecodeError, LookupError for a bogus charset, ValueError for a bad boundary, ...):
        # all of them are bad input here, never a reason for a 5xx.
        raise ApiError(400, "malformed_form", f"the form body cannot be read ({type(exc).__name__})") from None
    pairs: list[tuple[str, str]] = []
    refused = []
    for name, value in form.items():
        if isinstance(value, str):
            pairs.append((name, value))
        elif isinstance(value, bytes | bytearray):  # a multipart part with a non-text content type
            try:
                pairs.append((name, value.decode()))
            except UnicodeDecodeError:
                refused.append(FieldError(name, "expected UTF-8 text"))
        else:
            value.file.close()
            refused.append(FieldError(name, "file uploads are not accepted; send text inputs only"))
    if refused:
        raise ApiError(422, "invalid", "the form has inputs that are not text", refused)
    return pairs


def _redirect(request: web.Request, pairs: Sequence[tuple[str, str]]) -> URL | None:
    given = [("redirect", request.query["redirect"])] if request.query.get("redirect") else []
    given += [(REDIRECT_FIELD, v) for n, v in pairs if n == REDIRECT_FIELD and v]
    if not given:
        return None
    where, raw = given[0]
    problem = redirect_problem(raw, context(request).allowed_redirect_hosts)
    if problem is not None:
        raise ApiError(422, "invalid_redirect", f"will not redirect there: {problem}", [FieldError(where, problem)])
    return URL(raw)


def _see_other(target: URL, query: dict[str, str], body: Any) -> web.Response:
    return web.Response(status=303, body=orjson.dumps(body), content_type="application/json",
                        headers={"Location": str(target.update_query(query))})


@routes.post("/forms/{form_id}")
async def post_form(request: web.Request) -> web.Response:
    caller = authenticate(request, "capture")
    ctx = context(request)
    form_id = request.match_info["form_id"]
    if not _FORM_ID.match(form_id):
        raise ApiError(422, "invalid", "the form id is not valid",
                       [FieldError("form_id", "expected 1 to 64 letters, digits, '_', '.' or '-'")])
    ctype = request.content_type if request.headers.get("Content-Type") else ""
    if ctype not in FORM_CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"expected Content-Type {' or '.join(FORM_CONTENT_TYPES)}, got {ctype or 'none'}")
    pairs = await _form_pairs(request)
    target = _redirect(request, pairs)
    draft = form_lead(pairs, form_id)
    try:
        if draft.errors:
            ctx.metrics.leads_rejected.labels("form", "invalid").inc()
            raise ApiError(422, "invalid_lead", "the form is not valid", draft.errors)
        [outcome] = await capture_many(ctx, [draft.as_lead()], channel="form", default_source=caller.name,
                                       capture_ids=lambda _index, _lead: uuid.uuid4().hex)
        if outcome.status == "rejected":
            raise ApiError(422, "invalid_lead", "the lead is not valid", outcome.errors)
    except ApiError as exc:
        if target is None:
            raise
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        query = {"error": exc.code}
        if exc.fields:
            error["fields"] = [{"field": f.field, "reason": f.reason} for f in exc.fields]
            query["fields"] = ",".join(dict.fromkeys(f.field for f in exc.fields))
        return _see_other(target, query, {"error": error})
    except TransientError as exc:
        if target is None:
            raise
        message = f"not stored, retry shortly: {exc}"
        return _see_other(target, {"error": "unavailable"}, {"error": {"code": "unavailable", "message": message}})
    if target is not None:
        # The browser only learns that the form was taken: whether the person was known before
        # is the site owner's business, not every visitor's.
        return _see_other(target, {"status": "accepted"}, outcome.as_dict())
    return json_response(outcome.as_dict(), status=202)

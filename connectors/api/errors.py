"""Error responses in the one documented shape, and the middleware that guarantees it."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiohttp import web

from connectors.lead_input import FieldError
from connectors.api.write_gate import WritesPaused
from leadflow.errors import TransientError, Unconfirmed

__all__ = ["ApiError", "error_response", "json_response", "error_middleware", "no_such_lead"]

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid",
    429: "rate_limited", 503: "unavailable",
}


class ApiError(Exception):
    """Raise from a handler to answer with a documented error."""

    def __init__(self, status: int, code: str, message: str, fields: Sequence[FieldError] = (),
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, list(fields)
        self.headers = headers or {}


def no_such_lead(lead_id: str) -> ApiError:
    """The 404 for a lead id this worker's table does not hold. A capture is answered once Kafka has
    it and the lead agent applies it a moment later, so a read right after a 202 may come first."""
    return ApiError(404, "not_found", f"no lead {lead_id} (a capture accepted in the last seconds may not be "
                                      "applied yet: retry shortly)")


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str, fields: Sequence[FieldError] = (),
                   headers: dict[str, str] | None = None) -> web.Response:
    error: dict[str, object] = {"code": code, "message": message}
    if fields:
        error["fields"] = [{"field": f.field, "reason": f.reason} for f in fields]
    return json_response({"error": error}, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The channels whose capture ids follow the request's ``Idempotency-Key`` (connectors/api/leads.py, bulk.py).
_KEYED_PATHS = frozenset({"/v1/leads", "/v1/leads/import"})


def _retry_advice(request: web.Request) -> str:
    """What makes the retry of an unconfirmed write safe, for this request: promise only what holds."""
    if request.headers.get("Idempotency-Key") and request.path in _KEYED_PATHS:
        # The same key gives the same capture ids, so the lead agent drops whichever copy comes second.
        return "a retry with the same Idempotency-Key never captures a lead twice"
    if request.path in _KEYED_PATHS:
        return ("this request had no Idempotency-Key: send one with the retry (the same on every later retry); "
                "a lead this attempt stored and the retry stores again counts as a second touch, never a second lead")
    if request.path.startswith("/v1/providers/"):
        return "the provider's redelivery never captures a lead twice (its capture ids come from the provider's ids)"
    return "it may be applied already, and a retry may apply it a second time"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is JSON in the documented shape; nothing leaks a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)
    except Unconfirmed as exc:
        # Sent, but not acknowledged in time: Kafka may still store it.
        return error_response(503, "unavailable", f"not confirmed, retry shortly: {exc}, so the records may still "
                              f"be stored; {_retry_advice(request)}", headers={"Retry-After": "5"})
    except WritesPaused as exc:
        # Refused before anything was sent (Kafka did not take this worker's last write).
        return error_response(503, "unavailable", f"not stored, retry shortly: {exc}",
                              headers={"Retry-After": str(exc.retry_after_s)})
    except TransientError as exc:
        # Our side cannot store the request right now (Kafka down): say so and when to retry.
        return error_response(503, "unavailable", f"not stored, retry shortly: {exc}", headers={"Retry-After": "5"})
    except web.HTTPRequestEntityTooLarge:
        # The exception does not keep the limit; the request knows it.
        return error_response(413, "payload_too_large",
                              f"the request body is larger than the {request.client_max_size} bytes allowed")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODES.get(exc.status, "error")
        if isinstance(exc, web.HTTPMethodNotAllowed):
            # The Allow header says it to machines; the message says it to the person reading it.
            message = (f"{request.method} is not allowed on {request.path}; "
                       f"allowed: {', '.join(sorted(exc.allowed_methods))}")
        else:
            message = exc.reason if exc.status != 404 else f"no route for {request.method} {request.path}"
        return error_response(exc.status, code, message, headers={k: v for k, v in exc.headers.items()
                                                                 if k.lower() == "allow"})
    except ConnectionResetError:
        # The client closed the connection before its request was read (it gave up on a frozen or
        # stopping worker): not a bug here, and nobody is left to answer. Was an ERROR with a
        # traceback, 42-49 of them per worker in a deploy audit. 499 (nginx's "client closed
        # request") is what the access log and leadflow_http_requests_total count.
        log.info("the client closed the connection before %s %s was read; not processed", request.method, request.path)
        return error_response(499, "client_closed", "the client closed the connection before the request was read")
    except Exception:
        # A bug, not bad input: log it (no request body: it holds personal data) and say so plainly.
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the request was not processed")

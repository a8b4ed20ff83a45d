"""Error responses in the one documented shape, and the middleware that guarantees it."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiohttp import web

from connectors.lead_input import FieldError
from leadflow.errors import TransientError, Unconfirmed

__all__ = ["ApiError", "error_response", "json_response", "error_middleware"]

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


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str, fields: Sequence[FieldError] = (),
                   headers: dict[str, str] | None = None) -> web.Response:
    error: dict[str, object] = {"code": code, "message": message}
    if fields:
        error["fields"] = [{"field": f.field, "reason": f.reason} for f in fields]
    return json_response({"error": error}, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is JSON in the documented shape; nothing leaks a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)
    except Unconfirmed as exc:
        # Sent, but not acknowledged in time: Kafka may still store it. A retry with the same
        # Idempotency-Key keeps the capture ids, so the lead agent drops whatever was stored.
        return error_response(503, "unavailable", f"not confirmed, retry shortly with the same Idempotency-Key: "
                              f"{exc}, so the records may still be stored; the retry never captures a lead twice",
                              headers={"Retry-After": "5"})
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
        message = exc.reason if exc.status != 404 else f"no route for {request.method} {request.path}"
        return error_response(exc.status, code, message, headers={k: v for k, v in exc.headers.items()
                                                                 if k.lower() == "allow"})
    except Exception:
        # A bug, not bad input: log it (no request body: it holds personal data) and say so plainly.
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the request was not processed")

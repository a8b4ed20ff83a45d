"""Everything a handler needs, built once per process and stored on the aiohttp app."""
from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web

from connectors.api.errors import ApiError
from connectors.api.ports import EnginePort
from connectors.auth import ApiKey, Keyring
from connectors.capture_store import CaptureStore
from ops.metrics import Metrics
from sla.clock import Clock

__all__ = ["ApiContext", "CONTEXT", "context", "authenticate", "read_json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiContext:
    engine: EnginePort
    keyring: Keyring
    store: CaptureStore
    clock: Clock
    metrics: Metrics
    max_batch: int = 500
    webhook_allow_private: bool = False


CONTEXT = web.AppKey("leadflow_api", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def authenticate(request: web.Request) -> ApiKey:
    caller = context(request).keyring.authenticate(request.headers.get("Authorization"))
    if caller is None:
        raise ApiError(401, "unauthorized", "missing or unknown API key; send 'Authorization: Bearer <key>'",
                       headers={"WWW-Authenticate": 'Bearer realm="leadflow"'})
    return caller


async def read_json(request: web.Request) -> object:
    """The request's JSON body, or a 4xx naming the problem (size limits come from the app)."""
    # aiohttp reports a missing header as application/octet-stream; treat it like an empty one.
    ctype = request.content_type if request.headers.get("Content-Type") else ""
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"expected Content-Type application/json, got {ctype}")
    body = await request.read()
    if not body.strip():
        raise ApiError(400, "malformed_json", "the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc.msg} at position {exc.pos}") from None

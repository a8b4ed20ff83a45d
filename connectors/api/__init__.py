"""leadflow's public HTTP API (DESIGN §3), as aiohttp routes mounted on the worker's web server."""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors.api import leads, reps
from connectors.api.context import CONTEXT, ApiContext
from connectors.api.errors import error_middleware, json_response
from connectors.api.openapi import openapi_document

__all__ = ["mount_api", "ApiContext"]


async def _healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    readiness = request.app[CONTEXT].engine.readiness()
    body = {"status": "ready" if readiness.ready else "not_ready", "detail": readiness.detail}
    return json_response(body, status=200 if readiness.ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    registry = request.app[CONTEXT].metrics.registry
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def mount_api(root: web.Application, ctx: ApiContext) -> None:
    """Add the API to ``root`` (the worker's aiohttp app) before it starts."""
    root[CONTEXT] = ctx
    root.middlewares.append(error_middleware)
    root.router.add_get("/healthz", _healthz)
    root.router.add_get("/readyz", _readyz)
    root.router.add_get("/metrics", _metrics)
    root.router.add_get("/openapi.json", _openapi)
    v1 = web.Application()
    v1[CONTEXT] = ctx
    v1.add_routes(leads.routes)
    v1.add_routes(reps.routes)
    root.add_subapp("/v1", v1)

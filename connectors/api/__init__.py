"""leadflow's public HTTP API (DESIGN §3), as aiohttp routes mounted on the worker's web server."""
from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors.api import accounts, activities, bulk, forms, leads, providers, reps
from connectors.api import crm_events, qualification
from connectors.api.context import CONTEXT, ApiContext, enforce_rate_limit, guard_failed_auth
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


@web.middleware
async def _count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``leadflow_http_requests_total{route, status}``: the route's template, never the raw path."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[CONTEXT].metrics.http_requests.labels(route, str(status)).inc()


@web.middleware
async def _rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every write counts against its API key's limit; an unknown key is left to the handler's 401,
    and failed authentications against the client's (``guard_failed_auth``)."""
    async def limited(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            caller = request.app[CONTEXT].keyring.authenticate(request.headers.get("Authorization"))
            if caller is not None:
                await enforce_rate_limit(request, caller.name)
        return await handler(request)
    return await guard_failed_auth(request, limited)


def mount_api(root: web.Application, ctx: ApiContext) -> None:
    """Add the API to ``root`` (the worker's aiohttp app) before it starts."""
    root[CONTEXT] = ctx
    root.middlewares.append(_count_requests)  # outermost: sees the status the client gets
    root.middlewares.append(error_middleware)
    root.router.add_get("/healthz", _healthz)
    root.router.add_get("/readyz", _readyz)
    root.router.add_get("/metrics", _metrics)
    root.router.add_get("/openapi.json", _openapi)
    v1 = web.Application(middlewares=[_rate_limit])
    v1[CONTEXT] = ctx
    v1.add_routes(bulk.routes)  # before leads: /leads/import is not a lead id
    v1.add_routes(leads.routes)
    v1.add_routes(forms.routes)
    v1.add_routes(providers.routes)
    v1.add_routes(activities.routes)
    v1.add_routes(qualification.routes)
    v1.add_routes(crm_events.routes)
    v1.add_routes(reps.routes)
    v1.add_routes(accounts.routes)
    root.add_subapp("/v1", v1)

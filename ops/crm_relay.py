"""A relay from a HubSpot workflow webhook to ``POST /v1/crm/events``, re-signed per Standard Webhooks.

HubSpot cannot call ``/v1/crm/events`` itself: it signs its requests with
``X-HubSpot-Signature-v3`` (base64 HMAC-SHA256 of method + URI + body + timestamp, keyed by the
app's client secret), while leadflow verifies Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``). This relay checks HubSpot's signature, maps the
deal to a leadflow event by the ``leadflow_lead_id`` property leadflow wrote, signs it with the CRM
events secret and forwards it. Run it where HubSpot can reach it (behind HTTPS), or copy the
three functions into a serverless function::

    HUBSPOT_CLIENT_SECRET=… LEADFLOW_CRM_EVENTS_SECRET=whsec_… \\
        python -m ops.crm_relay --port 8078 --leadflow-url https://leadflow.example/v1/crm/events \\
        --public-url https://relay.example/hubspot

The HubSpot workflow (deal-based, triggered on a deal stage change) sends the deal's
``hs_object_id``, ``dealstage``, ``leadflow_lead_id``, ``leadflow_id``, ``amount`` and
``closed_lost_reason`` to ``--public-url`` with "Send a webhook" (POST, request signature on).
docs/QUALIFICATION.md walks through it.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from connectors.webhook_signing import signed_headers

__all__ = ["hubspot_signature_ok", "leadflow_event", "signed_event", "relay_app"]

_SESSION = web.AppKey("session", aiohttp.ClientSession)
#: HubSpot's own limit: a request whose timestamp is older than five minutes is refused.
_MAX_AGE_MS = 300_000
_WON, _LOST = {"closedwon"}, {"closedlost"}


def hubspot_signature_ok(secret: str, method: str, uri: str, body: bytes, timestamp: str, signature: str,
                         now_ms: float) -> bool:
    """HubSpot's v3 request signature: base64 HMAC-SHA256 over ``method + uri + body + timestamp``."""
    if not timestamp.isdigit() or abs(now_ms - int(timestamp)) > _MAX_AGE_MS:
        return False
    mac = hmac.new(secret.encode(), method.upper().encode() + uri.encode() + body + timestamp.encode(), hashlib.sha256)
    return hmac.compare_digest(base64.b64encode(mac.digest()).decode(), signature)


def _value(deal: Mapping[str, Any], name: str) -> Any:
    # The workflow sends chosen properties flat; the legacy format nests them as {"properties": {name: {"value"}}}.
    if name in deal:
        return deal[name]
    nested = (deal.get("properties") or {}).get(name)
    return nested.get("value") if isinstance(nested, dict) else nested


def leadflow_event(deal: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(webhook-id, event)`` for a deal; ``ValueError`` naming what is missing.

    The id is stable per deal, stage and modification, so HubSpot's retries are answered once by leadflow.
    """
    lead_id, stage = _value(deal, "leadflow_lead_id"), _value(deal, "dealstage")
    deal_id = _value(deal, "hs_object_id") or deal.get("objectId")
    if not lead_id or not stage or not deal_id:
        raise ValueError("the deal needs leadflow_lead_id, dealstage and hs_object_id")
    data: dict[str, Any] = {"lead_id": str(lead_id), "crm_id": str(deal_id)[:64]}
    if _value(deal, "leadflow_id"):
        data["opportunity_id"] = str(_value(deal, "leadflow_id"))
    if stage in _WON:
        kind = "opportunity.won"
        if _value(deal, "amount") not in (None, ""):
            data["amount"] = float(_value(deal, "amount"))
    elif stage in _LOST:
        kind = "opportunity.lost"
        if _value(deal, "closed_lost_reason"):
            data["reason"] = str(_value(deal, "closed_lost_reason"))[:500]
    else:
        kind, data["stage"] = "opportunity.stage_changed", str(stage)[:100]
    modified = _value(deal, "hs_lastmodifieddate") or ""
    return f"hubspot_{deal_id}_{stage}_{modified}".replace(" ", "")[:256], {"type": kind, "data": data}


def signed_event(secret: str, msg_id: str, event: Mapping[str, Any], now_s: int) -> tuple[bytes, dict[str, str]]:
    """The body and Standard Webhooks headers ``POST /v1/crm/events`` verifies."""
    body = orjson.dumps(event)
    return body, {**signed_headers(secret, msg_id, now_s, body), "Content-Type": "application/json"}


def relay_app(*, hubspot_secret: str, events_secret: str, leadflow_url: str, public_url: str) -> web.Application:
    """``POST /hubspot``: 204 once leadflow took the event; leadflow's 4xx passed back; 502 makes HubSpot retry."""
    async def hubspot(request: web.Request) -> web.Response:
        body = await request.read()
        if not hubspot_signature_ok(hubspot_secret, request.method, public_url, body,
                                    request.headers.get("X-HubSpot-Request-Timestamp", ""),
                                    request.headers.get("X-HubSpot-Signature-v3", ""), time.time() * 1000):
            return web.json_response({"error": "bad HubSpot signature"}, status=401)
        try:
            msg_id, event = leadflow_event(orjson.loads(body))
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": f"not a deal leadflow can map: {exc}"}, status=400)
        raw, headers = signed_event(events_secret, msg_id, event, int(time.time()))
        try:
            async with request.app[_SESSION].post(leadflow_url, data=raw, headers=headers,
                                                   timeout=aiohttp.ClientTimeout(total=10)) as answer:
                text = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError):
            return web.json_response({"error": "leadflow unreachable"}, status=502)
        if status < 300:
            return web.Response(status=204)
        return web.Response(body=text, status=status if status < 500 else 502, content_type="application/json")

    async def session(app: web.Application) -> AsyncIterator[None]:
        app[_SESSION] = aiohttp.ClientSession()
        yield
        await app[_SESSION].close()

    app = web.Application()
    app.router.add_post("/hubspot", hubspot)
    app.cleanup_ctx.append(session)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ops.crm_relay", description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Secrets from HUBSPOT_CLIENT_SECRET (the HubSpot app's client secret) and "
               "LEADFLOW_CRM_EVENTS_SECRET (the worker's CRM events secret, whsec_...); "
               "docs/QUALIFICATION.md walks through the HubSpot workflow.")
    parser.add_argument("--port", type=int, default=8078, help="port to listen on (default %(default)s)")
    parser.add_argument("--leadflow-url", required=True, help="leadflow's POST /v1/crm/events URL")
    parser.add_argument("--public-url", required=True,
                        help="this relay's URL as HubSpot calls it (HubSpot signs the full URL)")
    args = parser.parse_args(argv)
    secrets = {}
    for name in ("HUBSPOT_CLIENT_SECRET", "LEADFLOW_CRM_EVENTS_SECRET"):
        if not os.environ.get(name):
            parser.exit(2, f"ops.crm_relay: environment variable {name} is not set\n")
        secrets[name] = os.environ[name]
    web.run_app(relay_app(hubspot_secret=secrets["HUBSPOT_CLIENT_SECRET"],
                          events_secret=secrets["LEADFLOW_CRM_EVENTS_SECRET"], leadflow_url=args.leadflow_url,
                          public_url=args.public_url), port=args.port)


if __name__ == "__main__":
    main()

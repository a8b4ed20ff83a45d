"""A relay from HubSpot workflow webhooks and Salesforce Outbound Messages to ``POST /v1/crm/events``, re-signed per Standard Webhooks.

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
``hs_object_id``, ``dealstage``, ``leadflow_lead_id``, ``leadflow_id``, ``amount``,
``closed_lost_reason`` and ``hs_lastmodifieddate`` to ``--public-url`` with "Send a webhook"
(POST, request signature on). ``hs_lastmodifieddate`` makes the ``webhook-id``: one per deal,
stage and modification, so HubSpot's retries are answered once and a deal that comes back to a
stage is a new event. Without it the id takes when HubSpot set the stage (the ``timestamp``
beside ``dealstage``'s value, when the workflow sends the whole deal as the deals API gives it),
the same on every retry. With neither, the id is one per deal and stage: a retry is answered
once, but a deal that comes back to a stage within leadflow's 24 h replay window is answered
with the first move's answer and not applied. That is the lesser harm: the request's own
timestamp would make every retry a new event, and a retry that arrives after a later close
would reopen or reverse it. So send ``hs_lastmodifieddate``.

The event's ``timestamp`` is the best time of the move the relay has: when the stage was set,
else ``hs_lastmodifieddate`` (none without either: leadflow then applies it in arrival order).
leadflow orders events by these CRM times only: it ignores a won, lost or stage change that
happened before the newest move it applied (a retry delivered late), and the close it holds sent
again at that close's own time (Salesforce redelivers with the record's latest data), and
answers both 200 ``ignored``, which the relay acknowledges.

Salesforce's Outbound Messages are SOAP and unsigned (``ops/salesforce_outbound.py`` reads them).
``POST /salesforce/<token>`` takes them: the token (``SALESFORCE_OUTBOUND_TOKEN``, a long random
path segment only the outbound message's endpoint URL knows) and the envelope's
``OrganizationId`` (``--salesforce-org-id``) must match, and ``--salesforce-allow-from`` can
restrict the peer address to Salesforce's published ranges. Each notification is mapped, signed
and forwarded; Salesforce gets its ``<Ack>true</Ack>`` only when leadflow accepted every one, so
it redelivers the message otherwise (redeliveries carry the same notification ids: leadflow
answers those it took with its first answer). A notification about an Opportunity without a lead
id nor leadflow's opportunity id (one leadflow did not make) is skipped and logged by its ids: no
redelivery could change it, so it does not hold the message back. One with leadflow's opportunity
id and no lead id is a fault naming the lead-id field (the relay's setup is wrong; skipped, every
outcome would be lost). A bad envelope is a 400 SOAP fault, never a 500.
docs/QUALIFICATION.md walks through both.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from connectors.webhook_signing import signed_headers
from ops.salesforce_outbound import (
    ACK,
    EnvelopeError,
    NotLeadflows,
    SalesforceFields,
    fault,
    id15,
    parse_outbound_message,
    same_org,
    salesforce_event,
)

__all__ = ["hubspot_signature_ok", "leadflow_event", "signed_event", "relay_app", "SalesforceRoute"]

log = logging.getLogger("ops.crm_relay")

#: The Salesforce route's token in a path: the route's only credential (review s16-b M2).
_TOKEN_IN_PATH = re.compile(r"^(/salesforce/)[^/]+")


class RelayAccessLogger(AbstractAccessLogger):
    """aiohttp's access log line without the Salesforce path token: ``POST /salesforce/<token>``.

    aiohttp's default line holds the request line, so every Outbound Message wrote the token to
    the relay's log (review s16-b M2). The query string is left out too (no route reads one).
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = _TOKEN_IN_PATH.sub(r"\1<token>", request.path)
        self.logger.info('%s "%s %s HTTP/%d.%d" %d %s %.3fs', request.remote, request.method, path,
                         request.version.major, request.version.minor, response.status, response.body_length, time)


#: What the relay's server runs with (``web.run_app``, ``AppRunner``).
SERVER_OPTIONS: dict[str, Any] = {"access_log_class": RelayAccessLogger}

_SESSION = web.AppKey("session", aiohttp.ClientSession)
#: HubSpot's own limit: a request whose timestamp is older than five minutes is refused.
_MAX_AGE_MS = 300_000
_WON, _LOST = {"closedwon"}, {"closedlost"}
#: Salesforce waits 60 s for an answer: every forward is done (or given up, to be redelivered) before.
_SF_BUDGET_S, _SF_PARALLEL, _FORWARD_TIMEOUT_S = 45.0, 8, 10.0
#: Outbound messages hold at most 100 notifications of a few fields each.
_SF_MAX_BODY = 1024 * 1024
_TOKEN = re.compile(r"[A-Za-z0-9_-]{24,128}")
_SOAP = "text/xml"


@dataclass(frozen=True)
class SalesforceRoute:
    """``POST /salesforce/{token}``: who may call it and which Opportunity fields it reads."""

    org_id: str
    token: str = field(repr=False)
    fields: SalesforceFields = SalesforceFields()
    #: Peer networks allowed to call (empty: any). Behind a proxy the peer is the proxy: filter there.
    allow_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.token):
            raise ValueError("the Salesforce path token must be 24 to 128 URL-safe characters (A-Z a-z 0-9 _ -)")
        org15 = ""
        if len(self.org_id) in (15, 18):
            try:
                org15 = id15(self.org_id)  # an 18-character id in other capitals is read through its checksum
            except ValueError as exc:
                raise ValueError(f"the Salesforce org id is not valid: {exc} (copy it from Setup > Company "
                                 "Information > Salesforce.com Organization ID)") from None
        if len(self.org_id) not in (15, 18) or not org15.startswith("00D"):
            raise ValueError("the Salesforce org id is the 15- or 18-character id starting 00D "
                             "(Setup > Company Information > Salesforce.com Organization ID)")


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


def _stage_set_at(deal: Mapping[str, Any]) -> Any:
    """When HubSpot set the deal's stage: in the deals API's form each property is ``{"value",
    "timestamp", "source", …}``, and the workflow posts the deal as that API gives it."""
    nested = (deal.get("properties") or {}).get("dealstage")
    return nested.get("timestamp") if isinstance(nested, dict) else None


def _crm_time(value: Any) -> str | None:
    """A HubSpot time (milliseconds since the epoch, as a number or digits, or ISO 8601 with a
    zone) as ISO 8601 in UTC; ``None`` when it is neither."""
    try:
        if (isinstance(value, int | float) and not isinstance(value, bool)) or (
                isinstance(value, str) and value.strip().isdigit()):
            return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat()
        if isinstance(value, str) and value.strip():
            parsed = datetime.fromisoformat(value.strip())
            return parsed.astimezone(UTC).isoformat() if parsed.tzinfo is not None else None
    except (ValueError, OverflowError, OSError):
        pass
    return None


def leadflow_event(deal: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(webhook-id, event)`` for a deal; ``ValueError`` naming what is missing.

    The id is stable per deal, stage and modification (``hs_lastmodifieddate``, else when the
    stage was set), so HubSpot's retries are answered once by leadflow. With neither it is one
    per deal and stage: a retry is still answered once, and a deal that comes back to a stage
    within leadflow's 24 h replay window is missed (answered with the first move's answer). The
    request's ``X-HubSpot-Request-Timestamp`` is never used: it differs on each retry, and a
    retry delivered after a later close would then reopen or reverse it (review s18-b F2).

    The event's ``timestamp``: when the stage was set, else ``hs_lastmodifieddate``, so leadflow
    can tell a move that happened before the deal's last close (none without either).
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
    modified = _value(deal, "hs_lastmodifieddate") or _stage_set_at(deal)
    event: dict[str, Any] = {"type": kind, "data": data}
    happened = _crm_time(_stage_set_at(deal)) or _crm_time(_value(deal, "hs_lastmodifieddate"))
    if happened is not None:
        event["timestamp"] = happened
    return f"hubspot_{deal_id}_{stage}_{modified or ''}".replace(" ", "")[:256], event


def signed_event(secret: str, msg_id: str, event: Mapping[str, Any], now_s: int) -> tuple[bytes, dict[str, str]]:
    """The body and Standard Webhooks headers ``POST /v1/crm/events`` verifies."""
    body = orjson.dumps(event)
    return body, {**signed_headers(secret, msg_id, now_s, body), "Content-Type": "application/json"}


async def _forward(session: aiohttp.ClientSession, url: str, raw: bytes,
                   headers: Mapping[str, str]) -> tuple[int, bytes]:
    """leadflow's status and body; status 0 when it could not be reached."""
    try:
        async with session.post(url, data=raw, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=_FORWARD_TIMEOUT_S)) as answer:
            return answer.status, await answer.read()
    except (aiohttp.ClientError, TimeoutError):
        return 0, b""


def _refusal(body: bytes) -> str:
    """leadflow's error code and message, short (they name fields and ids, never a person)."""
    try:
        error = orjson.loads(body).get("error") or {}
        return f"{error.get('code')}: {str(error.get('message'))[:200]}"
    except (orjson.JSONDecodeError, AttributeError):
        return "no error body"


def _soap(body: bytes, status: int) -> web.Response:
    return web.Response(body=body, status=status, content_type=_SOAP, charset="utf-8")


def relay_app(*, events_secret: str, leadflow_url: str, hubspot_secret: str | None = None,
              public_url: str | None = None, salesforce: SalesforceRoute | None = None) -> web.Application:
    """``POST /hubspot``: 204 once leadflow took the event; leadflow's 4xx passed back; 502 makes HubSpot retry.

    ``POST /salesforce/{token}``: 200 with the SOAP Ack once leadflow took every notification
    (but those about an Opportunity without a lead id nor leadflow's opportunity id, skipped and
    logged: ``NotLeadflows``);
    otherwise a SOAP fault (400 for an unreadable envelope or an unmappable notification, 403 for
    another org or address, leadflow's 4xx for a refused event, 502 when leadflow did not answer),
    and Salesforce delivers the message again later.
    """
    async def hubspot(request: web.Request) -> web.Response:
        assert hubspot_secret is not None and public_url is not None
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
        status, text = await _forward(request.app[_SESSION], leadflow_url, raw, headers)
        if status == 0:
            return web.json_response({"error": "leadflow unreachable"}, status=502)
        if status < 300:
            return web.Response(status=204)
        return web.Response(body=text, status=status if status < 500 else 502, content_type="application/json")

    async def salesforce_messages(request: web.Request) -> web.Response:
        assert salesforce is not None
        if not hmac.compare_digest(request.match_info["token"].encode(), salesforce.token.encode()):
            raise web.HTTPNotFound()  # as for any other unknown path: the token is the secret
        if salesforce.allow_from:
            try:
                peer = ipaddress.ip_address(request.remote or "")
            except ValueError:
                peer = None
            if peer is None or not any(peer in network for network in salesforce.allow_from):
                return _soap(fault("Client", "this address may not send outbound messages to the relay"), 403)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _soap(fault("Client", f"the message is larger than {_SF_MAX_BODY} bytes"), 413)
        try:
            message = parse_outbound_message(body)
        except EnvelopeError as exc:
            return _soap(fault("Client", f"not an outbound message leadflow can read: {exc}"), 400)
        if not same_org(salesforce.org_id, message.organization_id):
            log.warning("salesforce relay: refused a message from org %s (expected %s)", message.organization_id,
                        salesforce.org_id)
            return _soap(fault("Client", f"OrganizationId {message.organization_id} is not the org this relay "
                                         "serves"), 403)
        unmapped: list[str] = []
        mapped: list[tuple[str, dict[str, Any]]] = []
        skipped = 0
        for notification in message.notifications:
            try:
                mapped.append(salesforce_event(notification, salesforce.fields))
            except NotLeadflows as exc:
                # Not leadflow's: retrying can never change that, and a fault would have Salesforce
                # send the whole message again for 24 h. Its ids only: the Opportunity is a customer's.
                skipped += 1
                log.warning("salesforce relay: skipped notification %s (Opportunity %s): it has no %s, so "
                            "leadflow did not make it; acknowledged (if every notification says so, add the "
                            "field to the outbound message)", exc.notification_id, exc.record_id or "?",
                            salesforce.fields.lead_id)
            except ValueError as exc:
                unmapped.append(str(exc))
        gate = asyncio.Semaphore(_SF_PARALLEL)

        async def forward(msg_id: str, event: dict[str, Any]) -> tuple[int, bytes]:
            async with gate:
                raw, headers = signed_event(events_secret, msg_id, event, int(time.time()))
                return await _forward(request.app[_SESSION], leadflow_url, raw, headers)

        tasks = [asyncio.ensure_future(forward(msg_id, event)) for msg_id, event in mapped]
        if tasks:
            await asyncio.wait(tasks, timeout=_SF_BUDGET_S)
        problems: list[tuple[int, str]] = [(400, text) for text in unmapped]
        for (msg_id, _), task in zip(mapped, tasks):
            if not task.done():
                task.cancel()
                problems.append((502, f"{msg_id}: leadflow did not answer within {_SF_BUDGET_S:g} s"))
                continue
            status, answer = task.result()
            if status == 0 or status >= 500:
                problems.append((502, f"{msg_id}: leadflow {'unreachable' if status == 0 else f'answered {status}'}"))
            elif status >= 300:
                problems.append((status, f"{msg_id}: leadflow refused it ({status} {_refusal(answer)})"))
        if not problems:
            return _soap(ACK, 200)
        for _, problem in problems:
            log.warning("salesforce relay: no Ack: %s", problem)
        statuses = [status for status, _ in problems]
        status = 502 if 502 in statuses else (400 if 400 in statuses else statuses[0])
        shown = "; ".join(text for _, text in problems[:5]) + (f"; and {len(problems) - 5} more"
                                                                  if len(problems) > 5 else "")
        aside = f", {skipped} skipped (no {salesforce.fields.lead_id})" if skipped else ""
        summary = (f"{len(message.notifications) - len(problems) - skipped} of {len(message.notifications)} "
                   f"notification(s) taken by leadflow{aside}; Salesforce will deliver the message again: {shown}")
        return _soap(fault("Server" if status == 502 else "Client", summary), status)

    async def session(app: web.Application) -> AsyncIterator[None]:
        app[_SESSION] = aiohttp.ClientSession()
        yield
        await app[_SESSION].close()

    app = web.Application(client_max_size=_SF_MAX_BODY)
    if hubspot_secret is not None and public_url is not None:
        app.router.add_post("/hubspot", hubspot)
    if salesforce is not None:
        app.router.add_post("/salesforce/{token}", salesforce_messages)
    app.cleanup_ctx.append(session)
    return app


_EPILOG = """\
HubSpot (a deal workflow's "Send a webhook", signed):
  HUBSPOT_CLIENT_SECRET=... LEADFLOW_CRM_EVENTS_SECRET=whsec_... python -m ops.crm_relay \\
    --leadflow-url https://leadflow.example/v1/crm/events --public-url https://relay.example/hubspot

Salesforce (a flow's Outbound Message on Opportunity, unsigned SOAP):
  export SALESFORCE_OUTBOUND_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')  # once; keep it
  LEADFLOW_CRM_EVENTS_SECRET=whsec_... python -m ops.crm_relay \\
    --leadflow-url https://leadflow.example/v1/crm/events --salesforce-org-id 00D5e000000KQ2eEAG \\
    --salesforce-loss-reason-field Loss_Reason__c
  and in Salesforce the outbound message's Endpoint URL is
  https://relay.example/salesforce/<SALESFORCE_OUTBOUND_TOKEN>, its fields Id, StageName, IsWon, IsClosed,
  Amount, Leadflow_Lead_Id__c, Leadflow_Id__c, LastModifiedDate (and the loss reason field).
  Outbound messages carry no signature: the relay refuses any other OrganizationId (403) and any other
  path (404); add --salesforce-allow-from for Salesforce's published IP ranges when the relay sees
  Salesforce's own address (not behind a proxy). Salesforce gets <Ack>true</Ack> only when leadflow took
  every notification, and delivers the message again otherwise, for up to 24 h. A notification about an
  Opportunity without Leadflow_Lead_Id__c nor Leadflow_Id__c (one leadflow did not make) is skipped,
  logged by its ids; one with Leadflow_Id__c but no lead id is a fault naming the lead-id field.

Both routes can run in one relay. Environment: LEADFLOW_CRM_EVENTS_SECRET (the worker's CRM events secret,
whsec_...), HUBSPOT_CLIENT_SECRET (the HubSpot app's client secret), SALESFORCE_OUTBOUND_TOKEN (24 to 128
URL-safe characters). docs/QUALIFICATION.md walks through both with a worked example.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ops.crm_relay", description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8078, help="port to listen on (default %(default)s)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    parser.add_argument("--leadflow-url", required=True, help="leadflow's POST /v1/crm/events URL")
    hubspot = parser.add_argument_group("HubSpot (POST /hubspot)")
    hubspot.add_argument("--public-url",
                         help="this relay's /hubspot URL as HubSpot calls it (HubSpot signs the full URL); "
                              "turns the HubSpot route on (needs HUBSPOT_CLIENT_SECRET)")
    sf = parser.add_argument_group("Salesforce Outbound Messages (POST /salesforce/<SALESFORCE_OUTBOUND_TOKEN>)")
    sf.add_argument("--salesforce-org-id", metavar="00D...",
                    help="the org's id (Setup > Company Information), 15 or 18 characters: messages from any other "
                         "org are refused; turns the Salesforce route on (needs SALESFORCE_OUTBOUND_TOKEN)")
    sf.add_argument("--salesforce-lead-id-field", default="Leadflow_Lead_Id__c", metavar="FIELD",
                    help="the Opportunity field holding leadflow's lead id, as crm.salesforce.lead_id_field "
                         "(default %(default)s)")
    sf.add_argument("--salesforce-opportunity-id-field", default="Leadflow_Id__c", metavar="FIELD",
                    help="the Opportunity field holding leadflow's opportunity id, as "
                         "crm.salesforce.external_id_field (default %(default)s); sent when the message has it")
    sf.add_argument("--salesforce-loss-reason-field", metavar="FIELD",
                    help="the Opportunity field with the loss reason (e.g. Loss_Reason__c), sent as a lost "
                         "deal's reason; none by default (Opportunity has no standard one)")
    sf.add_argument("--salesforce-allow-from", action="append", default=[], metavar="CIDR",
                    help="accept messages only from this network (repeat for each of Salesforce's ranges); "
                         "checked against the connecting address, so behind a proxy filter at the proxy")
    args = parser.parse_args(argv)
    events_secret = os.environ.get("LEADFLOW_CRM_EVENTS_SECRET")
    if args.public_url is None and args.salesforce_org_id is None:
        parser.exit(2, "ops.crm_relay: nothing to relay: give --public-url (HubSpot), --salesforce-org-id "
                       "(Salesforce) or both\n")
    hubspot_secret = None
    if args.public_url is not None:
        hubspot_secret = os.environ.get("HUBSPOT_CLIENT_SECRET")
        if not hubspot_secret:
            parser.exit(2, "ops.crm_relay: environment variable HUBSPOT_CLIENT_SECRET is not set\n")
    salesforce = None
    if args.salesforce_org_id is not None:
        token = os.environ.get("SALESFORCE_OUTBOUND_TOKEN")
        if not token:
            parser.exit(2, "ops.crm_relay: environment variable SALESFORCE_OUTBOUND_TOKEN is not set\n")
        try:
            networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in args.salesforce_allow_from)
            salesforce = SalesforceRoute(
                org_id=args.salesforce_org_id, token=token, allow_from=networks,
                fields=SalesforceFields(lead_id=args.salesforce_lead_id_field,
                                        opportunity_id=args.salesforce_opportunity_id_field or None,
                                        loss_reason=args.salesforce_loss_reason_field))
        except ValueError as exc:
            parser.exit(2, f"ops.crm_relay: {exc}\n")
    if not events_secret:
        parser.exit(2, "ops.crm_relay: environment variable LEADFLOW_CRM_EVENTS_SECRET is not set\n")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(relay_app(events_secret=events_secret, leadflow_url=args.leadflow_url, hubspot_secret=hubspot_secret,
                          public_url=args.public_url, salesforce=salesforce), host=args.host, port=args.port,
                **SERVER_OPTIONS)


if __name__ == "__main__":
    main()

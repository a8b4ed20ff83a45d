"""One local server standing in for three CRMs, following their public API docs.

* Salesforce REST: ``POST /services/oauth2/token`` (client credentials; refused with 400
  ``invalid_request`` on ``login.salesforce.com`` and ``test.salesforce.com``, by the Host header,
  as Salesforce refuses it there: only the org's My Domain issues such tokens) and
  ``PATCH /services/data/{version}/sobjects/Opportunity/{ExternalIdField}/{value}``: 201 with
  ``{"id", "success", "errors", "created": true}`` for a new record, 200 with ``created: false``
  for an update (204 with no body up to API v45.0, as Salesforce does); 401
  ``INVALID_SESSION_ID`` for an unknown or expired token; 400 ``REQUIRED_FIELD_MISSING`` when
  Name, StageName or CloseDate is missing on create. The org is strict as Salesforce is: the
  Opportunity has its standard writable fields (``SALESFORCE_OPPORTUNITY_FIELDS``) plus the test
  org's custom fields (``salesforce_custom_fields``; field names are case-insensitive); the first
  other field in the body is 400 ``INVALID_FIELD`` ("No such column 'Foo__c' on sobject of type
  Opportunity") and nothing is written; an external id field in the URL that is not one of
  ``salesforce_external_ids`` is 404 ``NOT_FOUND`` ("Provided external ID field does not exist or
  is not accessible: ...").
* HubSpot CRM v3: ``POST /crm/v3/objects/deals/batch/upsert`` with ``idProperty``: 200 with
  ``{"status": "COMPLETE", "results": [{"id", "properties", "new"}]}``; 401
  ``INVALID_AUTHENTICATION``; 400 ``VALIDATION_ERROR`` (also for an ``idProperty`` that is no
  unique-value deal property, see ``hubspot_unique_properties``); 207 with ``results: []`` and
  ``errors[]`` when an input fails: a property that does not exist on deals
  (``PROPERTY_DOESNT_EXIST``, see ``hubspot_properties``), a ``dealstage`` that is no stage
  (``INVALID_OPTION``), or the errors queued in ``hubspot_errors``, one answer each.
* A generic webhook CRM: ``POST /crm/webhook`` signed per Standard Webhooks, upserting by the
  opportunity id.

API quotas, as the vendors answer them: ``hubspot_rate_limited`` makes the next HubSpot calls
answer 429 ``{"errorType": "RATE_LIMIT", "policyName": "DAILY"}`` (or ``hubspot_policy``, e.g.
``TEN_SECONDLY_ROLLING``, with ``Retry-After: hubspot_retry_after``); ``salesforce_limit_exceeded``
makes the next Salesforce upserts answer 403 ``REQUEST_LIMIT_EXCEEDED``.

``down`` makes every CRM call answer 503 (a CRM outage) until cleared; ``opportunities`` holds
what each CRM stores, keyed by leadflow's id, so tests can count them.

Run it alone: ``python -m ops.standins.crm --port 8077`` (webhook secret from
``LEADFLOW_CRM_WEBHOOK_SECRET``).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import itertools
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

__all__ = ["CrmStandIn", "StoredOpportunity", "SALESFORCE_OPPORTUNITY_FIELDS"]

#: The Opportunity's standard fields an API user can write (Salesforce's Object Reference, Opportunity);
#: read-only ones (IsWon, IsClosed, ...) are left out: no upsert of leadflow's names them.
SALESFORCE_OPPORTUNITY_FIELDS = frozenset({
    "AccountId", "Amount", "CampaignId", "CloseDate", "ContactId", "Description", "ForecastCategoryName",
    "IsPrivate", "LeadSource", "Name", "NextStep", "OwnerId", "Pricebook2Id", "Probability", "StageName",
    "TotalOpportunityQuantity", "Type"})


@dataclass
class StoredOpportunity:
    crm: str
    key: str
    crm_id: str
    fields: dict[str, Any]
    writes: int = 1


@dataclass
class CrmStandIn:
    client_id: str = "leadflow-client"
    client_secret: str = "leadflow-client-secret"
    hubspot_token: str = "pat-na1-standin"
    webhook_secret: str = "whsec_" + base64.b64encode(b"crm-standin-webhook-secret-32byt").decode()
    host: str = "127.0.0.1"
    port: int = 0
    #: While set, every CRM call answers 503 (the token endpoint too).
    down: bool = False
    #: The next this-many HubSpot calls answer 429 for ``hubspot_policy`` (its quota is used up).
    hubspot_rate_limited: int = 0
    hubspot_policy: str = "DAILY"
    #: ``Retry-After`` (seconds) on those 429s; ``None``: no header.
    hubspot_retry_after: int | None = None
    #: The next this-many Salesforce upserts answer 403 ``REQUEST_LIMIT_EXCEEDED`` (the org's 24 h allowance).
    salesforce_limit_exceeded: int = 0
    #: The org's custom Opportunity fields (created in Setup > Object Manager); a test drops one to
    #: see leadflow's upsert refused as Salesforce refuses it.
    salesforce_custom_fields: set[str] = field(default_factory=lambda: {"Leadflow_Id__c", "Leadflow_Lead_Id__c"})
    #: Those of them marked External ID (and Unique): the only ones an upsert URL may name.
    salesforce_external_ids: set[str] = field(default_factory=lambda: {"Leadflow_Id__c"})
    #: The properties deals have in the HubSpot portal (a custom one must be created first).
    hubspot_properties: set[str] = field(default_factory=lambda: {
        "dealname", "pipeline", "dealstage", "description", "closedate", "amount", "leadflow_id",
        "leadflow_lead_id"})
    hubspot_stages: set[str] = field(default_factory=lambda: {
        "appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
        "contractsent", "closedwon", "closedlost"})
    #: Deal properties created with unique values: the only ones an upsert's ``idProperty`` may name.
    hubspot_unique_properties: set[str] = field(default_factory=lambda: {"leadflow_id"})
    #: Error objects the next HubSpot upserts answer with (207, one per call), e.g. a temporary one.
    hubspot_errors: list[dict[str, Any]] = field(default_factory=list)
    opportunities: dict[tuple[str, str], StoredOpportunity] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stored(self, crm: str) -> list[StoredOpportunity]:
        return [o for (c, _), o in self.opportunities.items() if c == crm]

    def expire_tokens(self) -> None:
        self._tokens.clear()

    # --- the app ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/services/oauth2/token", self._sf_token)
        app.router.add_patch("/services/data/{version}/sobjects/Opportunity/{field}/{value}", self._sf_upsert)
        app.router.add_post("/crm/v3/objects/deals/batch/upsert", self._hs_upsert)
        app.router.add_post("/crm/webhook", self._webhook)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.down:
            response: web.StreamResponse = web.json_response(
                [{"message": "Service unavailable", "errorCode": "SERVER_UNAVAILABLE"}], status=503)
        else:
            response = await handler(request)
        self.requests.append((request.method, request.path, response.status))
        return response

    def _save(self, crm: str, key: str, fields: dict[str, Any], prefix: str) -> tuple[StoredOpportunity, bool]:
        existing = self.opportunities.get((crm, key))
        if existing is not None:
            existing.fields.update(fields)
            existing.writes += 1
            return existing, False
        stored = StoredOpportunity(crm=crm, key=key, crm_id=f"{prefix}{next(self._ids):012d}", fields=dict(fields))
        self.opportunities[(crm, key)] = stored
        return stored, True

    # --- Salesforce --------------------------------------------------------------------------

    async def _sf_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        # Salesforce refuses the client credentials flow on its generic login hosts (help article
        # 000886201): it needs the org's My Domain (https://<MyDomain>.my.salesforce.com).
        if request.host.rsplit(":", 1)[0].lower().rstrip(".") in ("login.salesforce.com", "test.salesforce.com"):
            return web.json_response({"error": "invalid_request",
                                      "error_description": "request not supported on this domain"}, status=400)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type", "error_description": "grant type not supported"},
                                     status=400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response({"error": "invalid_client", "error_description": "invalid client credentials"},
                                     status=400)
        token = "00Dstandin!" + secrets.token_urlsafe(24)
        self._tokens.add(token)
        return web.json_response({"access_token": token, "instance_url": self.url, "token_type": "Bearer",
                                  "issued_at": str(int(time.time() * 1000)), "id": f"{self.url}/id/00D/005"})

    async def _sf_upsert(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self._tokens:
            return web.json_response([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                                     status=401)
        try:
            fields = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response([{"message": "The request body is not JSON", "errorCode": "JSON_PARSER_ERROR"}],
                                     status=400)
        if not isinstance(fields, dict):
            return web.json_response([{"message": "Expected an object", "errorCode": "JSON_PARSER_ERROR"}], status=400)
        if self.salesforce_limit_exceeded > 0:
            self.salesforce_limit_exceeded -= 1
            return web.json_response([{"message": "TotalRequests Limit exceeded.",
                                       "errorCode": "REQUEST_LIMIT_EXCEEDED"}], status=403)
        id_field = request.match_info["field"]
        if id_field.lower() not in {f.lower() for f in self.salesforce_external_ids & self.salesforce_custom_fields}:
            return web.json_response([{"errorCode": "NOT_FOUND", "message": "Provided external ID field does not "
                                       f"exist or is not accessible: {id_field}"}], status=404)
        known = {f.lower() for f in SALESFORCE_OPPORTUNITY_FIELDS | self.salesforce_custom_fields}
        unknown = [name for name in fields if name.lower() not in known]
        if unknown:  # Salesforce stops at the first field it cannot map, and writes nothing
            return web.json_response([{"message": f"No such column '{unknown[0]}' on sobject of type Opportunity",
                                       "errorCode": "INVALID_FIELD", "fields": []}], status=400)
        key = f"{id_field}={request.match_info['value']}"
        if ("salesforce", key) not in self.opportunities:
            missing = [f for f in ("Name", "StageName", "CloseDate") if not fields.get(f)]
            if missing:
                return web.json_response([{"message": f"Required fields are missing: {missing}",
                                           "errorCode": "REQUIRED_FIELD_MISSING", "fields": missing}], status=400)
        stored, created = self._save("salesforce", key, fields, "006")
        if not created and _major(request.match_info["version"]) <= 45:
            return web.Response(status=204)  # up to v45.0 an update says nothing, not even the id
        return web.json_response({"id": stored.crm_id, "success": True, "errors": [], "created": created},
                                 status=201 if created else 200)

    # --- HubSpot -----------------------------------------------------------------------------

    async def _hs_upsert(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.hubspot_token}":
            return web.json_response({"status": "error", "message": "Authentication credentials not found.",
                                      "category": "INVALID_AUTHENTICATION"}, status=401)
        if self.hubspot_rate_limited > 0:
            self.hubspot_rate_limited -= 1
            headers = {} if self.hubspot_retry_after is None else {"Retry-After": str(self.hubspot_retry_after)}
            return web.json_response({"status": "error", "errorType": "RATE_LIMIT",
                                      "message": f"You have reached your {self.hubspot_policy.lower()} limit.",
                                      "policyName": self.hubspot_policy, "correlationId": secrets.token_hex(8)},
                                     status=429, headers=headers)
        try:
            body = orjson.loads(await request.read())
            inputs = body["inputs"]
            assert isinstance(inputs, list) and inputs
            assert all(isinstance(i.get("id"), str) and i.get("idProperty") and isinstance(i.get("properties"), dict)
                       for i in inputs)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, AssertionError):
            return web.json_response({"status": "error", "message": "Invalid input JSON: inputs need id, idProperty "
                                      "and properties", "category": "VALIDATION_ERROR"}, status=400)
        for item in inputs:
            # HubSpot upserts only by a property "whose values are unique for the object": any other,
            # or one that does not exist, refuses the whole batch.
            if item["idProperty"] not in self.hubspot_unique_properties:
                return web.json_response({"status": "error", "category": "VALIDATION_ERROR",
                                          "message": f"Unable to perform update/upsert by non-unique 0-3 property "
                                                     f"{item['idProperty']} in portal ID 12345678",
                                          "correlationId": secrets.token_hex(8)}, status=400)
        started = datetime.now(UTC).isoformat()
        errors = [self.hubspot_errors.pop(0)] if self.hubspot_errors else []
        for item in inputs:
            errors += _hs_property_errors(item["properties"], self.hubspot_properties, self.hubspot_stages)
        if errors:
            return web.json_response({"status": "COMPLETE", "results": [], "numErrors": len(errors), "errors": errors,
                                      "startedAt": started, "completedAt": datetime.now(UTC).isoformat()},
                                     status=207)
        results = []
        for item in inputs:
            stored, created = self._save("hubspot", f"{item['idProperty']}={item['id']}", item["properties"], "")
            results.append({"id": stored.crm_id, "properties": stored.fields, "createdAt": started,
                            "updatedAt": started, "archived": False, "new": created})
        return web.json_response({"status": "COMPLETE", "results": results, "startedAt": started,
                                  "completedAt": datetime.now(UTC).isoformat()})

    # --- the generic signed webhook -----------------------------------------------------------

    def _verified(self, request: web.Request, body: bytes) -> bool:
        msg_id = request.headers.get("webhook-id", "")
        stamp = request.headers.get("webhook-timestamp", "")
        key = base64.b64decode(self.webhook_secret.removeprefix("whsec_"))
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
        given = [s.split(",", 1)[1] for s in request.headers.get("webhook-signature", "").split() if "," in s]
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        return fresh and any(hmac.compare_digest(expected, g.encode()) for g in given)

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._verified(request, body):
            return web.json_response({"error": "bad signature"}, status=401)
        data = orjson.loads(body).get("data") or {}
        stored, created = self._save("webhook", str(data.get("opportunity_id")), data, "wh-")
        return web.json_response({"id": stored.crm_id}, status=201 if created else 200)

    # --- running it ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _hs_property_errors(properties: dict[str, Any], known: set[str], stages: set[str]) -> list[dict[str, Any]]:
    """HubSpot's errors for one input's properties: each bad one in the message's embedded JSON."""
    bad = [{"isValid": False, "message": f'Property "{name}" does not exist', "error": "PROPERTY_DOESNT_EXIST",
            "name": name} for name in properties if name not in known]
    stage = properties.get("dealstage")
    if stage is not None and stage not in stages:
        bad.append({"isValid": False, "message": f"{stage} was not one of the allowed options: {sorted(stages)}",
                    "error": "INVALID_OPTION", "name": "dealstage"})
    if not bad:
        return []
    return [{"status": "error", "category": "VALIDATION_ERROR",
             "message": "Property values were not valid: " + orjson.dumps(bad).decode(),
             "context": {"propertyName": [b["name"] for b in bad]}}]


def _major(version: str) -> int:
    try:
        return int(version.removeprefix("v").split(".")[0])
    except ValueError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8077)
    args = parser.parse_args()
    secret = os.environ.get("LEADFLOW_CRM_WEBHOOK_SECRET")
    standin = CrmStandIn(port=args.port)
    if secret:
        standin.webhook_secret = secret

    async def run() -> None:
        await standin.start()
        print(f"CRM stand-in on {standin.url} (Ctrl-C stops it)", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""Stand-ins for third-party services the capture channels call, following the services' public API docs.

``GraphApiStandIn`` is Meta's Graph API for Lead Ads: ``GET /{version}/{leadgen_id}`` answers a
Lead node (``id``, ``created_time``, ``field_data``, ``form_id``, ``ad_id``, ...; with
``?fields=a,b`` only those plus ``id``), as documented under Marketing API → Lead Ads →
Retrieving Leads. Auth is a Page access token (``Authorization: Bearer`` or ``access_token=``)
and, when the app requires it, ``appsecret_proof`` = hex HMAC-SHA256 of the token keyed with the
app secret. Errors use the Graph API's error object
(``{"error": {"message", "type", "code", "error_subcode"?, "fbtrace_id"}}``, see Graph API →
Handling Errors): an unknown or deleted node is ``400`` code ``100`` (subcode ``33``), a bad token
``400`` code ``190``, a bad proof ``400`` code ``100``, throttling ``400`` code ``17``/``32``/``613``.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from tests.integration.harness import LocalServer

__all__ = ["GraphApiStandIn", "GraphLead"]

_VERSION = re.compile(r"^v\d+\.\d+$")
_DEFAULT_FIELDS = ("created_time", "id", "field_data")  # what GET /{lead-id} returns without ?fields=


@dataclass
class GraphLead:
    """A Lead node: ``answers`` are the form's questions -> the values the person gave."""

    leadgen_id: str
    answers: dict[str, list[str]]
    form_id: str = "551111744595541"
    ad_id: str = "6045121234567"
    created_time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def node(self) -> dict[str, Any]:
        return {
            "id": self.leadgen_id,
            # Graph API datetimes: ISO 8601 with a +0000 offset, no colon.
            "created_time": self.created_time.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "field_data": [{"name": name, "values": values} for name, values in self.answers.items()],
            "form_id": self.form_id, "ad_id": self.ad_id, "is_organic": False, "platform": "fb",
        }


class GraphApiStandIn(LocalServer):
    """Meta's Graph API, just enough of it for Lead Ads retrieval, on a local port."""

    def __init__(self, *, access_token: str, app_secret: str) -> None:
        self.access_token, self.app_secret = access_token, app_secret
        self.leads: dict[str, GraphLead] = {}
        #: leadgen_id -> (Graph error code, HTTP status): the next reads of that lead fail so.
        self.failures: dict[str, tuple[int, int]] = {}
        self.requests: list[web.Request] = []
        super().__init__()

    def add(self, lead: GraphLead) -> GraphLead:
        self.leads[lead.leadgen_id] = lead
        return lead

    def asked_for(self, leadgen_id: str) -> int:
        return sum(1 for r in self.requests if r.match_info["node"] == leadgen_id)

    @staticmethod
    def _error(status: int, code: int, message: str, kind: str = "OAuthException",
               subcode: int | None = None) -> web.Response:
        error: dict[str, Any] = {"message": message, "type": kind, "code": code,
                                 "fbtrace_id": secrets.token_urlsafe(8)}
        if subcode is not None:
            error["error_subcode"] = subcode
        return web.json_response({"error": error}, status=status,
                                 headers={"WWW-Authenticate": f'OAuth "Facebook Platform" "{kind}" "{message}"'}
                                 if code == 190 else None)

    async def _node(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        version, node = request.match_info["version"], request.match_info["node"]
        if not _VERSION.match(version):
            return self._error(400, 2635, f"(#2635) You are calling a deprecated or unknown version: {version}")
        bearer = request.headers.get("Authorization", "")
        token = bearer[7:] if bearer.startswith("Bearer ") else request.query.get("access_token", "")
        if not token:
            return self._error(400, 104, "An access token is required to request this resource.")
        if not hmac.compare_digest(token, self.access_token):
            return self._error(400, 190, "Invalid OAuth access token - Cannot parse access token", subcode=None)
        proof = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.query.get("appsecret_proof", ""), proof):
            return self._error(400, 100, "Invalid appsecret_proof provided in the API argument")
        if node in self.failures:
            code, status = self.failures[node]
            return self._error(status, code, f"(#{code}) stand-in failure for this lead", kind="OAuthException")
        lead = self.leads.get(node)
        if lead is None:
            return self._error(400, 100, f"Unsupported get request. Object with ID '{node}' does not exist, cannot "
                               "be loaded due to missing permissions, or does not support this operation.",
                               kind="GraphMethodException", subcode=33)
        full = lead.node()
        wanted = [f.strip() for f in request.query["fields"].split(",") if f.strip()] \
            if "fields" in request.query else list(_DEFAULT_FIELDS)
        unknown = [f for f in wanted if f not in full]
        if unknown:
            return self._error(400, 100, f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type "
                               "(Lead)")
        return web.json_response({"id": full["id"], **{f: full[f] for f in wanted}})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/{version}/{node}", self._node)

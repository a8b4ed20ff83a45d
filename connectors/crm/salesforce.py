"""Salesforce REST: upsert the Opportunity by an External ID field holding leadflow's opportunity id.

``PATCH /services/data/{version}/sobjects/Opportunity/{External_Id__c}/{opportunity_id}`` creates
the record (201) or updates the one with that external id (200): a replay never makes a
second Opportunity. Both answers carry the record id from API v46.0 on; up to v45.0 an update
answers 204 with no body, so the config requires v46.0 or later (``SalesforceConfig``). The token comes from the OAuth 2.0 client credentials flow
(``POST {login_url}/services/oauth2/token``) and is fetched again once on ``INVALID_SESSION_ID``.

A field the org does not have is Salesforce's 400 ``INVALID_FIELD`` ("No such column 'X' on sobject
of type Opportunity"; an upsert key field that is not there is 404 ``NOT_FOUND``): permanent, and
the dead letter names the field and what to do (create it in the org, or set the config's field to
``null``), never the values sent.

``REQUEST_LIMIT_EXCEEDED`` (403) means the org's rolling 24-hour API allowance is used up: it
is ``RateLimited`` and tried again hourly (or after ``Retry-After``), as requests made a day
earlier age out; until then no further request is spent (``QuotaGate``).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from connectors.crm import CrmRecord, QuotaGate, RateLimited, classify_status, retry_after_header
from connectors.crm._summary import describe
from leadflow.errors import PermanentError, TransientError

__all__ = ["SalesforceCrm", "opportunity_fields", "LIMIT_RETRY_S"]

#: How often a used-up rolling 24-hour API allowance is tried again.
LIMIT_RETRY_S = 3600.0
#: The field named in Salesforce's INVALID_FIELD and NOT_FOUND messages (API names only: no values).
_API_NAME = re.compile(r"[A-Za-z0-9_.]{1,80}")
_NO_SUCH_COLUMN = re.compile(r"No such column '([A-Za-z0-9_]{1,80})'")
_NO_EXTERNAL_ID = re.compile(r"external ID field does not exist or is not accessible: ([A-Za-z0-9_]{1,80})")


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).date()
        except ValueError:
            pass
    return date.today()


def opportunity_fields(payload: Mapping[str, Any], *, stage: str, close_in_days: int,
                       lead_id_field: str | None = None) -> dict[str, Any]:
    """The Opportunity's fields (Name, StageName and CloseDate are required by Salesforce); ``lead_id_field``
    (if set) holds leadflow's lead id, so the CRM's events can name the lead."""
    lead_id = payload.get("lead_id")
    return {
        "Name": str(payload.get("name") or payload.get("opportunity_id"))[:120],
        "StageName": stage,
        "CloseDate": (_day(payload.get("created_at")) + timedelta(days=close_in_days)).isoformat(),
        "LeadSource": str(payload.get("source") or "")[:40] or None,
        "Description": describe(payload),
        **({lead_id_field: str(lead_id)} if lead_id_field and lead_id else {}),
    }


class SalesforceCrm:
    name = "salesforce"

    def __init__(self, session: aiohttp.ClientSession, *, login_url: str, client_id: str, client_secret: str,
                 api_version: str, external_id_field: str, stage: str, close_in_days: int,
                 timeout_s: float, lead_id_field: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._session = session
        self._quota = QuotaGate(clock)
        self._login_url = login_url.rstrip("/")
        self._client = (client_id, client_secret)
        self._version, self._field = api_version, external_id_field
        self._stage, self._close_in_days = stage, close_in_days
        self._lead_id_field = lead_id_field
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._token: tuple[str, str] | None = None  # (access token, instance URL): a cache, not state

    async def _call(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        self._quota.check()
        try:
            async with self._session.request(method, url, timeout=self._timeout, allow_redirects=False,
                                             **kwargs) as response:
                raw = await response.read()
                status = response.status
                retry_after = retry_after_header(response.headers.get("Retry-After"), self._quota.now())
        except TimeoutError:
            raise TransientError("Salesforce timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"Salesforce unreachable: {type(exc).__name__}") from None
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        if _error_code(body) == "REQUEST_LIMIT_EXCEEDED" or (status == 429 and retry_after is not None):
            raise self._quota.close(RateLimited(
                f"Salesforce answered HTTP {status} {_error_code(body) or 'rate limited'}",
                retry_after=retry_after if retry_after is not None else LIMIT_RETRY_S,
                quota=_error_code(body) or "HTTP 429"))
        return status, body

    async def _login(self) -> tuple[str, str]:
        client_id, client_secret = self._client
        status, body = await self._call("POST", f"{self._login_url}/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})
        if status == 200 and isinstance(body, dict) and body.get("access_token") and body.get("instance_url"):
            self._token = (str(body["access_token"]), str(body["instance_url"]).rstrip("/"))
            return self._token
        if classify_status(status):
            raise TransientError(f"Salesforce login answered HTTP {status}")
        error = body.get("error") if isinstance(body, dict) else None
        # Salesforce's own words (e.g. "request not supported on this domain": client credentials
        # on login.salesforce.com) tell ops what to fix; they name no person.
        detail = body.get("error_description") if isinstance(body, dict) else None
        said = f": {str(detail)[:200]}" if detail else ""
        raise PermanentError(f"Salesforce login refused (HTTP {status}, {error or 'no error code'}{said})")

    async def upsert(self, opportunity_id: str, payload: Mapping[str, Any]) -> CrmRecord:
        fields = {k: v for k, v in opportunity_fields(payload, stage=self._stage, close_in_days=self._close_in_days,
                                                      lead_id_field=self._lead_id_field).items() if v is not None}
        for attempt in (1, 2):
            token, instance = self._token or await self._login()
            url = f"{instance}/services/data/{self._version}/sobjects/Opportunity/{self._field}/{opportunity_id}"
            status, body = await self._call("PATCH", url, json=fields,
                                            headers={"Authorization": f"Bearer {token}"})
            if status in (200, 201) and isinstance(body, dict) and body.get("success", True) and body.get("id"):
                return CrmRecord(crm_id=str(body["id"]), created=status == 201 or bool(body.get("created")))
            code = _error_code(body)
            if status == 204:  # the update happened, but API v45.0 and earlier do not say the record id
                raise PermanentError(f"Salesforce answered 204 without the record id (API {self._version}); "
                                     "use api_version v46.0 or later")
            if status == 401 and code == "INVALID_SESSION_ID" and attempt == 1:
                self._token = None  # expired: log in again, once
                continue
            if classify_status(status) or code in ("UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"):
                raise TransientError(f"Salesforce answered HTTP {status} {code or ''}".strip())
            raise PermanentError(f"Salesforce refused the opportunity: HTTP {status} {code or ''}".strip()
                                 + self._field_hint(body))
        raise PermanentError("Salesforce refused the session twice")

    def _field_hint(self, body: Any) -> str:
        """`` (Field__c: what to do)`` for an error naming a field the org lacks, else ``""``."""
        if not (isinstance(body, list) and body and isinstance(body[0], dict)):
            return ""
        error = body[0]
        message = str(error.get("message") or "")
        named = [f for f in error.get("fields") or [] if isinstance(f, str) and _API_NAME.fullmatch(f)][:5]
        if not named:
            found = _NO_SUCH_COLUMN.search(message) or _NO_EXTERNAL_ID.search(message)
            named = [found.group(1)] if found else []
        if not named:
            return ""
        code = error.get("errorCode")
        if code == "NOT_FOUND":
            todo = ("create it on Opportunity as a Text field marked External ID and Unique, or set "
                    "crm.salesforce.external_id_field to the one you have")
        elif code == "INVALID_FIELD":
            todo = "the org's Opportunity has no such field (or the integration user cannot see it): create it"
            if self._lead_id_field and any(n.lower() == self._lead_id_field.lower() for n in named):
                todo += ", or set crm.salesforce.lead_id_field: null to write no lead id"
        else:  # e.g. INVALID_FIELD_FOR_INSERT_UPDATE: the field is read-only for the integration user
            return f" ({', '.join(named)})"
        return f" ({', '.join(named)}: {todo})"


def _error_code(body: Any) -> str | None:
    # Errors come as a list: [{"message": ..., "errorCode": ..., "fields": [...]}].
    if isinstance(body, list) and body and isinstance(body[0], dict):
        code = body[0].get("errorCode")
        return str(code) if code else None
    return None

"""HubSpot CRM v3: upsert the deal by a unique property holding leadflow's opportunity id.

``POST /crm/v3/objects/deals/batch/upsert`` with ``{"inputs": [{"idProperty", "id", "properties"}]}``
creates the deal or updates the one whose unique property has that value (``new`` says which),
so a replay never makes a second deal. Authenticated with a private app's bearer token.

A 429 is ``RateLimited``: HubSpot's body names the policy (``"policyName": "DAILY"`` or
``"TEN_SECONDLY_ROLLING"``). A secondly limit is retried after ``Retry-After`` (10 s without
one). The daily limit resets at midnight in the HubSpot account's time zone, which leadflow does
not know, so it is tried again hourly, and at the next UTC midnight when that comes sooner; until
then no further request is spent (``QuotaGate``). A ``207`` whose ``errors[]`` hold a validation
error (``VALIDATION_ERROR``, ``PROPERTY_DOESNT_EXIST``, ``INVALID_OPTION``…) is permanent, its
categories, property names and codes in the reason (``connectors/crm/_hubspot_errors.py``);
other errors stay transient.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson

from connectors.crm import (CrmRecord, QuotaGate, RateLimited, classify_status, retry_after_header,
                           seconds_to_next_utc_midnight)
from connectors.crm._hubspot_errors import describe_errors, is_permanent
from connectors.crm._summary import describe
from leadflow.errors import PermanentError, TransientError

__all__ = ["HubspotCrm", "deal_properties", "DAILY_RETRY_S"]

#: How often a used-up daily quota is tried again (its reset is at the account's local midnight).
DAILY_RETRY_S = 3600.0


def deal_properties(payload: Mapping[str, Any], *, id_property: str, opportunity_id: str, pipeline: str,
                    stage: str, lead_id_property: str | None = None) -> dict[str, str]:
    """The deal's properties; ``lead_id_property`` (if set) holds leadflow's lead id, so the CRM's
    events can name the lead (``POST /v1/crm/events`` needs ``data.lead_id``)."""
    created = payload.get("created_at")
    try:
        when = datetime.fromisoformat(created) if isinstance(created, str) else created
    except ValueError:
        when = None
    props = {
        id_property: opportunity_id,
        "dealname": str(payload.get("name") or opportunity_id),
        "pipeline": pipeline,
        "dealstage": stage,
        "description": describe(payload, limit=65000),
    }
    if lead_id_property and payload.get("lead_id"):
        props[lead_id_property] = str(payload["lead_id"])
    if isinstance(when, datetime):
        props["closedate"] = (when + timedelta(days=30)).isoformat()
    return props


class HubspotCrm:
    name = "hubspot"

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, token: str, id_property: str,
                 pipeline: str, stage: str, timeout_s: float, lead_id_property: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._session, self._base, self._token = session, base_url.rstrip("/"), token
        self._id_property, self._pipeline, self._stage = id_property, pipeline, stage
        self._lead_id_property = lead_id_property
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._quota = QuotaGate(clock)

    async def upsert(self, opportunity_id: str, payload: Mapping[str, Any]) -> CrmRecord:
        body = {"inputs": [{"idProperty": self._id_property, "id": opportunity_id, "properties": deal_properties(
            payload, id_property=self._id_property, opportunity_id=opportunity_id, pipeline=self._pipeline,
            stage=self._stage, lead_id_property=self._lead_id_property)}]}
        self._quota.check()
        try:
            async with self._session.post(f"{self._base}/crm/v3/objects/deals/batch/upsert", json=body,
                                          headers={"Authorization": f"Bearer {self._token}"},
                                          timeout=self._timeout, allow_redirects=False) as response:
                raw = await response.read()
                status = response.status
                retry_after = retry_after_header(response.headers.get("Retry-After"), self._quota.now())
        except TimeoutError:
            raise TransientError("HubSpot timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"HubSpot unreachable: {type(exc).__name__}") from None
        try:
            answer = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            answer = None
        if status in (200, 201, 207) and isinstance(answer, dict):
            results = answer.get("results") or []
            if results and isinstance(results[0], dict) and results[0].get("id"):
                return CrmRecord(crm_id=str(results[0]["id"]), created=bool(results[0].get("new")))
            # 207 Multi-Status: the input failed; errors[] says why (a validation error is not temporary).
            errors = [e for e in answer.get("errors") or [] if isinstance(e, dict)]
            if errors and is_permanent(errors):
                raise PermanentError(f"HubSpot refused the deal: HTTP {status} {describe_errors(errors)}")
            said = describe_errors(errors) if errors else f"no result ({answer.get('status')})"
            raise TransientError(f"HubSpot answered HTTP {status}: {said}")
        if status == 429:
            raise self._quota.close(self._rate_limited(answer, retry_after))
        said = describe_errors([answer]) if isinstance(answer, dict) else ""
        if classify_status(status):
            raise TransientError(f"HubSpot answered HTTP {status} {said}".strip())
        raise PermanentError(f"HubSpot refused the deal: HTTP {status} {said}".strip())

    def _rate_limited(self, answer: Any, retry_after: float | None) -> RateLimited:
        policy = str(answer.get("policyName") or "") if isinstance(answer, dict) else ""
        if policy == "DAILY":
            wait = retry_after if retry_after is not None else min(
                DAILY_RETRY_S, seconds_to_next_utc_midnight(self._quota.now()))
        else:
            wait = retry_after if retry_after is not None else 10.0
        return RateLimited(f"HubSpot answered HTTP 429 {policy or 'RATE_LIMIT'}", retry_after=wait,
                           quota=policy or "unknown")

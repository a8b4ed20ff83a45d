"""HubSpot CRM v3: upsert the deal by a unique property holding leadflow's opportunity id.

``POST /crm/v3/objects/deals/batch/upsert`` with ``{"inputs": [{"idProperty", "id", "properties"}]}``
creates the deal or updates the one whose unique property has that value (``new`` says which),
so a replay never makes a second deal. Authenticated with a private app's bearer token.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson

from connectors.crm import CrmRecord, classify_status
from connectors.crm._summary import describe
from leadflow.errors import PermanentError, TransientError

__all__ = ["HubspotCrm", "deal_properties"]


def deal_properties(payload: Mapping[str, Any], *, id_property: str, opportunity_id: str, pipeline: str,
                    stage: str) -> dict[str, str]:
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
    if isinstance(when, datetime):
        props["closedate"] = (when + timedelta(days=30)).isoformat()
    return props


class HubspotCrm:
    name = "hubspot"

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, token: str, id_property: str,
                 pipeline: str, stage: str, timeout_s: float) -> None:
        self._session, self._base, self._token = session, base_url.rstrip("/"), token
        self._id_property, self._pipeline, self._stage = id_property, pipeline, stage
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def upsert(self, opportunity_id: str, payload: Mapping[str, Any]) -> CrmRecord:
        body = {"inputs": [{"idProperty": self._id_property, "id": opportunity_id, "properties": deal_properties(
            payload, id_property=self._id_property, opportunity_id=opportunity_id, pipeline=self._pipeline,
            stage=self._stage)}]}
        try:
            async with self._session.post(f"{self._base}/crm/v3/objects/deals/batch/upsert", json=body,
                                          headers={"Authorization": f"Bearer {self._token}"},
                                          timeout=self._timeout, allow_redirects=False) as response:
                raw = await response.read()
                status = response.status
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
            raise TransientError(f"HubSpot answered {status} without a result ({answer.get('status')})")
        category = answer.get("category") if isinstance(answer, dict) else None
        if classify_status(status):
            raise TransientError(f"HubSpot answered HTTP {status} {category or ''}".strip())
        raise PermanentError(f"HubSpot refused the deal: HTTP {status} {category or ''}".strip())

"""A generic CRM reached by a signed webhook (Standard Webhooks): ``opportunity.upsert`` per opportunity.

The ``webhook-id`` is derived from the opportunity id, so the receiver can upsert (or dedup) by
it; the receiver may answer ``{"id": ...}`` with its own record id. Its URL is guarded like a
rep's webhook: private, loopback and link-local destinations are refused unless
``LEADFLOW_WEBHOOK_ALLOW_PRIVATE`` allows them (``connectors/netguard.py``).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from connectors.crm import CrmRecord, RateLimited, classify_status, retry_after_header
from connectors.netguard import check_destination
from connectors.webhook_signing import signed_headers
from leadflow.errors import PermanentError, TransientError

__all__ = ["WebhookCrm"]


class WebhookCrm:
    name = "webhook"

    def __init__(self, session: aiohttp.ClientSession, *, url: str, secret: str, timeout_s: float,
                 allow_private: bool = False, clock: Callable[[], float] = time.time) -> None:
        self._session, self._url, self._secret = session, url, secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._allow_private = allow_private
        self._clock = clock

    async def upsert(self, opportunity_id: str, payload: Mapping[str, Any]) -> CrmRecord:
        # The receiver upserts by ``data.opportunity_id``: always the id we were given, never one
        # the payload may lack or disagree on (``webhook-id`` is derived from the same id).
        data = {**payload, "opportunity_id": opportunity_id}
        body = orjson.dumps({"type": "opportunity.upsert", "timestamp": payload.get("created_at"), "data": data})
        headers = signed_headers(self._secret, f"msg_{opportunity_id}", int(self._clock()), body)
        # DestinationRefused is permanent (a dead letter naming why); DNS trouble is transient.
        await check_destination(self._url, allow_private=self._allow_private)
        try:
            async with self._session.post(self._url, data=body, headers=headers, allow_redirects=False,
                                          timeout=self._timeout) as response:
                text = await response.read()
                status = response.status
                retry_after = retry_after_header(response.headers.get("Retry-After"), self._clock())
        except TimeoutError:
            raise TransientError("the CRM webhook timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"the CRM webhook failed: {type(exc).__name__}") from None
        if 200 <= status < 300:
            crm_id = opportunity_id
            try:
                answer = orjson.loads(text) if text else {}
                if isinstance(answer, dict) and isinstance(answer.get("id"), (str, int)):
                    crm_id = str(answer["id"])
            except orjson.JSONDecodeError:
                pass
            return CrmRecord(crm_id=crm_id, created=status == 201)
        if status == 429 and retry_after is not None:  # the receiver said when: a wait, not a failure
            raise RateLimited(f"the CRM webhook answered HTTP {status}", retry_after=retry_after, quota="HTTP 429")
        if classify_status(status):
            raise TransientError(f"the CRM webhook answered HTTP {status}")
        raise PermanentError(f"the CRM webhook refused the opportunity (HTTP {status})")

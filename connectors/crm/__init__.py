"""CRM adapters: upsert an opportunity by leadflow's id, so a replay never creates a second one.

Each adapter raises ``TransientError`` (retry later: timeouts, 429, 5xx) or ``PermanentError``
(dead-letter: bad request, refused credentials) and returns the CRM's record id on success. A
used-up API quota is ``RateLimited``, a ``TransientError`` that says when to try again: the CRM
agent waits that long without counting the attempt toward giving up (``rules/crm_retry.py``).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from leadflow.errors import TransientError

__all__ = ["CrmRecord", "CrmAdapter", "EventsAuth", "RateLimited", "QuotaGate", "classify_status",
           "retry_after_header", "seconds_to_next_utc_midnight", "MAX_RATE_WAIT_S"]

#: The longest single wait a CRM's answer can ask for; ``crm.rate_limit_max_wait`` bounds the total.
MAX_RATE_WAIT_S = 86400.0


@dataclass(frozen=True, slots=True)
class CrmRecord:
    crm_id: str
    created: bool


class CrmAdapter(Protocol):
    name: str

    async def upsert(self, opportunity_id: str, payload: Mapping[str, Any]) -> CrmRecord:
        """Create or update the opportunity keyed by ``opportunity_id``."""
        ...


def classify_status(status: int) -> bool:
    """``True`` when a failed HTTP status is worth retrying (408, 425, 429, 5xx)."""
    return status in (408, 425, 429) or status >= 500


@dataclass(frozen=True, slots=True)
class EventsAuth:
    """How ``POST /v1/crm/events`` is authenticated: a Standard Webhooks secret and a timestamp tolerance."""

    secret: str = field(repr=False)
    tolerance_s: float = 300.0


class RateLimited(TransientError):
    """The CRM's API quota is used up: try again in ``retry_after`` seconds (``quota`` names which).

    Not a failed attempt: the CRM refused to look at the request, so the CRM agent schedules the
    next one for then and does not count it toward giving up.
    """

    def __init__(self, message: str, *, retry_after: float, quota: str) -> None:
        super().__init__(message)
        self.retry_after = min(max(retry_after, 1.0), MAX_RATE_WAIT_S)
        self.quota = quota


def retry_after_header(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), ``None`` if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


class QuotaGate:
    """Once a CRM says its quota is used up, calls before the reset fail at once without a request.

    The quota is per account (HubSpot) or org (Salesforce), not per record: a thousand waiting
    upserts must not each spend a request to hear the same 429. A cache, not state.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._closed: tuple[float, str, str] | None = None  # (until, quota, message)

    def check(self) -> None:
        """Raise ``RateLimited`` (with the time left) while the quota is known to be used up."""
        if self._closed is None:
            return
        until, quota, message = self._closed
        left = until - self._clock()
        if left <= 0:
            self._closed = None
            return
        raise RateLimited(f"{message} (known; not called)", retry_after=left, quota=quota)

    def close(self, limited: RateLimited) -> RateLimited:
        """Remember ``limited`` until its retry time; returns it to raise."""
        self._closed = (self._clock() + limited.retry_after, limited.quota, str(limited))
        return limited

    def now(self) -> float:
        return self._clock()


def seconds_to_next_utc_midnight(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp() + 86400 - now

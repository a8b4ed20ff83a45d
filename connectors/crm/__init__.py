"""CRM adapters: upsert an opportunity by leadflow's id, so a replay never creates a second one.

Each adapter raises ``TransientError`` (retry later: timeouts, 429, 5xx) or ``PermanentError``
(dead-letter: bad request, refused credentials) and returns the CRM's record id on success.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CrmRecord", "CrmAdapter", "EventsAuth", "classify_status"]


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

"""Durable webhook delivery, decided purely: the retry schedule, the backlog, the circuit breaker.

The notifier (``streams/agents/notifier.py``) does the I/O; everything it decides lives here,
with time as an argument:

* **Schedule** — Standard Webhooks' (https://www.standardwebhooks.com, "Retry schedule"):
  immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h after each failure; eight
  attempts over about 27.6 hours. A message still failing after the last one is dead-lettered.
* **Backlog** — a lead's failed-but-retryable messages, kept in the notifier's table (keyed by
  ``lead_id``, so owned by the same partition as the lead's ``notifications``). A timer turns
  each due entry into a ``RetryDue`` on ``notifications``; the notifier acts on it only when
  its ``attempt`` is still the next one, so a timer firing twice changes nothing.
* **Circuit breaker** — per endpoint (scheme, host, port), in memory (an accelerator: after a
  crash it starts closed again). After ``threshold`` consecutive failures it opens; while open,
  deliveries to that endpoint are *deferred* (moved to the backlog without using an attempt),
  never dropped; after ``cooldown_s`` one probe is let through (half-open): success closes it,
  failure opens it again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final, Literal, TypeAlias

from rules.commands import Notify
from sla.config import parse_duration

__all__ = [
    "STANDARD_SCHEDULE",
    "parse_schedule",
    "PendingDelivery",
    "DeliveryBacklog",
    "RetryDue",
    "Outcome",
    "Verdict",
    "judge",
    "deadline",
    "CircuitBreaker",
    "endpoint_of",
]

#: Delays in seconds *after* failed attempts 1..7 (attempt 1 is immediate): Standard Webhooks'.
STANDARD_SCHEDULE: Final[tuple[float, ...]] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)

#: Most messages one lead may have waiting for a retry: a bounded table value (DESIGN §5).
#: A lead gets a handful of webhooks per cycle; past this the oldest is dead-lettered.
MAX_PENDING_PER_LEAD: Final = 16



def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5s,5m,30m,2h,5h,10h,10h"`` (or plain seconds, ``"0.2,0.5,1"``) -> delays in seconds.

    Raises ``ValueError`` naming the bad item. An empty schedule means one attempt, no retries.
    """
    if not text.strip():
        return ()
    delays = []
    for index, item in enumerate(text.split(",")):
        try:
            value = parse_duration(item)  # the config's one duration parser
        except ValueError:
            value = math.nan
        if not 0 <= value < math.inf:
            raise ValueError(f"item {index + 1} ({item.strip()!r}) is not a delay such as 5s, 5m, 2h or 0.5")
        delays.append(value)
    return tuple(delays)


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingDelivery:
    """One message waiting for its next attempt."""

    notify: Notify
    #: Attempts made so far (deferrals by an open circuit do not count).
    attempts: int
    first_attempt_at: datetime
    next_at: datetime
    last_error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryBacklog:
    """The ``webhook_retries`` table value: a lead's pending messages, oldest first (bounded)."""

    lead_id: str
    pending: tuple[PendingDelivery, ...] = ()

    def find(self, webhook_id: str) -> PendingDelivery | None:
        return next((p for p in self.pending if p.notify.webhook_id == webhook_id), None)

    def without(self, webhook_id: str) -> DeliveryBacklog:
        return replace(self, pending=tuple(p for p in self.pending if p.notify.webhook_id != webhook_id))

    def put(self, entry: PendingDelivery) -> tuple[DeliveryBacklog, tuple[PendingDelivery, ...]]:
        """Add or replace ``entry``; returns the new backlog and any entries pushed out by the bound."""
        pending = tuple(p for p in self.pending if p.notify.webhook_id != entry.notify.webhook_id) + (entry,)
        overflow = pending[:-MAX_PENDING_PER_LEAD] if len(pending) > MAX_PENDING_PER_LEAD else ()
        return replace(self, pending=pending[-MAX_PENDING_PER_LEAD:]), overflow


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryDue:
    """The retry timer says attempt ``attempt`` of ``webhook_id`` may be due (on ``notifications``)."""

    lead_id: str
    webhook_id: str
    attempt: int
    due_at: datetime


Outcome: TypeAlias = Literal["delivered", "retry", "dead_letter"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What to do after an attempt."""

    outcome: Outcome
    #: When to try again (``retry`` only).
    next_at: datetime | None = None
    #: Why it was dead-lettered (``dead_letter`` only).
    reason: str | None = None


def judge(
    *, delivered: bool, gave_up_reason: str | None, error: str | None, attempts: int,
    now: datetime, schedule: tuple[float, ...],
) -> Verdict:
    """After attempt number ``attempts`` ended: delivered, retry at a time, or dead letter.

    ``gave_up_reason`` is the sender's verdict that retrying cannot help (``410 Gone``, another
    4xx, a refused destination): straight to the dead letter, as Standard Webhooks asks.
    """
    if delivered:
        return Verdict(outcome="delivered")
    if gave_up_reason is not None:
        return Verdict(outcome="dead_letter", reason=gave_up_reason)
    if attempts > len(schedule):
        return Verdict(outcome="dead_letter",
                       reason=f"retries exhausted after {attempts} attempt(s): {error or 'failed'}")
    return Verdict(outcome="retry", next_at=now + timedelta(seconds=schedule[attempts - 1]))


def deadline(first_attempt_at: datetime, schedule: tuple[float, ...]) -> datetime:
    """When a message deferred by an open circuit stops waiting: the whole schedule's span.

    A message deferred again and again (its endpoint never recovers enough for its turn) is
    dead-lettered then, exactly when it would have been had every attempt failed.
    """
    return first_attempt_at + timedelta(seconds=sum(schedule))


def endpoint_of(url: str) -> str:
    """The circuit breaker's unit: scheme, host and port (never the path's tokens or the query)."""
    scheme, _, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme.lower()}://{authority.lower()}"


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    open_until: float | None = None
    probing: bool = False


@dataclass(slots=True)
class CircuitBreaker:
    """Per-endpoint breaker; times are unix seconds passed in (no clock reads)."""

    threshold: int = 5
    cooldown_s: float = 30.0
    _circuits: dict[str, _Circuit] = field(default_factory=dict)

    def allow(self, endpoint: str, now: float) -> bool:
        """May a delivery go to ``endpoint`` now? Half-open lets exactly one probe through."""
        circuit = self._circuits.get(endpoint)
        if circuit is None or circuit.open_until is None:
            return True
        if now < circuit.open_until or circuit.probing:
            return False
        circuit.probing = True
        return True

    def record(self, endpoint: str, ok: bool, now: float) -> None:
        """The outcome of a delivery that was allowed."""
        if ok:
            self._circuits.pop(endpoint, None)
            return
        circuit = self._circuits.setdefault(endpoint, _Circuit())
        circuit.failures += 1
        if circuit.probing or circuit.failures >= self.threshold:
            circuit.open_until = now + self.cooldown_s
            circuit.probing = False

    def release(self, endpoint: str) -> None:
        """An allowed probe was not sent after all (its message turned out stale)."""
        circuit = self._circuits.get(endpoint)
        if circuit is not None:
            circuit.probing = False

    def retry_at(self, endpoint: str, now: float) -> float:
        """When a deferred delivery should be tried again (the end of the cooldown, or soon)."""
        circuit = self._circuits.get(endpoint)
        if circuit is None or circuit.open_until is None:
            return now
        # A probe is in flight: check back one cooldown later rather than spin on it.
        return max(circuit.open_until, now + (self.cooldown_s if circuit.probing else 0.0))

    def is_open(self, endpoint: str) -> bool:
        circuit = self._circuits.get(endpoint)
        return circuit is not None and circuit.open_until is not None

    def open_endpoints(self) -> int:
        return sum(1 for c in self._circuits.values() if c.open_until is not None)

    def __len__(self) -> int:
        # Bounded: closed circuits with no failure are dropped on success.
        return len(self._circuits)

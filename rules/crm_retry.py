"""The CRM agent's retry schedule for one opportunity upsert: attempt it, hold a replay, or give up (pure).

A failed upsert waits in ``crm_pending`` for its next attempt (``retry_after_failure``). While
it waits, ``crm.outbox`` may deliver the same upsert again: Kafka redelivers after a crash
(at-least-once), or the timer re-sends an attempt that was already made. Such a replay carries
an ``attempt`` count below the pending one; it must not call the CRM again nor restart the
schedule, or a crash loop would retry forever. So ``plan_upsert`` holds it: the pending row
keeps its attempt count and due time. If the replay carries newer content (a later
``created_at``), the pending attempt sends that content, still on the same schedule. Only the
pending row's own message (the due retry) or an upsert with nothing pending is attempted.

A CRM that refuses for its API quota (a HubSpot ``DAILY`` 429, Salesforce's
``REQUEST_LIMIT_EXCEEDED``) says when to come back; ``wait_for_quota`` schedules the next
attempt for then and counts it in ``waits``, not toward the schedule: a daily quota would
otherwise use up every delay in minutes and dead-letter the opportunity. Such waits are bounded
by time instead: once the next one would end more than ``max_wait_s`` after the first quota
refusal (``since``), the upsert gives up.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from rules.commands import UpsertOpportunity
from rules.opportunity import PendingCrm

__all__ = ["pending_key", "plan_upsert", "retry_after_failure", "wait_for_quota"]


def pending_key(message: UpsertOpportunity) -> str:
    """The ``crm_pending`` key of an upsert's retry: one row per opportunity."""
    return f"{message.lead_id}|{message.opportunity_id}"


def plan_upsert(pending: PendingCrm | None, message: UpsertOpportunity) -> UpsertOpportunity | PendingCrm:
    """The upsert to attempt now, or (a replay while a retry waits) the pending row to keep instead."""
    waiting = pending.message if pending is not None else None
    if pending is None or not isinstance(waiting, UpsertOpportunity) or message.attempt >= waiting.attempt:
        return message
    if message.created_at > waiting.created_at:
        # Newer content rides on the pending schedule: the next attempt sends it; nothing restarts.
        return replace(pending, message=replace(message, attempt=waiting.attempt))
    return pending


def _carried(pending: PendingCrm | None, message: UpsertOpportunity) -> tuple[int, datetime | None]:
    """``(waits, since)`` of the pending row of ``message``'s retry, if that is what ``pending`` is."""
    if pending is None or pending.key != pending_key(message) or not isinstance(pending.message, UpsertOpportunity):
        return 0, None
    return pending.waits, pending.since


def retry_after_failure(message: UpsertOpportunity, now: datetime, delays: Sequence[float],
                        pending: PendingCrm | None = None) -> PendingCrm | None:
    """The pending row for the next attempt after ``message`` failed, or ``None`` when the schedule is used up.

    ``pending`` is the row ``message`` was due from (if any): its quota waits do not use up ``delays``.
    """
    waits, since = _carried(pending, message)
    failures = message.attempt - waits  # attempts that failed, not counting quota waits
    if failures >= len(delays):
        return None
    due = now + timedelta(seconds=delays[max(failures, 0)])
    return PendingCrm(key=pending_key(message), due_at=due, message=replace(message, attempt=message.attempt + 1),
                      since=since, waits=waits)


def wait_for_quota(message: UpsertOpportunity, now: datetime, wait_s: float, max_wait_s: float,
                   pending: PendingCrm | None = None) -> PendingCrm | None:
    """The pending row for the attempt after a quota refusal (``wait_s`` from now), not counted toward
    giving up; ``None`` once that wait would end more than ``max_wait_s`` after the first quota refusal."""
    waits, since = _carried(pending, message)
    since = since or now
    due = now + timedelta(seconds=wait_s)
    if (due - since).total_seconds() > max_wait_s:
        return None
    return PendingCrm(key=pending_key(message), due_at=due, message=replace(message, attempt=message.attempt + 1),
                      since=since, waits=waits + 1)

"""The CRM agent's retry schedule for one opportunity upsert: attempt it, hold a replay, or give up (pure).

A failed upsert waits in ``crm_pending`` for its next attempt (``retry_after_failure``). While
it waits, ``crm.outbox`` may deliver the same upsert again: Kafka redelivers after a crash
(at-least-once), or the timer re-sends an attempt that was already made. Such a replay carries
an ``attempt`` count below the pending one; it must not call the CRM again nor restart the
schedule, or a crash loop would retry forever. So ``plan_upsert`` holds it: the pending row
keeps its attempt count and due time. If the replay carries newer content (a later
``created_at``), the pending attempt sends that content, still on the same schedule. Only the
pending row's own message (the due retry) or an upsert with nothing pending is attempted.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from rules.commands import UpsertOpportunity
from rules.opportunity import PendingCrm

__all__ = ["pending_key", "plan_upsert", "retry_after_failure"]


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


def retry_after_failure(message: UpsertOpportunity, now: datetime, delays: Sequence[float]) -> PendingCrm | None:
    """The pending row for the next attempt after ``message`` failed, or ``None`` when the schedule is used up."""
    if message.attempt >= len(delays):
        return None
    due = now + timedelta(seconds=delays[message.attempt])
    return PendingCrm(key=pending_key(message), due_at=due, message=replace(message, attempt=message.attempt + 1))

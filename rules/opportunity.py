"""What a lead keeps about its qualification and its opportunity (small, bounded values)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

from rules.commands import DeferCommand, UpsertOpportunity

__all__ = ["OpportunityStatus", "Qualification", "Opportunity", "PendingCrm", "opportunity_id_for", "revenue_counted"]

OpportunityStatus: TypeAlias = Literal["open", "won", "lost"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Qualification:
    """The answers recorded so far for one framework, and what they meet."""

    framework: str
    answers: dict[str, Any]
    met: tuple[str, ...]
    missing: tuple[str, ...]
    sql: bool
    reason: str
    updated_at: datetime
    rep_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Opportunity:
    """The lead's opportunity: leadflow's id (the CRM upserts by it), the CRM's id once synced."""

    opportunity_id: str
    created_at: datetime
    status: OpportunityStatus = "open"
    stage: str = "qualification"
    #: The SDR who qualified it (the won/lost table counts outcomes by rep).
    rep_id: str | None = None
    crm: str | None = None
    crm_id: str | None = None
    synced_at: datetime | None = None
    sync_failed: str | None = None
    amount: float | None = None
    closed_at: datetime | None = None
    lost_reason: str | None = None
    #: The source and segment its outcome is credited to on the won/lost board, frozen when the
    #: lead converts: the lead's source (its latest touch's, the one ``score_lead`` reads the
    #: learned rate of) and the segment of the score it converted with. A touch during the open
    #: deal changes neither. ``None`` in an opportunity made before they were kept: its outcome
    #: goes to the first touch's source and the score's segment at close, as it did then.
    source: str | None = None
    segment: str | None = None
    #: The segment weight its loss was counted with (``rules.outcomes.reason_weight``), kept so a
    #: correction to won takes off exactly that; ``None`` while open, won, or closed before it was kept.
    lost_weight: float | None = None
    #: How many times the CRM closed it the other way or reopened it since it first closed (a
    #: reopened deal, a stage picked by mistake): numbers the correcting outcomes' ids, so each counts once.
    corrections: int = 0
    #: The won amount already added to the revenue counter (``leadflow_won_revenue_total``), so a deal
    #: won again after a correction or a reopen adds only what it won beyond that. ``None`` in an
    #: opportunity kept before it was: its amount if it is won, else nothing (``revenue_counted``).
    revenue_counted: float | None = None
    #: When the last won, lost or stage change leadflow applied to it happened, as ``at`` says
    #: (the CRM's time clamped to now, or the arrival when the CRM sent none): for reading, not
    #: for ordering. ``None``: none applied since it was kept (a state from an older worker sets
    #: it only on a close, a correction or a reopen).
    moved_at: datetime | None = None
    #: The CRM's own time (``RecordCrmEvent.crm_at``, unclamped) of the newest move applied that
    #: carried one: a won, lost or stage change whose CRM time is earlier is stale, one at the very
    #: same time that repeats the close held is a repeat (``rules.lead_crm.stale_crm_event``). A
    #: move without a CRM time leaves it. ``None``: no move with a CRM time applied yet, or kept
    #: before it was: events apply in arrival order.
    crm_moved_at: datetime | None = None


def revenue_counted(opportunity: Opportunity) -> float:
    """The won amount the revenue counter already holds for this opportunity."""
    if opportunity.revenue_counted is not None:
        return opportunity.revenue_counted
    return opportunity.amount or 0.0 if opportunity.status == "won" else 0.0


def opportunity_id_for(lead_id: str, cycle: int) -> str:
    """Deterministic: the same lead and cycle always name the same opportunity (idempotent upserts)."""
    return "op_" + hashlib.sha256(f"{lead_id}:{cycle}".encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingCrm:
    """A CRM agent timer: an upsert waiting for its next attempt, or a deferred lead command.

    Kept in the ``crm_pending`` table (one row per ``lead_id|kind``) so neither is lost in a
    crash; the timer loop re-sends ``message`` to ``crm.outbox`` when ``due_at`` comes.
    """

    key: str
    due_at: datetime
    message: UpsertOpportunity | DeferCommand
    #: When the CRM first refused the upsert for its API quota: such waits are bounded by the time since.
    since: datetime | None = None
    #: Attempts the CRM refused for its quota (``RateLimited``): they do not count toward giving up.
    waits: int = 0

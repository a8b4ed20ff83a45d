"""The escalation ladder of one assignment: when the breach and each step fall due, what is next.

``plan_deadlines`` turns a policy and the assignment time into concrete instants, computed
once when the SLA starts and stored with the lead: a timer only has to remember the next one.

Step numbers are **stable ids**, not positions in a queue: step 0 is always the first-contact
breach, step ``i`` (1, 2, …) is ``policy.steps[i - 1]``. The lead keeps the set of steps it has
applied; together with the lead id and its cycle that makes every step fire at most once per
``(lead, cycle, step)``, however many times a timer or a replayed ``SlaDue`` delivers it
(``step_id`` is the deterministic id to put on the command and its webhook).

The ladder is anchored on the cycle's first assignment: a reassignment (itself a step) does not
restart it, so "alert the manager 5 minutes after the deadline" holds whoever has the lead by then.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, TypeAlias

from sla.calendar import BusinessCalendar, require_aware
from sla.policy import SlaPolicy, StepKind

__all__ = [
    "BREACH_STEP",
    "DeadlineKind",
    "Deadline",
    "plan_deadlines",
    "next_due",
    "overdue",
    "timer_key",
    "step_id",
]

BREACH_STEP: Final = 0
"""The step id of the first-contact deadline itself (the SLA is breached; the rep is late)."""

DeadlineKind: TypeAlias = StepKind | Literal["breach"]


@dataclass(frozen=True, slots=True)
class Deadline:
    """Step ``step`` (a stable id, see the module docstring) of kind ``kind`` falls due at ``due_at``."""

    step: int
    kind: DeadlineKind
    due_at: datetime


def plan_deadlines(policy: SlaPolicy, calendar: BusinessCalendar | None, assigned_at: datetime) -> tuple[Deadline, ...]:
    """The breach deadline and every escalation step's due time, in firing order.

    With ``policy.business_hours`` and a calendar, every offset is business time counted from
    ``assigned_at`` (an assignment outside hours starts counting at the next opening);
    otherwise wall-clock time. Each due time is computed from ``assigned_at`` directly, not
    chained from the previous one, so no rounding accumulates along the ladder.
    """
    require_aware(assigned_at, "assigned_at")
    offsets: list[tuple[DeadlineKind, float]] = [("breach", policy.first_contact_s)]
    offsets += [(step.kind, policy.first_contact_s + step.after_s) for step in policy.steps]
    business = calendar if policy.business_hours else None
    deadlines = []
    for step, (kind, seconds) in enumerate(offsets):
        due = (business.add_business_seconds(assigned_at, seconds) if business is not None
               else assigned_at + timedelta(seconds=seconds))
        deadlines.append(Deadline(step=step, kind=kind, due_at=due))
    return tuple(deadlines)


def next_due(deadlines: Iterable[Deadline], done_steps: frozenset[int]) -> Deadline | None:
    """The earliest deadline whose step has not been applied yet (``None``: the ladder is done)."""
    pending = [d for d in deadlines if d.step not in done_steps]
    return min(pending, key=_order, default=None)


def overdue(deadlines: Iterable[Deadline], done_steps: frozenset[int], now: datetime) -> tuple[Deadline, ...]:
    """Every deadline due at ``now`` or before and not yet applied, in firing order.

    After an outage several steps may be due at once; the lead agent applies them in this order
    (each one idempotently), so the history still reads remind → reassign → alert → release.
    """
    require_aware(now, "now")
    return tuple(sorted((d for d in deadlines if d.step not in done_steps and d.due_at <= now), key=_order))


def _order(deadline: Deadline) -> tuple[datetime, int]:
    return (deadline.due_at, deadline.step)


def timer_key(lead_id: str, cycle: int) -> str:
    """The ``TimerIndex`` key of a lead's SLA in one cycle: one pending timer per lead and cycle."""
    return f"{lead_id}:{cycle}"


def step_id(lead_id: str, cycle: int, step: int) -> str:
    """The deterministic id of one step of one cycle of one lead (for ``SlaDue`` and its effects)."""
    return f"{lead_id}:{cycle}:sla:{step}"

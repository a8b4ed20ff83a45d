"""SLA policies as plain data: the first-contact deadline, the escalation ladder, who a policy covers.

A policy says how long a rep has to make first contact with a newly assigned lead and what
happens, step by step, when nobody does. Every ``EscalationStep.after_s`` is measured from the
**first-contact deadline** (not from the assignment): ``after_s=0`` fires at the deadline
itself, ``after_s=120`` two minutes later. When ``business_hours`` is set, both the deadline and
the offsets are counted in the team's business time (see ``sla.calendar``), otherwise on the
wall clock.

Steps must be listed in the order they fire (``after_s`` never decreasing), so a step's
position is also its place in time. ``sla.ladder`` numbers them 1, 2, 3, … (0 is the breach);
those numbers are the stable ids that make each step fire at most once per (lead, cycle, step).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, get_args

__all__ = [
    "StepKind",
    "STEP_KINDS",
    "EscalationStep",
    "SlaPolicy",
    "DEFAULT_POLICY",
    "select_policy",
]

StepKind: TypeAlias = Literal["remind", "reassign", "alert_manager", "release_to_pool"]
"""What a step does when it falls due:

* ``remind`` — a ``lead.reminder`` webhook to the rep holding the lead now;
* ``reassign`` — route the lead to the next eligible rep, excluding everyone who held it
  this cycle, and tell both reps (``lead.reassigned`` / ``lead.assigned``);
* ``alert_manager`` — a ``lead.escalated`` webhook to the team's manager;
* ``release_to_pool`` — take the lead from its rep and put it in the team's overflow pool.
"""

STEP_KINDS: Final[tuple[StepKind, ...]] = get_args(StepKind)


def _seconds(value: float, what: str, *, positive: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise ValueError(f"{what} must be a finite number of seconds, {bound} (got {value!r})")
    return value


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """One rung of the ladder: do ``kind`` ``after_s`` seconds after the first-contact deadline."""

    kind: StepKind
    after_s: float

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise ValueError(f"unknown escalation step {self.kind!r}; choose one of {', '.join(STEP_KINDS)}")
        object.__setattr__(self, "after_s", _seconds(self.after_s, f"{self.kind}: after_s"))


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """A first-contact SLA and its escalation ladder, plus the leads it covers.

    ``tiers``, ``sources`` and ``teams`` are match criteria: a lead matches when, for each one
    that is not empty, its value is listed (empty means any).
    """

    name: str
    first_contact_s: float
    steps: tuple[EscalationStep, ...]
    business_hours: bool = False
    tiers: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an SLA policy needs a name")
        object.__setattr__(self, "first_contact_s",
                           _seconds(self.first_contact_s, f"policy {self.name!r}: first_contact_s", positive=True))
        object.__setattr__(self, "steps", tuple(self.steps))
        for before, after in zip(self.steps, self.steps[1:]):
            if after.after_s < before.after_s:
                raise ValueError(
                    f"policy {self.name!r}: steps must be listed in the order they fire; "
                    f"{after.kind!r} (after {after.after_s:g} s) comes after {before.kind!r} "
                    f"(after {before.after_s:g} s)")
        for label in ("tiers", "sources", "teams"):
            object.__setattr__(self, label, tuple(getattr(self, label)))

    def matches(self, *, team: str, source: str | None, tier: str | None) -> bool:
        """Whether a lead of this team, source and tier falls under this policy."""
        return (_covers(self.teams, team) and _covers(self.sources, source) and _covers(self.tiers, tier))


def _covers(allowed: tuple[str, ...], value: str | None) -> bool:
    return not allowed or (value is not None and value in allowed)


DEFAULT_POLICY: Final = SlaPolicy(
    name="default",
    first_contact_s=300.0,
    steps=(
        EscalationStep("remind", 0.0),            # at the deadline: nudge the rep
        EscalationStep("reassign", 120.0),        # 2 min later: next rep, previous ones excluded
        EscalationStep("alert_manager", 300.0),   # 5 min later: the manager hears of it
        EscalationStep("release_to_pool", 600.0),  # 10 min later: into the team's overflow pool
    ),
)
"""Used when no configured policy matches: 5 minutes to first contact, then the full ladder."""


def select_policy(
    policies: Iterable[SlaPolicy],
    *,
    team: str,
    source: str | None,
    tier: str | None,
    default: SlaPolicy = DEFAULT_POLICY,
) -> SlaPolicy:
    """The first policy (in configuration order) that matches the lead, else ``default``.

    Order is the manager's tool: put the specific policies (a tier, a source) before the
    broad ones, exactly like routing rules.
    """
    for policy in policies:
        if policy.matches(team=team, source=source, tier=tier):
            return policy
    return default

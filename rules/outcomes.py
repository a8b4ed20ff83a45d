"""The won/lost table that feeds scoring: outcomes by source, segment and rep, with smoothed win rates.

Pure. One ``OutcomeBoard`` holds a ``Tally`` per key (``source:<name>``, ``segment:<name>``,
``rep:<id>``); the outcomes agent folds each ``RecordOutcome`` into it and scoring reads a
snapshot. A win rate is smoothed toward a prior (a Beta prior worth ``prior_weight`` deals), so
one lost deal moves little and a run of them moves a lot. A lost reason such as "no budget" or
"bad fit" says the *segment* was wrong, so it counts more than one loss there.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

__all__ = [
    "Tally",
    "OutcomeBoard",
    "LearningPolicy",
    "RecordOutcome",
    "record_outcome",
    "win_rate",
    "adjustments",
    "DEFAULT_REASON_WEIGHTS",
]

#: Lost reasons that say the segment was a poor fit, and how many losses each counts for it.
DEFAULT_REASON_WEIGHTS: Mapping[str, float] = {"no budget": 2.0, "bad fit": 2.0, "no need": 1.5,
                                               "too small": 1.5}


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    won: float = 0.0
    lost: float = 0.0

    @property
    def deals(self) -> float:
        return self.won + self.lost


@dataclass(frozen=True, slots=True, kw_only=True)
class LearningPolicy:
    """How outcomes become points."""

    #: The win rate assumed before any outcome (and what a score adjustment is measured against).
    prior_rate: float = 0.25
    #: How many deals the prior is worth: higher means slower to move.
    prior_weight: float = 8.0
    #: Most points one dimension (source, segment) can add or take away.
    max_points: int = 15
    #: Lost reasons (lower-case substrings) counting extra losses for the segment.
    reason_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REASON_WEIGHTS))
    #: Most keys the board keeps (the least recently updated go first): a bounded table value.
    max_keys: int = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordOutcome:
    """A deal closed (on the ``outcomes`` topic, one key): fold it into the board once."""

    outcome_id: str
    lead_id: str
    won: bool
    source: str
    segment: str
    rep_id: str | None
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeBoard:
    """Tallies by key, in least-recently-updated order, plus the ids already counted (bounded)."""

    tallies: dict[str, Tally] = field(default_factory=dict)
    recent: tuple[str, ...] = ()
    updated_at: datetime | None = None


def _reason_weight(reason: str | None, policy: LearningPolicy) -> float:
    text = (reason or "").strip().lower()
    return max((w for r, w in policy.reason_weights.items() if r in text), default=1.0) if text else 1.0


def record_outcome(board: OutcomeBoard | None, outcome: RecordOutcome, policy: LearningPolicy) -> OutcomeBoard:
    """``board`` with ``outcome`` counted (a replayed outcome id changes nothing)."""
    board = board or OutcomeBoard()
    if outcome.outcome_id in board.recent:
        return board
    keys = [(f"source:{outcome.source}", 1.0), (f"segment:{outcome.segment}", 1.0)]
    if outcome.rep_id:
        keys.append((f"rep:{outcome.rep_id}", 1.0))
    tallies = dict(board.tallies)
    for key, weight in keys:
        old = tallies.pop(key, Tally())  # re-inserted last: the most recently updated
        if outcome.won:
            tallies[key] = replace(old, won=old.won + weight)
        else:
            extra = _reason_weight(outcome.reason, policy) if key.startswith("segment:") else 1.0
            tallies[key] = replace(old, lost=old.lost + weight * extra)
    while len(tallies) > policy.max_keys:
        tallies.pop(next(iter(tallies)))
    return OutcomeBoard(tallies=tallies, recent=(board.recent + (outcome.outcome_id,))[-256:],
                        updated_at=outcome.at)


def win_rate(tally: Tally, policy: LearningPolicy) -> float:
    """The smoothed win rate: ``(won + prior·weight) / (deals + weight)``."""
    return (tally.won + policy.prior_rate * policy.prior_weight) / (tally.deals + policy.prior_weight)


def _points(rate: float, policy: LearningPolicy) -> int:
    prior = policy.prior_rate
    # Measured against the room on each side of the prior: 0 → -max, prior → 0, 1 → +max.
    scaled = (rate - prior) / (1 - prior) if rate >= prior else (rate - prior) / prior
    return round(policy.max_points * scaled)


def adjustments(board: OutcomeBoard, *, source: str, segment: str,
                policy: LearningPolicy) -> tuple[tuple[int, str], ...]:
    """Points (and why) for the lead's source and segment from their smoothed win rates."""
    found = []
    for kind, name in (("source", source), ("segment", segment)):
        tally = board.tallies.get(f"{kind}:{name}")
        if tally is None or tally.deals == 0:
            continue
        rate = win_rate(tally, policy)
        points = _points(rate, policy)
        if points:
            found.append((points, f"{kind} {name} win rate {rate:.0%} "
                                  f"({tally.won:g} won, {tally.lost:g} lost)"))
    return tuple(found)

"""The won/lost table that feeds scoring: outcomes by source, segment and rep, with smoothed win rates.

Pure. One ``OutcomeBoard`` holds a ``Tally`` per key (``source:<name>``, ``segment:<name>``,
``rep:<id>``); the outcomes agent folds each ``RecordOutcome`` into it and scoring reads a
snapshot. A win rate is smoothed toward a prior (a Beta prior worth ``prior_weight`` deals), so
one lost deal moves little and a run of them moves a lot. A lost reason such as "no budget" or
"bad fit" says the *segment* was wrong, so it counts more than one loss there.

A deal the CRM closes the other way later (lost, then reopened and won; or a won corrected to
lost) is *moved*, not counted twice: the lead sends a correcting ``RecordOutcome`` whose
``corrects`` is the outcome the board counted for that opportunity (its source, segment, rep and
loss weight), and ``record_outcome`` takes that off as it counts the new one. A deal the CRM
reopens (a stage change after its close) is taken off the board: a ``RecordOutcome`` with
``reopened`` and the close in ``corrects``, counting nothing; its later won or lost counts as a
first close.

The whole board travels as one Kafka record (``outcomes.board``, and the table's changelog), so
its size is bounded whatever the names: at most ``max_keys`` keys of at most ``MAX_KEY_BYTES``
encoded bytes each (``board_key`` shortens a longer one) and ``RECENT_IDS`` outcome ids of at most
``MAX_ID_BYTES``; ``tests/agents/test_outcomes_agent.py`` encodes the largest such board.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache

__all__ = [
    "Tally",
    "OutcomeBoard",
    "LearningPolicy",
    "RecordOutcome",
    "CountedOutcome",
    "record_outcome",
    "reason_weight",
    "older_reason_weight",
    "win_rate",
    "adjustments",
    "board_key",
    "DEFAULT_REASON_WEIGHTS",
    "MAX_KEY_BYTES",
    "MAX_ID_BYTES",
    "RECENT_IDS",
]

#: Lost reasons that say the segment was a poor fit, and how many losses each counts for it.
DEFAULT_REASON_WEIGHTS: Mapping[str, float] = {"no budget": 2.0, "bad fit": 2.0, "no need": 1.5,
                                               "too small": 1.5}


#: The most bytes a board key takes in the encoded board (JSON, UTF-8). The keys the inputs give in
#: practice are shorter and kept as they are (a source of 100 ASCII characters, none a quote, a
#: backslash or a control character, takes 107 bytes; a rep id at most 68); a longer one (a source
#: of 100 non-ASCII characters: up to 407 bytes, a segment with a 200-character industry: over
#: 1200 if JSON escapes them) is shortened by ``board_key``. 2000 keys of 200 bytes: a board of
#: about 0.55 MB at most, well under Kafka's 1 MB record.
MAX_KEY_BYTES = 200
#: The most bytes an outcome id takes in ``recent`` (leadflow's are ``op_<24 hex>:won``, 31).
MAX_ID_BYTES = 64
#: How many outcome ids the board keeps to tell a replay.
RECENT_IDS = 256
_DIGEST_HEX = 16


def _encoded_bytes(ch: str) -> int:
    """The most bytes one character takes in a JSON string: a control character is escaped
    (``\\u0001``: 6), a quote or backslash 2, anything else its UTF-8 bytes."""
    if ch < " ":
        return 6
    if ch in '"\\':
        return 2
    return len(ch.encode("utf-8", "surrogatepass"))


def _bounded(text: str, limit: int) -> str:
    """``text`` when it takes at most ``limit`` encoded bytes; else the longest prefix of it that
    fits with ``~`` and 16 hex digits of the SHA-256 of the whole ``text`` (two long texts that
    share the prefix stay two)."""
    if len(text) * 6 <= limit:
        return text  # short enough whatever its characters (the usual case: no need to look)
    sizes = [_encoded_bytes(ch) for ch in text]
    if sum(sizes) <= limit:
        return text
    room, cut = limit - 1 - _DIGEST_HEX, 0
    while cut < len(text) and room >= sizes[cut]:
        room -= sizes[cut]
        cut += 1
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_HEX]
    return f"{text[:cut]}~{digest}"


def board_key(kind: str, name: str) -> str:
    """The board's key for a source, segment or rep: ``<kind>:<name>``, shortened to
    ``MAX_KEY_BYTES`` encoded bytes when longer (its longest prefix that fits, ``~`` and 16 hex
    digits of the SHA-256 of the whole key). Counting and scoring both look names up through it."""
    return _bounded(f"{kind}:{name}", MAX_KEY_BYTES)


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
    #: Lost reasons counting extra losses for the segment: a reason counts when it *begins* with
    #: one of these phrases as whole words, case and spacing aside (``reason_weight``).
    reason_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REASON_WEIGHTS))
    #: Most keys the board keeps (the least recently updated go first): a bounded table value.
    max_keys: int = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class CountedOutcome:
    """An outcome as the board counted it: what a correction takes off again."""

    won: bool
    source: str
    segment: str
    rep_id: str | None
    reason: str | None = None
    #: The loss's weight on the segment as counted; ``None`` (a loss counted before weights were
    #: kept, so by the older matching): worked out from ``reason`` as that matching did
    #: (``older_reason_weight``), so a correction takes off what was counted.
    weight: float | None = None


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
    #: A loss's weight on the segment, as the lead worked it out (``reason_weight``) and keeps
    #: for a later correction; ``None`` (a command from an older worker): from ``reason``.
    weight: float | None = None
    #: A correction (the deal closed the other way before): the outcome counted then, taken off
    #: once as this one is counted. ``None``: a first outcome. Defaults keep older commands readable.
    corrects: CountedOutcome | None = None
    #: The deal was reopened: ``corrects`` comes off and this outcome is not counted. The lead
    #: repeats ``corrects`` in the other fields. An outcomes agent older than this field does
    #: not leave the board as it was: its codec drops ``reopened`` (and, before 7d86791,
    #: ``corrects``), so it counts the reopen as another close of the same kind. Hence no CRM
    #: events while old and new workers run side by side (README, "Deploying").
    reopened: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeBoard:
    """Tallies by key, in least-recently-updated order, plus the ids already counted (bounded)."""

    tallies: dict[str, Tally] = field(default_factory=dict)
    recent: tuple[str, ...] = ()
    updated_at: datetime | None = None


@lru_cache(maxsize=256)
def _leading(phrase: str) -> re.Pattern[str]:
    words = phrase.strip().lower().split()
    return re.compile(r"[\W_]*" + r"\s+".join(map(re.escape, words)) + r"(?!\w)")


def reason_weight(reason: str | None, policy: LearningPolicy) -> float:
    """How many losses a lost deal counts for its segment: the largest weight of a phrase the
    reason begins with, as whole words (case, spacing and leading punctuation aside), else 1.

    A CRM's loss reason is a picklist value ("No Budget") or a sentence that starts with one
    ("No budget this year"). Only the beginning counts, and only whole words: a phrase inside a
    word ("bad fitting room", "no needs analysis") is another reason, and one further on may be
    quoted or denied ("Not a 'no budget' case: lost to competitor").
    """
    text = (reason or "").lower()
    return max((w for r, w in policy.reason_weights.items() if r.strip() and _leading(r).match(text)),
               default=1.0)


def older_reason_weight(reason: str | None, policy: LearningPolicy) -> float:
    """A loss's segment weight as leadflow worked it out before ``reason_weight`` matched leading
    phrases (a62c64e): the largest weight of a phrase found *anywhere* in the reason.

    Only a correction or a reopen of a loss without a kept weight uses it (``CountedOutcome.weight``
    ``None``): a loss closed before 7d86791, the same release, which an outcomes agent of that
    time counted this way. Taking off the weight the new matching gives would leave a phantom
    loss ("Lost to competitor, not a 'no budget' case": counted 2, taken off 1). This is the safer
    default: outside a rolling upgrade it is exactly what was counted. Inside one (an older lead
    agent's loss counted by a newer outcomes agent, by ``reason_weight``) it can take off more
    than was counted, clamped at 0 per key; the README's "Deploying" says to keep CRM events out
    of that window.
    """
    text = (reason or "").lower()
    return max((w for r, w in policy.reason_weights.items() if r in text), default=1.0) if text else 1.0


def _count(tallies: dict[str, Tally], outcome: RecordOutcome | CountedOutcome, sign: float,
           policy: LearningPolicy) -> None:
    """Add (``sign`` 1) or take off (-1) one outcome's counts by source, segment and rep, in place.

    Taking off never goes below 0, and a key the board no longer holds (evicted) is left out.
    """
    keys = [board_key("source", outcome.source), board_key("segment", outcome.segment)]
    if outcome.rep_id:
        keys.append(board_key("rep", outcome.rep_id))
    for key in keys:
        if sign < 0 and key not in tallies:
            continue
        old = tallies.pop(key, Tally())  # re-inserted last: the most recently updated
        if outcome.won:
            tallies[key] = replace(old, won=max(old.won + sign, 0.0))
            continue
        extra = 1.0
        if key.startswith("segment:") and outcome.weight is not None:
            extra = outcome.weight
        elif key.startswith("segment:"):  # a loss an older lead agent sent: taken off as the board then counted it
            extra = (older_reason_weight if sign < 0 else reason_weight)(outcome.reason, policy)
        tallies[key] = replace(old, lost=max(old.lost + sign * extra, 0.0))


def record_outcome(board: OutcomeBoard | None, outcome: RecordOutcome, policy: LearningPolicy) -> OutcomeBoard:
    """``board`` with ``outcome`` counted (a replayed outcome id changes nothing); a correction
    (``outcome.corrects``) also takes off what the board counted for the deal before, and a
    reopened deal (``outcome.reopened``) only that."""
    board = board or OutcomeBoard()
    outcome_id = _bounded(outcome.outcome_id, MAX_ID_BYTES)
    if outcome_id in board.recent:
        return board
    tallies = dict(board.tallies)
    if outcome.corrects is not None:
        _count(tallies, outcome.corrects, -1.0, policy)
    if not outcome.reopened:
        _count(tallies, outcome, 1.0, policy)
    while len(tallies) > policy.max_keys:
        tallies.pop(next(iter(tallies)))
    return OutcomeBoard(tallies=tallies, recent=(board.recent + (outcome_id,))[-RECENT_IDS:],
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
        tally = board.tallies.get(board_key(kind, name))
        if tally is None or tally.deals == 0:
            continue
        rate = win_rate(tally, policy)
        points = _points(rate, policy)
        if points:
            found.append((points, f"{kind} {name} win rate {rate:.0%} "
                                  f"({tally.won:g} won, {tally.lost:g} lost)"))
    return tuple(found)

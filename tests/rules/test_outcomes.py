"""The won/lost board: smoothed win rates by source, segment and rep, and how they move scores."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest

from rules.capture import CapturedLead
from rules.enrichment import enrich
from rules.outcomes import (
    MAX_ID_BYTES,
    MAX_KEY_BYTES,
    LearningPolicy,
    OutcomeBoard,
    RecordOutcome,
    Tally,
    adjustments,
    board_key,
    record_outcome,
    win_rate,
)
from rules.scoring import ScoringModel, score_lead

AT = datetime(2026, 3, 2, 10, tzinfo=UTC)
POLICY = LearningPolicy()


def outcome(n: int, *, won: bool, source: str = "webinar", segment: str = "mid/software",
            reason: str | None = None, rep: str | None = "ana") -> RecordOutcome:
    return RecordOutcome(outcome_id=f"op{n}:{'won' if won else 'lost'}", lead_id=f"l{n}", won=won, source=source,
                         segment=segment, rep_id=rep, reason=reason, at=AT)


def board_of(*outcomes: RecordOutcome, policy: LearningPolicy = POLICY) -> OutcomeBoard:
    board = None
    for o in outcomes:
        board = record_outcome(board, o, policy)
    assert board is not None
    return board


def test_outcomes_are_counted_by_source_segment_and_rep_once() -> None:
    board = board_of(outcome(1, won=True), outcome(2, won=False), outcome(2, won=False))  # a replay
    assert board.tallies == {"source:webinar": Tally(won=1, lost=1), "segment:mid/software": Tally(won=1, lost=1),
                             "rep:ana": Tally(won=1, lost=1)}


def test_lost_reasons_that_blame_the_segment_count_more_there_only() -> None:
    board = board_of(outcome(1, won=False, reason="No budget this year"), outcome(2, won=False, reason="Bad fit"),
                     outcome(3, won=False, reason="went with a competitor"))
    assert board.tallies["segment:mid/software"] == Tally(won=0, lost=5)
    assert board.tallies["source:webinar"] == Tally(won=0, lost=3)


def test_the_win_rate_is_smoothed_toward_the_prior() -> None:
    assert win_rate(Tally(), POLICY) == 0.25
    assert win_rate(Tally(won=1), POLICY) == (1 + 2) / 9
    assert win_rate(Tally(won=100, lost=0), POLICY) > 0.9


def test_a_run_of_losses_pushes_the_segment_down_and_wins_push_it_up() -> None:
    losses = board_of(*(outcome(n, won=False, reason="no budget") for n in range(6)))
    (points, why), (seg_points, seg_why) = adjustments(losses, source="webinar", segment="mid/software", policy=POLICY)
    assert why.startswith("source webinar win rate") and -15 <= points < 0
    assert seg_points < points  # the reason weighs on the segment
    wins = board_of(*(outcome(n, won=True) for n in range(6)))
    assert all(p > 0 for p, _ in adjustments(wins, source="webinar", segment="mid/software", policy=POLICY))
    assert adjustments(wins, source="other", segment="other", policy=POLICY) == ()


def test_scoring_reads_the_board() -> None:
    lead = CapturedLead(email="maria@northwind.example", source="webinar", title="Director of IT",
                        attributes={"employees": "120", "industry": "software"})
    model = ScoringModel()
    before = score_lead(lead, enrich(lead), 1, model)
    board = board_of(*(outcome(n, won=False, reason="bad fit") for n in range(5)))
    after = score_lead(lead, enrich(lead), 1, model, board)
    assert after.value < before.value and after.outcomes < 0
    assert any(r.startswith("-") and "segment mid/software win rate" in r for r in after.reasons)


def test_the_board_stays_bounded() -> None:
    policy = replace(POLICY, max_keys=4)
    board = board_of(*(outcome(n, won=True, source=f"s{n}", segment=f"g{n}", rep=None) for n in range(10)),
                     policy=policy)
    assert len(board.tallies) == 4 and "source:s9" in board.tallies and "source:s0" not in board.tallies


def _encoded(text: str) -> int:
    return len(orjson.dumps(text)) - 2  # without the quotes


def test_a_usual_name_is_its_own_key() -> None:
    longest_bulk_source = "a-" * 50  # the bulk API's longest: 100 letters, digits, '_', '.' or '-'
    assert board_key("source", longest_bulk_source) == f"source:{longest_bulk_source}"
    assert board_key("rep", "r" * 64) == f"rep:{'r' * 64}"
    assert board_key("segment", "mid/financial services") == "segment:mid/financial services"
    assert board_key("source", "Ünïcödé wébinar") == "source:Ünïcödé wébinar"


@pytest.mark.parametrize("name", ["\U0001F600" * 100, "\x01" * 200, '"' * 150, "é" * 99 + "\x01" * 30])
def test_a_long_name_gets_a_shortened_key_that_fits_and_stays_its_own(name: str) -> None:
    key = board_key("source", name)
    assert _encoded(key) <= MAX_KEY_BYTES
    assert _encoded(key) > MAX_KEY_BYTES - 17 - 6  # as much of the name as fits
    assert key.startswith("source:") and name.startswith(key[len("source:"):key.rindex("~")])
    assert board_key("source", name) == key  # the same name, the same key
    assert board_key("source", name + "x") != key  # another name with the same prefix: another key


def test_a_long_source_is_counted_and_scored_under_its_shortened_key() -> None:
    source = "\U0001F600" * 100
    board = board_of(*(outcome(n, won=False, source=source) for n in range(6)))
    assert board.tallies[board_key("source", source)] == Tally(won=0, lost=6)
    [(points, why), _] = adjustments(board, source=source, segment="mid/software", policy=POLICY)
    assert points < 0 and why.startswith(f"source {source} win rate")


def test_a_long_outcome_id_is_kept_short_and_its_replay_still_counts_once() -> None:
    long_id = RecordOutcome(outcome_id="x" * 1000, lead_id="l1", won=True, source="webinar", segment="mid",
                            rep_id=None, reason=None, at=AT)
    board = board_of(long_id, long_id)
    assert board.tallies["source:webinar"] == Tally(won=1)
    assert [len(i) for i in board.recent] == [MAX_ID_BYTES]

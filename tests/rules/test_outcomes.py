"""The won/lost board: smoothed win rates by source, segment and rep, and how they move scores."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from rules.capture import CapturedLead
from rules.enrichment import enrich
from rules.outcomes import LearningPolicy, OutcomeBoard, RecordOutcome, Tally, adjustments, record_outcome, win_rate
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

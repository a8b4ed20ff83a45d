"""The won/lost board: a correction moves a deal instead of counting a second one (pure)."""
from __future__ import annotations

from dataclasses import replace

from rules.outcomes import CountedOutcome, RecordOutcome, Tally, record_outcome
from tests.rules.test_outcomes import AT, POLICY, board_of, outcome

NO_BUDGET_LOSS = replace(outcome(1, won=False, reason="No budget this year"), weight=2.0)
AS_COUNTED = CountedOutcome(won=False, source="webinar", segment="mid/software", rep_id="ana",
                            reason="No budget this year", weight=2.0)


def correction(*, won: bool, n: int = 1, corrects: CountedOutcome = AS_COUNTED, **fields: object) -> RecordOutcome:
    first = outcome(1, won=won)
    return replace(first, outcome_id=f"{first.outcome_id}:{n}", corrects=corrects, **fields)  # type: ignore[arg-type]


def test_a_correction_moves_the_deal() -> None:
    other = outcome(2, won=False)
    corrected = board_of(NO_BUDGET_LOSS, other, correction(won=True))
    assert corrected.tallies == board_of(other, outcome(1, won=True)).tallies
    assert corrected.tallies["segment:mid/software"] == Tally(won=1, lost=1)
    assert corrected.tallies["rep:ana"] == Tally(won=1, lost=1)


def test_a_replayed_correction_is_dropped_by_its_id() -> None:
    board = board_of(NO_BUDGET_LOSS, correction(won=True))
    assert record_outcome(board, correction(won=True), POLICY) is board


def test_won_then_lost_then_won_again_leaves_one_won_deal() -> None:
    won = outcome(1, won=True)
    back_to_lost = correction(won=False, reason="bad fit", weight=2.0,
                              corrects=CountedOutcome(won=True, source="webinar", segment="mid/software", rep_id="ana"))
    won_again = correction(won=True, n=2, corrects=replace(AS_COUNTED, reason="bad fit"))
    assert board_of(won, back_to_lost).tallies["segment:mid/software"] == Tally(won=0, lost=2)
    assert board_of(won, back_to_lost, won_again).tallies == board_of(won).tallies


def test_a_loss_counted_before_weights_were_kept_comes_off_by_its_reason() -> None:
    old_loss = outcome(1, won=False, reason="No budget this year")  # no weight: the board worked it out
    corrected = board_of(old_loss, correction(won=True, corrects=replace(AS_COUNTED, weight=None)))
    assert corrected.tallies["segment:mid/software"] == Tally(won=1, lost=0)


def test_the_weight_the_lead_sends_is_the_one_counted() -> None:
    """Whatever the board's policy says now: the correction must take off exactly what was counted."""
    board = board_of(NO_BUDGET_LOSS, policy=replace(POLICY, reason_weights={}))
    assert board.tallies["segment:mid/software"] == Tally(won=0, lost=2)


def test_a_correction_of_a_tally_the_board_no_longer_holds_goes_neither_negative_nor_back() -> None:
    policy = replace(POLICY, max_keys=3)
    board = board_of(NO_BUDGET_LOSS, outcome(2, won=True, source="s2", segment="g2", rep=None), policy=policy)
    assert "source:webinar" not in board.tallies  # evicted
    corrected = record_outcome(board, correction(won=True), policy)
    assert all(t.won >= 0 and t.lost >= 0 for t in corrected.tallies.values())
    assert corrected.tallies["source:webinar"] == Tally(won=1)


def test_an_outcome_from_an_older_worker_still_counts() -> None:
    old = RecordOutcome(outcome_id="op9:lost", lead_id="l9", won=False, source="webinar", segment="mid/software",
                        rep_id=None, reason="no budget", at=AT)
    assert (old.weight, old.corrects) == (None, None)
    assert board_of(old).tallies["segment:mid/software"] == Tally(won=0, lost=2)


def test_a_loss_counted_by_the_older_matching_comes_off_as_counted() -> None:
    """A loss counted before this release (no weight kept) was weighted by the older matching, a
    phrase anywhere in the reason (2 here); corrected to won now, it comes off with that weight,
    not the leading-phrase one (1), which left a phantom loss (review s18-b F5)."""
    reason = "Lost to competitor, not a 'no budget' case"
    # As an outcomes agent before a62c64e counted it (the phrase anywhere in the reason: 2).
    counted = board_of(replace(outcome(1, won=False, reason=reason), weight=2.0))
    assert counted.tallies["segment:mid/software"] == Tally(won=0, lost=2)
    corrected = record_outcome(counted, correction(won=True, corrects=replace(AS_COUNTED, reason=reason, weight=None)),
                               POLICY)
    assert corrected.tallies["segment:mid/software"] == Tally(won=1, lost=0)

"""Which lost reasons weigh on the segment: a phrase the reason begins with, as whole words (pure)."""
from __future__ import annotations

import pytest

from rules.outcomes import LearningPolicy, Tally, reason_weight
from tests.rules.test_outcomes import POLICY, board_of, outcome


@pytest.mark.parametrize("reason", ["Not a 'no budget' case: lost to competitor", "no needs analysis done",
                                    "bad fitting room"])
def test_a_reason_weighs_only_when_it_begins_with_a_whole_phrase(reason: str) -> None:
    assert reason_weight(reason, POLICY) == 1.0
    assert board_of(outcome(1, won=False, reason=reason)).tallies["segment:mid/software"] == Tally(won=0, lost=1)


@pytest.mark.parametrize(("reason", "weight"), [
    ("No budget this year", 2.0), ("Bad Fit", 2.0), ("  no   budget", 2.0), ('"No budget"', 2.0),
    ("no need", 1.5), ("Too small: 3 people", 1.5), ("went with a competitor", 1.0), (None, 1.0), ("", 1.0),
])
def test_picklist_values_and_sentences_that_start_with_them_weigh(reason: str | None, weight: float) -> None:
    assert reason_weight(reason, POLICY) == weight


def test_a_configured_phrase_matches_whatever_its_case_and_spacing() -> None:
    assert reason_weight("no budget", LearningPolicy(reason_weights={"No  Budget ": 3.0})) == 3.0

"""Lifecycle statuses: every allowed transition, and invalid ones rejected with a clear error."""
from __future__ import annotations

import pytest

from rules.lifecycle import STATUSES, TRANSITIONS, LifecycleError, advance, check


@pytest.mark.parametrize(("current", "target"), [
    ("new", "mql"), ("mql", "working"), ("working", "sql"), ("sql", "converted"), ("converted", "won"),
    ("converted", "recycled"), ("new", "nurture"), ("nurture", "mql"), ("recycled", "mql"), ("mql", "disqualified"),
    ("recycled", "won"), ("won", "recycled"),  # the CRM's corrections: a lost deal reopened and won, and back
    ("recycled", "converted"), ("won", "converted"),  # the CRM reopened the closed deal (a stage change)
])
def test_the_path_and_its_side_roads_are_allowed(current: str, target: str) -> None:
    assert check(current, target) is None and advance(current, target) == target


@pytest.mark.parametrize(("current", "target", "message"), [
    ("nurture", "sql", "a nurture lead cannot become sql (from nurture: disqualified, mql)"),
    ("won", "mql", "a won lead cannot become mql (from won: converted, recycled)"),
    ("disqualified", "mql", "a disqualified lead cannot become mql (from disqualified: nothing (final))"),
    ("converted", "working", "a converted lead cannot become working (from converted: recycled, won)"),
    ("mql", "converted", "a mql lead cannot become converted (from mql: disqualified, nurture, recycled, sql, "
                         "unresponsive, working)"),
    ("new", "closed", "unknown status 'closed' (expected one of new, mql, working, sql, converted, won, nurture, "
                      "disqualified, unresponsive, recycled)"),
])
def test_invalid_transitions_are_rejected_saying_why(current: str, target: str, message: str) -> None:
    assert check(current, target) == message
    with pytest.raises(LifecycleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        advance(current, target)


def test_every_status_has_a_row_and_every_target_is_a_status() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(targets <= set(STATUSES) for targets in TRANSITIONS.values())

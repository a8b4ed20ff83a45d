"""``make test``'s runner (tests/suite.py): how the two runs' statuses make the suite's."""
from __future__ import annotations

import pytest

from tests.suite import NO_TESTS_COLLECTED, _overall


@pytest.mark.parametrize(("integration", "unit", "suite"), [
    (0, 0, 0),
    (1, 0, 1),
    (0, 1, 1),
    (2, 1, 2),  # an interrupted integration run says so first
    (NO_TESTS_COLLECTED, 0, 0),  # `-k` matched unit tests only
    (0, NO_TESTS_COLLECTED, 0),
    (NO_TESTS_COLLECTED, 1, 1),
    (NO_TESTS_COLLECTED, NO_TESTS_COLLECTED, NO_TESTS_COLLECTED),  # nothing ran: not a pass
])
def test_the_suite_fails_when_either_run_fails_and_passes_only_when_some_test_ran(
        integration: int, unit: int, suite: int) -> None:
    assert _overall(integration, unit) == suite

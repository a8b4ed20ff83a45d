"""The injected clock: timezone-aware always; the fake one moves only when told."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sla.clock import Clock, FakeClock, SystemClock


def test_fake_clock_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 1, 5, 9, 0))


def test_fake_clock_default_start_is_aware_and_still() -> None:
    clock = FakeClock()
    assert clock.now().tzinfo is not None
    assert clock.now() == clock.now()


@pytest.mark.parametrize(
    "start", [datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, 8, tzinfo=timezone(timedelta(hours=-5)))],
)
def test_fake_clock_keeps_its_start(start: datetime) -> None:
    assert FakeClock(start).now() == start


@pytest.mark.parametrize("steps", [[1], [0.5, 0.25], [60, 3600, 86400], [0]])
def test_fake_clock_advances(steps: list[float]) -> None:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    clock = FakeClock(start)
    for seconds in steps:
        moved = clock.advance(seconds)
        assert moved == clock.now()
    assert clock.now() == start + timedelta(seconds=sum(steps))
    assert clock.now().tzinfo is not None


def test_system_clock_is_aware_utc() -> None:
    clock: Clock = SystemClock()
    now = clock.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)


def test_both_clocks_satisfy_the_protocol() -> None:
    clocks: list[Clock] = [SystemClock(), FakeClock()]
    assert all(isinstance(c.now(), datetime) for c in clocks)

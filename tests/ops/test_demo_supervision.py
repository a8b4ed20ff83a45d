"""``leadflow run`` watches its worker: started again after a pause past its session (status 75),
any other exit shown and the demo stopped."""
from __future__ import annotations

import asyncio

import pytest

from leadflow.errors import LeadflowError
from ops.demo.launch import restarts_after, supervised
from streams.stall_guard import EXIT_STALLED


@pytest.mark.parametrize(("status", "restart"), [(EXIT_STALLED, True), (0, False), (1, False), (-9, False)])
def test_only_a_stalled_worker_is_restarted(status: int, restart: bool) -> None:
    assert restarts_after(status) is restart


async def test_a_stalled_worker_is_started_again_and_the_demo_goes_on() -> None:
    statuses: list[int | None] = [None, EXIT_STALLED, None, None]
    restarted: list[int] = []

    def exited() -> int | None:
        return statuses.pop(0) if statuses else None

    async def demo() -> str:
        await asyncio.sleep(0.1)
        return "done"

    assert await supervised(demo(), exited, restarted.append, poll_s=0.01) == "done"
    assert restarted == [EXIT_STALLED]


async def test_any_other_exit_stops_the_demo_naming_the_status() -> None:
    finished = asyncio.Event()

    async def demo() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            finished.set()

    with pytest.raises(LeadflowError, match="exited with status 1 "):
        await supervised(demo(), lambda: 1, lambda status: pytest.fail("restarted"), poll_s=0.01)
    assert finished.is_set()  # the demo's pieces were stopped (cancelled), not left running

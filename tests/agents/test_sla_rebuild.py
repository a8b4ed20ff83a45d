"""The SLA agent's index rebuild: a slice at a time, the lead agent's decisions kept, restarted by a rebalance."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from rules.commands import SlaDue
from rules.lead import SlaTimer
from streams.agents import sla
from streams.app import app
from streams.tables.sla_timers import sla_timers

from .conftest import Published, until

T = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ROWS = 35
SLICE = 10


def lead(i: int) -> str:
    return f"ld_{i:024x}"


def timer(i: int, due: datetime, step: int = 0) -> SlaTimer:
    return SlaTimer(lead_id=lead(i), cycle=1, step=step, due_at=due)


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, SlaTimer]]:
    """``sla_timers`` with ROWS rows (lead i due at T + i s), written to the store as a recovery leaves them;
    the worker settled after its first rebalance; slices of SLICE rows."""
    monkeypatch.setattr(sla, "_SLICE", SLICE)
    monkeypatch.setattr(app, "tables_settled", lambda: True)
    monkeypatch.setattr(app, "rebalancing_count", 1)
    earlier = dict(sla_timers.data.items())  # rows other agent tests left: set aside, put back after
    _empty()
    rows = {lead(i): timer(i, T + timedelta(seconds=i)) for i in range(ROWS)}
    for key, value in rows.items():
        sla_timers.data[key] = value
    sla.timer_index.clear()
    yield rows
    _empty()
    for key, value in earlier.items():
        sla_timers.data[key] = value
    sla.timer_index.clear()


def _empty() -> None:
    for key in list(sla_timers.data.keys()):
        del sla_timers.data[key]


def decide(i: int, value: SlaTimer | None) -> None:
    """What the lead agent does for lead i: write the table, then tell the index (``lead._keep_timer``)."""
    if value is None:
        sla_timers.data.pop(lead(i), None)
    else:
        sla_timers.data[lead(i)] = value
    sla.track(lead(i), value)


async def test_the_rebuild_yields_to_the_loop_between_slices(table: dict[str, SlaTimer]) -> None:
    task = asyncio.ensure_future(sla.rebuild_index(1))
    await asyncio.sleep(0)  # the rebuild reads one slice, then lets others run
    rebuild = sla._rebuilding
    assert not task.done() and rebuild is not None and rebuild.rows_read == SLICE
    assert await task == ROWS
    assert sla._rebuilding is None and len(sla.timer_index) == ROWS


async def test_decisions_made_during_the_rebuild_win_over_the_rows_read_later(table: dict[str, SlaTimer]) -> None:
    task = asyncio.ensure_future(sla.rebuild_index(1))
    await asyncio.sleep(0)
    assert sla._rebuilding is not None and sla._rebuilding.rows_read == SLICE
    decide(30, timer(30, T + timedelta(hours=1), step=1))  # re-armed: its row, read later, is older
    decide(31, None)                                         # contacted: no deadline left
    decide(3, timer(3, T + timedelta(hours=2), step=1))      # its row was read already
    decide(99, timer(99, T + timedelta(seconds=0.5)))        # a new lead, not in the snapshot
    assert await task == ROWS + 1 - 1
    index = sla.timer_index
    assert index.get(lead(30)) == ((T + timedelta(hours=1)).timestamp(), (1, 1))
    assert lead(31) not in index
    assert index.get(lead(3)) == ((T + timedelta(hours=2)).timestamp(), (1, 1))
    fired = index.pop_due((T + timedelta(days=1)).timestamp())
    assert [key for key, _ in fired][:2] == [lead(0), lead(99)]
    assert sorted(key for key, _ in fired) == sorted({lead(i) for i in range(ROWS)} - {lead(31)} | {lead(99)})


async def test_a_rebalance_mid_rebuild_abandons_it_and_the_next_one_is_whole(
    table: dict[str, SlaTimer], monkeypatch: pytest.MonkeyPatch
) -> None:
    task = asyncio.ensure_future(sla.rebuild_index(1))
    await asyncio.sleep(0)
    monkeypatch.setattr(app, "rebalancing_count", 2)  # the group rebalanced: the rows may not be ours
    decide(5, None)  # the lead agent goes on meanwhile
    assert await task is None
    assert sla._rebuilding is None
    # In between, decisions go straight to the (partial) index; the next rebuild starts afresh.
    decide(6, None)
    assert await sla.rebuild_index(2) == ROWS - 2
    assert lead(5) not in sla.timer_index and lead(6) not in sla.timer_index
    assert len(sla.timer_index.pop_due((T + timedelta(days=1)).timestamp())) == ROWS - 2


async def test_an_unsettled_worker_mid_rebuild_abandons_it(table: dict[str, SlaTimer],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    task = asyncio.ensure_future(sla.rebuild_index(1))
    await asyncio.sleep(0)
    monkeypatch.setattr(app, "tables_settled", lambda: False)  # a rebalance began, recovery under way
    assert await task is None


async def test_deadlines_due_during_an_interrupted_rebuild_fire_once_when_it_is_done(
    table: dict[str, SlaTimer], published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sla, "publish", published)
    monkeypatch.setattr(sla, "_TICK_S", 0.001)
    interrupted: list[int] = []
    rows = sla._rows

    def rows_with_a_rebalance() -> Iterator[tuple[str, float, tuple[int, int]]]:
        for n, row in enumerate(rows()):
            if n == SLICE // 2 and not interrupted:  # the group rebalances while the first slice is read
                interrupted.append(len(published.messages))
                monkeypatch.setattr(app, "rebalancing_count", 2)
            yield row

    monkeypatch.setattr(sla, "_rows", rows_with_a_rebalance)
    loop = asyncio.ensure_future(sla.fire_sla_timers())
    try:
        await until(lambda: len(published.values(SlaDue)) >= ROWS)
        await asyncio.sleep(0.05)  # more ticks: nothing fires twice
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert interrupted == [0]  # nothing fired while the first rebuild ran
    due = published.values(SlaDue)
    assert sorted(d.lead_id for d in due) == sorted(table)
    assert all((d.cycle, d.step) == (1, 0) for d in due)

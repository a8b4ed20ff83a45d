"""A table's persisted changelog offset advances only over records its store has seen
(``streams/changelog_offsets.py``): a write of ours after someone else's records keeps the old one."""
from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.tables.recovery import Recovery
from faust.types import TP, Message

from streams.app import app
from streams.changelog_offsets import next_persisted
from streams.codec import SCHEMA, encode
from streams.tables._table import CodecTable
from tests.agents.test_state_cache import a_lead

_names = itertools.count()


@pytest.mark.parametrize(("stored", "produced", "expected"), [
    (None, 0, 0),       # a fresh store, an empty changelog: our first record
    (None, 7, None),    # nothing stored, records 0-6 never read here: recovery reads from the start
    (4, 5, 5),          # the next record after what the store holds
    (312, 335, None),   # 313-334 written by another worker meanwhile (deploy audit, session 16)
    (9, 9, None),       # already covered
    (9, 3, None),       # never backwards
])
def test_only_the_record_right_after_the_stored_offset_advances_it(stored: int | None, produced: int,
                                                                   expected: int | None) -> None:
    assert next_persisted(stored, produced) == expected


def _table(store: str) -> CodecTable:
    table = CodecTable(app, name=f"changelog_offsets_test_{next(_names)}", key_type=str, schema=SCHEMA)
    table._data = table._new_store_by_url(store)  # the agent tests' app defaults to the memory store
    return table


@pytest.fixture
def rocks() -> Iterator[CodecTable]:
    table = _table("rocksdb://")
    yield table
    table.data._dbs.clear()


def _tp(table: CodecTable, partition: int = 0) -> TP:
    return TP(table.changelog_topic.get_topic_name(), partition)


def _sent(tp: TP, offset: int) -> Any:
    """A ``FutureMessage`` as Faust's producer callback gets it: done, with Kafka's record metadata."""
    return SimpleNamespace(result=lambda: SimpleNamespace(topic_partition=tp, offset=offset))


async def _recover(table: CodecTable, tp: TP, offsets: range) -> None:
    """What recovery (or a standby) does with records it reads: apply them, which persists the offset."""
    channel = table.changelog_topic.clone_using_queue(asyncio.Queue())
    messages = [Message(tp.topic, tp.partition, n, 0.0, 0, None, f"ld_{n}".encode(), encode(a_lead("Acme")),
                        None, tp=tp) for n in offsets]
    table.apply_changelog_batch([await channel.decode(m, propagate=True) for m in messages])


async def test_own_writes_after_a_recovery_advance_it_and_a_gap_holds_it(rocks: CodecTable,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    tp = _tp(rocks)
    await _recover(rocks, tp, range(0, 313))
    assert rocks.persisted_offset(tp) == 312
    rocks._on_changelog_sent(_sent(tp, 313))  # ours, right after: as before
    assert rocks.persisted_offset(tp) == 313
    with caplog.at_level(logging.WARNING, logger="streams.changelog_offsets"):
        rocks._on_changelog_sent(_sent(tp, 336))  # 314-335 are another worker's (we lost the partition)
        rocks._on_changelog_sent(_sent(tp, 337))
    assert rocks.persisted_offset(tp) == 313  # Faust stored 337: the next recovery skipped 314-335
    assert sum("stays at 313" in r.getMessage() for r in caplog.records) == 1  # one line per gap
    await _recover(rocks, tp, range(314, 338))  # the next recovery reads the gap and our own records
    assert rocks.persisted_offset(tp) == 337
    assert "ld_320" in rocks.data
    rocks._on_changelog_sent(_sent(tp, 338))
    assert rocks.persisted_offset(tp) == 338


async def test_a_fresh_store_takes_its_first_record_at_offset_0_only(rocks: CodecTable) -> None:
    first, second = _tp(rocks, 1), _tp(rocks, 2)
    rocks._on_changelog_sent(_sent(first, 0))
    rocks._on_changelog_sent(_sent(first, 1))
    assert rocks.persisted_offset(first) == 1
    rocks._on_changelog_sent(_sent(second, 5))  # 0-4 were never read here
    assert rocks.persisted_offset(second) is None  # recovery reads the partition from its start


async def test_partitions_are_independent(rocks: CodecTable) -> None:
    a, b = _tp(rocks, 0), _tp(rocks, 1)
    await _recover(rocks, a, range(0, 3))
    await _recover(rocks, b, range(0, 10))
    rocks._on_changelog_sent(_sent(b, 10))
    rocks._on_changelog_sent(_sent(a, 3))
    assert (rocks.persisted_offset(a), rocks.persisted_offset(b)) == (3, 10)


def test_the_memory_store_keeps_no_offset_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    table = _table("memory://")
    tp = _tp(table)
    with caplog.at_level(logging.WARNING, logger="streams.changelog_offsets"):
        for offset in (0, 5, 9):
            table._on_changelog_sent(_sent(tp, offset))
    assert table.persisted_offset(tp) is None
    assert not caplog.records


def test_a_failed_send_raises_as_before(rocks: CodecTable) -> None:
    def failed() -> Any:
        raise RuntimeError("produce failed")

    with pytest.raises(RuntimeError, match="produce failed"):
        rocks._on_changelog_sent(SimpleNamespace(result=failed))


class _Earliest:
    """The consumer's ``earliest_offsets`` as Kafka answers after retention deleted a partition's start."""

    def __init__(self, earliest: dict[TP, int]) -> None:
        self.earliest = earliest

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.earliest[tp] for tp in tps}


async def _build_offsets(table: CodecTable, earliest: dict[TP, int], title: str = "active") -> dict[TP, Any]:
    """Faust's own ``Recovery._build_offsets`` (as installed) on the offsets ``Recovery._add`` takes from the
    store: where each partition's recovery starts reading after."""
    destination: Any = {tp: table.persisted_offset(tp) for tp in earliest}
    recovery = SimpleNamespace(log=logging.getLogger("recovery"), _start_offsets_logtable=lambda *a, **k: "",
                               tp_to_table={tp: table for tp in earliest})
    await Recovery._build_offsets(recovery, _Earliest(earliest), set(earliest), destination, title)
    return dict(destination)


async def test_a_recovery_that_starts_past_the_stored_offset_moves_it_there(
        rocks: CodecTable, caplog: pytest.LogCaptureFixture) -> None:
    """Review of session 16: this worker once held records 0-5; later another worker wrote 6-99 and
    retention deleted them all (a windowed table's compact,delete changelog). Recovery starts after 99
    and reads nothing; the stored offset stayed at 5 and every write of ours was held, with a warning
    blaming another worker, until some later recovery."""
    tp = _tp(rocks)
    await _recover(rocks, tp, range(0, 6))
    assert rocks.persisted_offset(tp) == 5
    assert await _build_offsets(rocks, {tp: 100}) == {tp: 99}  # Faust: max(stored, earliest - 1)
    assert rocks.persisted_offset(tp) == 99  # nothing below 100 exists any more
    with caplog.at_level(logging.WARNING, logger="streams.changelog_offsets"):
        for offset in (100, 101, 102):
            rocks._on_changelog_sent(_sent(tp, offset))  # our writes as the owner now
    assert rocks.persisted_offset(tp) == 102
    assert not caplog.records


async def test_a_recovery_start_moves_only_forward_and_only_for_active_partitions(rocks: CodecTable) -> None:
    kept, fresh, empty, standby = (_tp(rocks, n) for n in range(4))
    await _recover(rocks, kept, range(0, 50))
    await _recover(rocks, standby, range(0, 3))
    # kept: records 10-49 remain after retention, recovery starts at the stored 49: unchanged.
    # fresh: never held here, 0-19 deleted: recovery starts after 19, and so does the store.
    # empty: a changelog never written (earliest 0): nothing to store, our first record is offset 0.
    assert await _build_offsets(rocks, {kept: 10, fresh: 20, empty: 0}) == {kept: 49, fresh: 19, empty: -1}
    assert (rocks.persisted_offset(kept), rocks.persisted_offset(fresh), rocks.persisted_offset(empty)) == (49, 19, None)
    rocks._on_changelog_sent(_sent(fresh, 20))
    rocks._on_changelog_sent(_sent(empty, 0))
    assert (rocks.persisted_offset(fresh), rocks.persisted_offset(empty)) == (20, 0)
    # A standby's starting points are its own business: we never write a standby partition.
    assert await _build_offsets(rocks, {standby: 40}, title="standby") == {standby: 39}
    assert rocks.persisted_offset(standby) == 2


async def test_the_memory_store_is_left_alone_by_the_recovery_start() -> None:
    table = _table("memory://")
    tp = _tp(table)
    assert await _build_offsets(table, {tp: 100}) == {tp: 99}
    assert table.persisted_offset(tp) is None


def test_a_held_write_names_every_cause_and_a_store_with_no_offset(
        rocks: CodecTable, caplog: pytest.LogCaptureFixture) -> None:
    tp = _tp(rocks, 5)
    with caplog.at_level(logging.WARNING, logger="streams.changelog_offsets"):
        rocks._on_changelog_sent(_sent(tp, 7))
    (line,) = [r.getMessage() for r in caplog.records]
    assert "while the store holds none" in line and "deleted by retention" in line
    assert "written by another worker while this one had lost the partition" in line

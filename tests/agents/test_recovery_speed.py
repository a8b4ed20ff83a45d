"""Cold restore speed: changelog recovery without decoding (``streams/tables/_table.py``), still exactly
the changelog, and Faust's "any partition behind?" answered without a scan per record (``streams/faust_recovery.py``)."""
from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.exceptions import ValueDecodeError
from faust.tables.recovery import Recovery as FaustRecovery
from faust.types import TP, Message

from rules.lead import LeadState
from streams.app import app
from streams.codec import SCHEMA, decode, encode
from streams.faust_recovery import need_recovery
from streams.tables._table import CodecTable
from tests.agents.test_state_cache import a_lead

_names = itertools.count()


def _table(store: str) -> CodecTable:
    table = CodecTable(app, name=f"recovery_speed_test_{next(_names)}", key_type=str, schema=SCHEMA)
    table._data = table._new_store_by_url(store)  # the agent tests' app defaults to the memory store
    return table


@pytest.fixture
def rocks() -> Iterator[CodecTable]:
    table = _table("rocksdb://")
    yield table
    table.data._dbs.clear()


def _message(table: CodecTable, partition: int, offset: int, key: bytes, value: bytes | None) -> Message:
    topic = table.changelog_topic.get_topic_name()
    return Message(topic, partition, offset, 0.0, 0, None, key, value, None, tp=TP(topic, partition))


async def _recovered(table: CodecTable, messages: list[Message]) -> list[Any]:
    """What Faust's recovery does: decode each record through the table's recovery channel, apply."""
    channel = table.changelog_topic.clone_using_queue(asyncio.Queue())
    events = [await channel.decode(message, propagate=True) for message in messages]
    table.apply_changelog_batch(events)
    return events


async def test_a_rocksdb_table_recovers_the_raw_bytes_without_decoding(rocks: CodecTable) -> None:
    state = a_lead("Acme")
    events = await _recovered(rocks, [_message(rocks, 0, 0, b"ld_1", encode(state))])
    assert events[0].value == encode(state)  # not decoded on the way in
    assert events[0].key in ("ld_1", b"ld_1")
    assert rocks.data["ld_1"] == decode(encode(state))  # decoded when read


async def test_recovery_keeps_the_latest_value_deletes_tombstones_and_persists_offsets(rocks: CodecTable) -> None:
    first, second = a_lead("Acme"), a_lead("Globex")
    await _recovered(rocks, [
        _message(rocks, 0, 0, b"ld_1", encode(first)),
        _message(rocks, 0, 1, b"ld_2", encode(first)),
        _message(rocks, 0, 2, b"ld_1", encode(second)),
        _message(rocks, 0, 3, b"ld_2", None),
        _message(rocks, 1, 7, b"ld_3", encode(second)),
    ])
    assert rocks.data["ld_1"] == decode(encode(second))
    assert "ld_2" not in rocks.data
    assert rocks.data["ld_3"] == decode(encode(second))
    topic = rocks.changelog_topic.get_topic_name()
    assert rocks.data.persisted_offset(TP(topic, 0)) == 3
    assert rocks.data.persisted_offset(TP(topic, 1)) == 7


async def test_unreadable_bytes_do_not_stop_recovery(rocks: CodecTable) -> None:
    good = a_lead("Acme")
    await _recovered(rocks, [
        _message(rocks, 0, 0, b"ld_bad", b"\xff not a leadflow value"),
        _message(rocks, 0, 1, b"ld_1", encode(good)),
    ])
    assert rocks.data["ld_1"] == decode(encode(good))
    with pytest.raises(ValueDecodeError):  # stored as it came; fails when read, like any stored bytes
        rocks.data["ld_bad"]


async def test_a_memory_table_still_recovers_decoded_objects() -> None:
    table = _table("memory://")
    state = a_lead("Acme")
    events = await _recovered(table, [_message(table, 0, 0, b"ld_1", encode(state))])
    assert isinstance(events[0].value, LeadState)
    assert table.data["ld_1"] == decode(encode(state))


# --- Recovery.need_recovery without a Counter per record (streams/faust_recovery.py) ------------

def _faust_answer(recovery: Any) -> bool:
    """Faust's own definition: some active partition has records remaining."""
    return any(v > 0 for v in FaustRecovery.active_remaining(recovery).values())


def test_the_patch_is_installed_by_create_app() -> None:
    assert FaustRecovery.need_recovery is need_recovery


def test_need_recovery_answers_as_faust_does_over_random_states() -> None:
    rng = random.Random(7)
    tps = [TP(f"t{t}-changelog", p) for t in range(4) for p in range(3)]
    recovery = SimpleNamespace(active_highwaters=Counter(), active_offsets=Counter())
    for _ in range(5_000):
        tp = rng.choice(tps)
        move = rng.random()
        if move < 0.1:
            recovery.active_highwaters[tp] = rng.choice([None, -1, 0, 3, 10])
        elif move < 0.15:
            recovery.active_highwaters.pop(tp, None)
        elif move < 0.2:
            recovery.active_offsets[tp] = rng.choice([None, -1, 0])
        elif move < 0.25:
            recovery.active_offsets.pop(tp, None)
        else:  # a record applied: the offset moves on
            offset = recovery.active_offsets[tp]
            recovery.active_offsets[tp] = (offset or 0) + 1
        assert need_recovery(recovery) is _faust_answer(recovery)


def test_need_recovery_does_not_scan_every_partition_per_record() -> None:
    class Counted(dict[Any, Any]):
        reads = 0

        def items(self) -> Any:
            Counted.reads += len(self)
            return super().items()

    tps = [TP(f"t{t}-changelog", p) for t in range(13) for p in range(8)]
    highwaters = Counted({tp: 1_000 for tp in tps})
    recovery = SimpleNamespace(active_highwaters=highwaters, active_offsets=Counter({tp: 1_000 for tp in tps}))
    behind = tps[-1]
    recovery.active_offsets[behind] = 0
    for offset in range(1, 1_001):  # 1,000 records of the one partition behind, each then asks
        assert need_recovery(recovery) is True
        recovery.active_offsets[behind] = offset
    assert need_recovery(recovery) is False
    # Faust's own answer reads all 104 partitions per record (104,000 reads); the patch scans twice.
    assert Counted.reads <= 2 * len(tps)


def test_the_consumer_fetches_up_to_8_mib_per_partition() -> None:
    # A cold restore is bound by fetch round trips at Faust's 1 MiB (docs/PERFORMANCE.md, restart).
    assert app.conf.consumer_max_fetch_size == 8 * 2**20

"""The consumer fix: an ack of a record skipped across a rebalance never moves the committed offset."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP

from streams import faust_fixes

TOPIC_TP = TP("leadflow.leads.inbound", 1)


class _Flow:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


def _consumer(generation: int, flow_active: bool) -> Any:
    """Just the state ``Consumer.ack`` reads and writes, for a partition whose committed offset is unknown
    (as between a revoke and the seek back)."""
    app = SimpleNamespace(consumer_generation_id=generation, flow_control=_Flow(flow_active),
                          topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
    return SimpleNamespace(app=app, _committed_offset=defaultdict(lambda: None), _acked=defaultdict(list),
                           _acked_index=defaultdict(set), _unacked_messages=set(), _n_acked=0,
                           _waiting_for_ack=None)


class _Message:
    """The fields of a faust ``Message`` the ack reads (hashable by identity, like the real one)."""

    def __init__(self, offset: int, generation: int) -> None:
        self.tp, self.topic, self.offset, self.generation_id, self.acked = TOPIC_TP, TOPIC_TP.topic, offset, generation, False


def _message(offset: int, generation: int) -> Any:
    return _Message(offset, generation)


@pytest.fixture(autouse=True)
def installed() -> None:
    faust_fixes.install()
    faust_fixes.install()  # twice: still one wrapper


@pytest.mark.parametrize(("generation", "flow_active"), [(7, True), (8, False), (7, False)])
def test_a_skipped_record_is_released_but_not_counted(generation: int, flow_active: bool) -> None:
    consumer = _consumer(generation=8, flow_active=flow_active)
    stale = _message(107, generation)
    consumer._unacked_messages.add(stale)
    assert Consumer.ack(consumer, stale) is False
    assert stale.acked and stale not in consumer._unacked_messages
    assert consumer._acked[TOPIC_TP] == [] and consumer._n_acked == 0  # nothing to commit


def test_a_processed_record_of_the_current_generation_counts() -> None:
    consumer = _consumer(generation=8, flow_active=True)
    current = _message(107, 8)
    consumer._unacked_messages.add(current)
    assert Consumer.ack(consumer, current) is True
    assert consumer._acked[TOPIC_TP] == [107] and consumer._n_acked == 1
    assert current not in consumer._unacked_messages


def _committing(committed: int | None, acked: list[int]) -> Any:
    consumer = _consumer(generation=8, flow_active=True)
    consumer._committed_offset[TOPIC_TP] = committed
    consumer._acked[TOPIC_TP] = list(acked)
    consumer._acked_index[TOPIC_TP] = set(acked)
    consumer._gap = defaultdict(list)
    return consumer


@pytest.mark.parametrize(("committed", "acked", "commits"), [
    (116, [116, 117, 118], 119),     # a run from the committed offset: committed up to its end
    (116, [116, 117, 119], 118),     # up to the first hole only
    (119, [120, 121], None),         # 119 never processed: the commit waits (faust alone commits 122)
    (None, list(range(107, 119)), None),  # committed offset unknown (between revoke and seek): wait
    (0, [1, 2], None),               # a fresh partition whose first record is missing
    (None, [0, 1, 2], 3),            # a partition never committed: its first run from offset 0
])
def test_a_commit_never_steps_over_an_unprocessed_offset(committed: int | None, acked: list[int],
                                                         commits: int | None) -> None:
    assert Consumer._new_offset(_committing(committed, acked), TOPIC_TP) == commits


async def test_a_hole_that_holds_the_commit_back_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(faust_fixes.time, "monotonic", lambda: clock[0])
    faust_fixes._held.clear()
    consumer = _committing(119, [120, 121])
    seeks: list[tuple[Any, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp, offset))

    consumer.seek = seek
    assert Consumer._new_offset(consumer, TOPIC_TP) is None
    clock[0] += faust_fixes.HEAL_AFTER_S - 1
    assert Consumer._new_offset(consumer, TOPIC_TP) is None
    await asyncio.sleep(0)
    assert seeks == []  # not yet: a record can be a moment late
    clock[0] += 2
    assert Consumer._new_offset(consumer, TOPIC_TP) is None
    await asyncio.sleep(0)
    assert seeks == [(TOPIC_TP, 119)]  # re-read from the hole
    assert Consumer._new_offset(consumer, TOPIC_TP) is None
    await asyncio.sleep(0)
    assert seeks == [(TOPIC_TP, 119)]  # once per HEAL_AFTER_S


async def test_a_hole_that_cannot_be_read_is_committed_past_after_the_re_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [2000.0]
    monkeypatch.setattr(faust_fixes.time, "monotonic", lambda: clock[0])
    faust_fixes._held.clear()
    consumer = _committing(119, [120, 121])
    seeks: list[int] = []

    async def seek(tp: Any, offset: int) -> None:
        seeks.append(offset)

    consumer.seek = seek
    results = []
    for _ in range(faust_fixes.MAX_HEALS + 2):
        results.append(Consumer._new_offset(consumer, TOPIC_TP))
        clock[0] += faust_fixes.HEAL_AFTER_S + 1
        await asyncio.sleep(0)
    assert seeks == [119] * faust_fixes.MAX_HEALS
    # Retention deleted it (say): after the re-reads the partition moves on instead of stalling.
    assert results[:-1] == [None] * (faust_fixes.MAX_HEALS + 1) and results[-1] == 122


def test_read_offsets_are_kept_but_never_drop_a_record() -> None:
    marks = faust_fixes.read_offsets()
    marks[TOPIC_TP] = 452  # the fetch loop records the last offset it read
    get = marks.__getitem__  # what the fetch loop reads before delivering a record
    assert get(TOPIC_TP) is None  # so offset 428, read again after a seek, is delivered
    marks.update({TOPIC_TP: 428})
    marks.pop(TOPIC_TP, None)
    assert get(TOPIC_TP) is None

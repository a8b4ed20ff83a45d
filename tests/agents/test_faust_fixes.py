"""The consumer fixes: no offset is committed ahead of the records and table writes behind it."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.tables.base import Collection
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


class _Changelog:
    """A changelog topic: each record sent is acknowledged by Kafka when its future is resolved."""

    def __init__(self) -> None:
        self.sent: dict[str, asyncio.Future[None]] = {}

    def send_soon(self, **fields: Any) -> asyncio.Future[None]:
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent[fields["key"]] = acknowledged
        return acknowledged


class _Table:
    """What Faust's ``Collection.send_changelog`` reads of a table."""

    key_serializer = value_serializer = "raw"

    def __init__(self) -> None:
        self.changelog_topic = _Changelog()

    def _on_changelog_sent(self, *_: Any) -> None: ...

    def write(self, key: str) -> asyncio.Future[None]:
        sent: asyncio.Future[None] = Collection.send_changelog(self, None, key, b"v")
        return sent


def _committer() -> Any:
    """Just what Faust's ``Consumer._commit_offsets`` reads, for offsets of a partition no longer
    assigned: it returns without committing, after telling who asked for the assignment."""
    asked: list[bool] = []
    quiet = SimpleNamespace(dev=lambda *_, **__: None, info=lambda *_, **__: None)
    return SimpleNamespace(log=quiet, assignment=lambda: asked.append(True) or set(), asked=asked)


async def test_a_commit_waits_until_kafka_acknowledged_the_table_writes_sent_before_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's own flush gives up after 0.1 s: without this wait an offset could be committed
    before the write of its command reached Kafka, and a kill -9 lost the write."""
    with monkeypatch.context() as m:  # earlier tests' sends, on loops now closed, never answer
        m.setattr(faust_fixes, "CHANGELOG_ACK_TIMEOUT_S", 0.01)
        await faust_fixes.changelog_acknowledged()  # nothing older than this test is waited for
    table = _Table()
    table.write("before")
    consumer = _committer()
    commit = asyncio.ensure_future(Consumer._commit_offsets(consumer, {TOPIC_TP: 5}))
    await asyncio.sleep(0.2)
    table.write("after")  # sent once the commit began: its offset is not in this commit
    assert not commit.done() and consumer.asked == []  # Faust's commit has not begun
    table.changelog_topic.sent["before"].set_result(None)
    assert await asyncio.wait_for(commit, 1.0) is False  # nothing assigned: nothing committed
    assert consumer.asked == [True] and not table.changelog_topic.sent["after"].done()


async def test_a_commit_goes_on_when_kafka_never_acknowledges(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A stopping producer never answers: the commit must not hang on it."""
    monkeypatch.setattr(faust_fixes, "CHANGELOG_ACK_TIMEOUT_S", 0.05)
    await faust_fixes.changelog_acknowledged()
    _Table().write("never-acknowledged")
    consumer = _committer()
    assert await asyncio.wait_for(Consumer._commit_offsets(consumer, {TOPIC_TP: 5}), 1.0) is False
    assert consumer.asked == [True]
    assert "1 changelog record(s) not acknowledged" in caplog.text


def test_never_committed_partitions_are_the_stream_partitions_without_an_offset_above_zero() -> None:
    committed = {TP("app.rep.commands", 0): None, TP("app.rep.commands", 1): 0, TP("app.rep.commands", 2): 3,
                 TP("app.lead.commands", 0): -1, TP("app-team_state-changelog", 0): None}
    assert faust_fixes.never_committed(committed, {"app-team_state-changelog"}) == [
        TP("app.rep.commands", 0), TP("app.rep.commands", 1), TP("app.lead.commands", 0)]


async def test_the_seek_back_sends_never_committed_stream_partitions_to_their_beginning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    committed = {TP("app.rep.commands", 0): None, TP("app.rep.commands", 1): 2, TP("app-accounts-changelog", 0): None}

    async def original(self: Any) -> dict[TP, int | None]:
        return committed

    sought: list[tuple[TP, ...]] = []

    async def seek_to_beginning(*tps: TP) -> None:
        sought.append(tps)

    monkeypatch.setattr(faust_fixes, "_original_seek_to_committed", original)
    consumer = SimpleNamespace(app=SimpleNamespace(tables=SimpleNamespace(changelog_topics={"app-accounts-changelog"})),
                               _thread=SimpleNamespace(seek_to_beginning=seek_to_beginning))
    assert await faust_fixes.seek_to_committed(consumer) is committed  # perform_seek reads it as before
    assert sought == [(TP("app.rep.commands", 0),)]
    committed = {TP("app.rep.commands", 1): 2}
    await faust_fixes.seek_to_committed(consumer)
    assert sought == [(TP("app.rep.commands", 0),)]  # every partition committed: nothing more


def test_the_seek_back_is_installed_on_the_worker_consumer() -> None:
    from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

    from streams.inline_consumer import InlineConsumer, InlineConsumerThread
    assert AIOKafkaConsumer.seek_to_committed is faust_fixes.seek_to_committed
    assert InlineConsumer.seek_to_committed is faust_fixes.seek_to_committed
    assert callable(InlineConsumerThread.seek_to_beginning)  # what the seek back calls on the consumer's thread


async def test_resuming_a_flow_that_is_on_keeps_the_records_queued() -> None:
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    flow = FlowControlEvent(initially_suspended=True)
    queue: FlowControlQueue[int] = FlowControlQueue(maxsize=10, flow_control=flow, clear_on_resume=True)
    queue.put_nowait(1)  # left from before a rebalance
    flow.resume()
    assert flow.is_active() and queue.empty()  # a stopped flow resumed: the old records go
    queue.put_nowait(2)  # delivered to a stream after that, not yet taken
    flow.resume()  # the recovery resumes the flow again after its seek
    assert queue.qsize() == 1 and queue.get_nowait() == 2
    flow.suspend()
    queue.put_nowait(3)
    flow.resume()
    assert queue.empty()

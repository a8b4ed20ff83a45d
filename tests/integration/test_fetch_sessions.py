"""Fetch sessions (KIP-227) against the real broker: every record arrives, in order, exactly once.

An aiokafka consumer with ``streams/fetch_sessions.py``'s fetcher reads three topics of eight
partitions while they are written. It must read every record once and in order, through
incremental requests after the first; keep doing so across a pause, a resume and a seek back;
and recover when the broker refuses its session (unknown id, wrong epoch) by opening a new one;
and deliver every partition from each offset sought while seeks, pauses, resumes and new
assignments come at random.
"""
from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiokafka.consumer.consumer as aiokafka_consumer
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ops.stack import StackConfig
from streams.fetch_sessions import FetchSession, Plan, SessionFetcher

PARTITIONS = 8


@dataclass
class Feed:
    topics: list[str]
    producer: AIOKafkaProducer
    consumer: AIOKafkaConsumer
    sent: dict[TopicPartition, list[bytes]] = field(default_factory=dict)
    read: dict[TopicPartition, list[tuple[int, bytes]]] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def session(self) -> FetchSession:
        (session,) = self.consumer._fetcher.sessions.values()  # one broker
        return session

    async def write(self, per_partition: int, tps: list[TopicPartition] | None = None) -> None:
        targets = tps or [TopicPartition(t, p) for t in self.topics for p in range(PARTITIONS)]
        for _ in range(per_partition):
            for tp in targets:
                value = f"{tp.topic}/{tp.partition}/{next(self.counter)}".encode()
                await self.producer.send(tp.topic, value, partition=tp.partition)
                self.sent.setdefault(tp, []).append(value)
            await asyncio.sleep(0.02)  # spread over many fetches
        await self.producer.flush()

    async def read_until(self, done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; read {self.counts()}"
            for tp, records in (await self.consumer.getmany(timeout_ms=200)).items():
                self.read.setdefault(tp, []).extend((r.offset, r.value) for r in records)

    def counts(self) -> dict[str, int]:
        return {f"{tp.topic[-1]}{tp.partition}": len(v) for tp, v in sorted(self.read.items())}

    def all_read(self) -> bool:
        return all(len(self.read.get(tp, [])) >= len(values) for tp, values in self.sent.items())

    def assert_each_record_once_in_order(self) -> None:
        for tp, values in self.sent.items():
            got = self.read.get(tp, [])
            assert [offset for offset, _ in got] == list(range(len(values))), f"{tp}: offsets out of order"
            assert [value for _, value in got] == values, f"{tp}: records differ"


@pytest.fixture
async def feed(stack: StackConfig, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Feed]:
    monkeypatch.setattr(aiokafka_consumer, "Fetcher", SessionFetcher)
    name = f"fs-{uuid.uuid4().hex[:8]}"
    topics = [f"{name}-{x}" for x in "abc"]
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    # The worker's setting: the broker holds an empty fetch at most 100 ms (streams/inline_consumer.py).
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    consumer.assign([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
    try:
        assert isinstance(consumer._fetcher, SessionFetcher)
        yield Feed(topics, producer, consumer)
    finally:
        await consumer.stop()
        await producer.stop()


async def write_while_reading(feed: Feed, per_partition: int) -> None:
    writing = asyncio.create_task(feed.write(per_partition))
    await feed.read_until(lambda: writing.done() and feed.all_read(), "every record written")
    await writing


async def test_every_record_arrives_once_in_order_through_incremental_fetches(feed: Feed) -> None:
    await write_while_reading(feed, 25)  # 600 records, written while the consumer reads
    feed.assert_each_record_once_in_order()
    session = feed.session
    assert session.session_id != 0, "the broker opened no session"
    assert session.resets == 0
    assert session.full_requests == 1
    assert session.incremental_requests >= 10, session


async def test_pause_resume_and_seek_back_within_a_session(feed: Feed) -> None:
    await write_while_reading(feed, 3)
    a0, a1 = TopicPartition(feed.topics[0], 0), TopicPartition(feed.topics[0], 1)
    feed.consumer.pause(a0)
    await write_while_reading_except(feed, a0)
    assert (a0.topic, 0) not in feed.session.positions, "a paused partition stays in the session"
    assert len(feed.read[a0]) == 3
    feed.consumer.resume(a0)
    await feed.read_until(feed.all_read, "the resumed partition's records")
    feed.assert_each_record_once_in_order()

    feed.consumer.seek(a1, 0)
    before = len(feed.read[a1])
    await feed.read_until(lambda: len(feed.read[a1]) >= 2 * before, "partition a1 again from offset 0")
    again = feed.read[a1][before:]
    assert [offset for offset, _ in again] == list(range(before))
    assert feed.session.resets == 0 and feed.session.full_requests == 1


async def write_while_reading_except(feed: Feed, paused: TopicPartition) -> None:
    writing = asyncio.create_task(feed.write(3))

    def others_read() -> bool:
        return writing.done() and all(len(feed.read.get(tp, [])) >= len(v) for tp, v in feed.sent.items()
                                      if tp != paused)

    await feed.read_until(others_read, "every record but the paused partition's")
    await writing


async def test_quiet_partitions_look_polled_and_keep_a_high_watermark(feed: Feed) -> None:
    """An answer names only the partitions with news, but Faust's liveness check reads every
    partition's last poll and high watermark from aiokafka's state and logs an ERROR for each one
    not polled in 300 s: in a worker, every partition without traffic. With sessions, a quiet
    partition must look polled, as without them, and one whose only answer was discarded (its
    offset moved while the fetch was out, played here by clearing its state) gets the high
    watermark the broker named."""
    busy = [TopicPartition(feed.topics[0], p) for p in range(PARTITIONS)]
    await feed.write(2, busy)  # topics b and c stay empty
    await feed.read_until(feed.all_read, "topic a's records")
    assignment = feed.consumer._fetcher._subscriptions.subscription.assignment
    discarded = assignment.state_value(TopicPartition(feed.topics[1], 3))
    discarded.timestamp = discarded.highwater = discarded.lso = None
    quiet_from = time.monotonic()
    await feed.read_until(lambda: time.monotonic() > quiet_from + 3, "3 s of fetches with no news")
    now_ms = time.time() * 1000
    stale = {f"{tp.topic[-1]}{tp.partition}": state.timestamp and round(now_ms - state.timestamp)
             for tp in assignment.tps if (state := assignment.state_value(tp)).timestamp is None
             or now_ms - state.timestamp > 2000}
    assert not stale, f"partitions not polled in the last 2 s (age in ms): {stale}"
    highwaters = {tp: assignment.state_value(tp).highwater for tp in assignment.tps}
    assert highwaters == {tp: len(feed.sent.get(tp, [])) for tp in assignment.tps}
    assert feed.session.full_requests == 1 and feed.session.incremental_requests >= 10


def corrupt_next_request(session: FetchSession, change: Callable[[Plan], Plan]) -> None:
    """Make the session's next request carry ``change(plan)`` instead of its own plan."""
    plan_of = session.plan

    def plan(wanted: Any) -> Plan:
        del session.plan  # once
        return change(plan_of(wanted))

    session.plan = plan  # type: ignore[method-assign]


@pytest.mark.parametrize("corruption", ["unknown session id", "wrong epoch"])
async def test_a_refused_session_is_replaced_and_nothing_is_lost(feed: Feed, corruption: str) -> None:
    await write_while_reading(feed, 3)
    session = feed.session
    first_id = session.session_id
    if corruption == "unknown session id":
        corrupt_next_request(session, lambda p: Plan(first_id ^ 0x5A5A5A, p.epoch, p.send, p.forget, p.wanted))
    else:
        corrupt_next_request(session, lambda p: Plan(p.session_id, p.epoch + 5, p.send, p.forget, p.wanted))
    await write_while_reading(feed, 5)
    feed.assert_each_record_once_in_order()
    assert session.resets == 1, "the broker did not refuse the corrupted request"
    assert session.full_requests == 2
    assert session.session_id not in (0, first_id) if corruption == "wrong epoch" else session.session_id != 0


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_seeks_pauses_and_reassignments_never_skip_a_record(feed: Feed, seed: int) -> None:
    """What a worker does to its consumer around rebalances and hole repairs, at random, while the
    topics are written: seeks back (to the position it holds too), pauses, resumes, Faust's recovery
    pattern (pause all, resume all, seek each) and new assignments (in-flight fetches cancelled).
    After every seek each partition must deliver from the offset sought, one offset after another."""
    rnd = random.Random(seed)
    tps = [TopicPartition(t, p) for t in feed.topics for p in range(PARTITIONS)]
    expect = dict.fromkeys(tps, 0)  # the next offset each partition must deliver
    skipped: list[tuple[TopicPartition, int, int]] = []
    paused: set[TopicPartition] = set()
    ops: dict[str, int] = defaultdict(int)
    writing = asyncio.create_task(feed.write(150))  # 3,600 records over ~4 s
    consumer = feed.consumer
    deadline = time.monotonic() + 60
    while not (writing.done() and not paused and all(expect[tp] >= len(feed.sent.get(tp, [])) for tp in tps)):
        assert time.monotonic() < deadline, f"records not delivered: {expect}"
        batch = await consumer.getmany(timeout_ms=rnd.choice([0, 10, 50]), max_records=rnd.choice([1, 5, None]))
        for tp, records in batch.items():
            for record in records:
                if record.offset != expect[tp]:
                    skipped.append((tp, expect[tp], record.offset))
                expect[tp] = record.offset + 1
        tp, roll = rnd.choice(tps), rnd.random()
        if roll < 0.08:
            target = rnd.randint(max(0, expect[tp] - 10), expect[tp])
            consumer.seek(tp, target)
            expect[tp], ops["seek back"] = target, ops["seek back"] + 1
        elif roll < 0.14:
            consumer.seek(tp, expect[tp])  # where it is: drops what is buffered
            ops["seek in place"] += 1
        elif roll < 0.20 and tp not in paused:
            consumer.pause(tp)
            paused.add(tp)
            ops["pause"] += 1
        elif roll < 0.28 and paused:
            consumer.resume(paused.pop())
            ops["resume"] += 1
        elif roll < 0.30:
            consumer.pause(*tps)
            await asyncio.sleep(rnd.choice([0, 0.05]))
            consumer.resume(*tps)
            paused.clear()
            for each in tps:
                consumer.seek(each, expect[each])
            ops["recovery pattern"] += 1
        elif roll < 0.31:
            consumer.assign(tps)
            paused.clear()
            for each in tps:
                consumer.seek(each, expect[each])
            ops["new assignment"] += 1
        if writing.done() and paused:
            consumer.resume(*paused)
            paused.clear()
    await writing
    assert not skipped, f"records skipped (partition, expected, got): {skipped[:10]}"
    assert min(ops.values()) > 0 and len(ops) == 6, ops
    session = feed.session
    assert session.incremental_requests > 10 * session.full_requests, session

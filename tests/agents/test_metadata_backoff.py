"""A metadata refresh that fails at once is retried after a backoff (streams/metadata_backoff.py).

The loops are aiokafka's own, run against a Kafka that is down: a port nothing listens on, so
every connection is refused at once, as with a stopped broker. Each cluster names a partition
without a leader (-1), what a broker's last answers say while it stops. Unpaced, each loop
refreshes thousands of times a second; that is the flood the module exists for, and it is kept
here as a check: if aiokafka paces its refreshes one day, the patch can go.
"""
from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import BrokerMetadata, PartitionMetadata, TopicPartition

from streams import metadata_backoff
from streams.fetch_sessions import SessionFetcher
from streams.metadata_backoff import BACKOFF_MAX_S, JITTER, MetadataPace

TP = TopicPartition("leadflow.team.commands", 0)
RUN_S = 0.6


def test_the_wait_doubles_from_the_backoff_to_its_maximum_and_a_success_ends_it() -> None:
    now = [100.0]
    pace = MetadataPace(0.1, clock=lambda: now[0])
    assert pace.delay() == 0
    waits = []
    for _ in range(6):
        pace.done(False)
        waits.append(pace.delay())
    expected = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert all(e * (1 - JITTER) <= w <= e * (1 + JITTER) for w, e in zip(waits, expected, strict=True))
    assert max(waits) <= BACKOFF_MAX_S * (1 + JITTER)
    now[0] += 0.05
    assert 0 < pace.delay() < waits[-1]
    pace.done(True)
    assert pace.delay() == 0 and pace.failures == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kafka_down(cluster: Any, port: int) -> None:
    """Metadata as a stopping broker last gave it: broker 1, partition ``TP`` without a leader."""
    cluster._brokers = {1: BrokerMetadata(1, "127.0.0.1", port, None)}
    cluster._partitions = {TP.topic: {TP.partition: PartitionMetadata(TP.topic, TP.partition, -1, [1], [1], 0)}}
    cluster._last_successful_refresh_ms = int(time.time() * 1000)


@pytest.fixture(params=[True, False], ids=["paced", "aiokafka-alone"])
def refreshes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[bool, list[float]]]:
    """The times of the metadata refreshes attempted, with the backoff installed or not."""
    attempts: list[float] = []
    unpaced = metadata_backoff._unpaced

    async def counted(self: Any, cluster_metadata: Any, topics: Any) -> bool:
        attempts.append(time.monotonic())
        return bool(await unpaced(self, cluster_metadata, topics))

    monkeypatch.setattr(metadata_backoff, "_unpaced", counted)
    paced = bool(request.param)
    monkeypatch.setattr(AIOKafkaClient, "_metadata_update", metadata_backoff.paced_metadata_update if paced else counted)
    yield paced, attempts


def _check(paced: bool, attempts: list[float]) -> None:
    if paced:
        # 0, ~0.1, ~0.3, ~0.7 s: 4 in 0.6 s (5 at most with the jitter); and the CPU stays idle.
        assert 2 <= len(attempts) <= 5, attempts
    else:
        assert len(attempts) > 200, f"aiokafka alone refreshed {len(attempts)} times in {RUN_S} s"


@pytest.fixture
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    port = _closed_port()
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=30_000)
    _kafka_down(producer.client.cluster, port)
    yield producer
    sender = producer._sender
    if sender._sender_task is not None:
        sender._sender_task.cancel()
        await asyncio.gather(sender._sender_task, return_exceptions=True)
    await producer.client.close()


async def test_a_batch_waiting_for_a_leader_refreshes_within_the_backoff(
    producer: AIOKafkaProducer, refreshes: tuple[bool, list[float]]
) -> None:
    """The loop of the 333,441-line outage: aiokafka's sender, a batch for a partition with no leader."""
    paced, attempts = refreshes
    client = producer.client
    client._sync_task = asyncio.ensure_future(client._md_synchronizer())
    await producer._message_accumulator.add_message(TP, None, b"lead", timeout=5)
    cpu = time.process_time()
    producer._sender._sender_task = asyncio.ensure_future(producer._sender._sender_routine())
    await asyncio.sleep(RUN_S)
    _check(paced, attempts)
    if paced:
        assert time.process_time() - cpu < RUN_S / 3


async def test_a_fetcher_with_a_leaderless_partition_refreshes_within_the_backoff(
    refreshes: tuple[bool, list[float]]
) -> None:
    """The fetch loop (ours, with sessions): an assigned partition without a leader."""
    paced, attempts = refreshes
    port = _closed_port()
    client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{port}")
    _kafka_down(client.cluster, port)
    client._sync_task = asyncio.ensure_future(client._md_synchronizer())
    subscriptions = SubscriptionState()
    subscriptions.assign_from_user({TP})
    subscriptions.seek(TP, 0)
    fetcher = SessionFetcher(client, subscriptions)
    try:
        await asyncio.sleep(RUN_S)
        _check(paced, attempts)
    finally:
        await fetcher.close()
        await client.close()


async def test_a_refresh_that_succeeds_is_not_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([False, True, True, True])

    async def answer(self: Any, cluster_metadata: Any, topics: Any) -> bool:
        return next(answers)

    monkeypatch.setattr(metadata_backoff, "_unpaced", answer)
    client: Any = AIOKafkaClient(bootstrap_servers="127.0.0.1:1")
    assert not await metadata_backoff.paced_metadata_update(client, client.cluster, None)
    started = time.monotonic()
    for _ in range(3):
        assert await metadata_backoff.paced_metadata_update(client, client.cluster, None)
    took = time.monotonic() - started
    assert 0.1 * (1 - JITTER) <= took < 0.1 * (1 + JITTER) + 0.05  # the one backoff, then none

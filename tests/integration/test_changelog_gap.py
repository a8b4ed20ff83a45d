"""A changelog record written by someone else between two of this worker's writes is read by the
next recovery (``streams/changelog_offsets.py``), against the real Kafka.

The shape of the deploy audit's zombie (session 16): while a worker still believes it owns a
partition, another writer appends to the partition's changelog; then this worker writes to it
again. Faust stored the offset of that last write as the store's, so the restarted worker's
recovery began after the other writer's records and never read them.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from rules.accounts import Account
from streams.codec import encode
from streams.topics import partition_of
from tests.integration.harness import Worker, WorkerSpec, eventually

pytestmark = pytest.mark.integration


def _same_partition_domains(count: int, partitions: int) -> tuple[int, list[str]]:
    """``count`` account domains whose records share one partition of ``partitions``."""
    by_partition: dict[int, list[str]] = {}
    n = 0
    while True:
        domain = f"gap-test-{n}.com"
        n += 1
        found = by_partition.setdefault(partition_of(domain, partitions), [])
        found.append(domain)
        if len(found) == count:
            return partition_of(domain, partitions), found


async def _status(api: aiohttp.ClientSession, worker: Worker, domain: str) -> tuple[int, object]:
    async with api.get(f"{worker.url}/v1/accounts/{domain}") as r:
        return r.status, (await r.json()) if r.status == 200 else None


async def _stored(api: aiohttp.ClientSession, worker: Worker, domain: str) -> bool:
    return (await _status(api, worker, domain))[0] == 200


async def _end_offset(spec: WorkerSpec, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=spec.stack.kafka_url.removeprefix("kafka://"))
    await consumer.start()
    try:
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_a_record_written_between_two_of_ours_is_recovered(spec: WorkerSpec,
                                                                 api: aiohttp.ClientSession) -> None:
    partition, (ours, theirs, ours_again) = _same_partition_domains(3, spec.partitions)
    changelog = TopicPartition(f"{spec.app_id}-accounts-changelog", partition)
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        async with api.put(f"{worker.url}/v1/accounts/{ours}", json={"name": "ours"}) as r:
            assert r.status == 202, await r.text()
        await eventually(lambda: _stored(api, worker, ours), what=f"account {ours} stored")
        assert await _end_offset(spec, changelog) == 1

        # Another writer (a worker that took the partition over) appends to the changelog.
        producer = AIOKafkaProducer(bootstrap_servers=spec.stack.kafka_url.removeprefix("kafka://"), acks="all")
        await producer.start()
        try:
            account = Account(domain=theirs, name="theirs", updated_at=datetime.now(timezone.utc))
            await producer.send_and_wait(changelog.topic, encode(account), key=theirs.encode(), partition=partition)
        finally:
            await producer.stop()

        # Then this worker writes to the same partition again: its record lands at offset 2.
        async with api.put(f"{worker.url}/v1/accounts/{ours_again}", json={"name": "ours again"}) as r:
            assert r.status == 202, await r.text()
        await eventually(lambda: _stored(api, worker, ours_again), what=f"account {ours_again} stored")
        assert await _end_offset(spec, changelog) == 3
        await asyncio.sleep(1.0)  # the producer's callback (persisting the offset) follows Kafka's ack
    finally:
        worker.stop()

    again = Worker(spec, port=worker.port, data_dir=worker.data_dir)  # the same RocksDB stores
    try:
        await again.wait_ready()
        assert (await _status(api, again, ours))[0] == 200
        assert (await _status(api, again, ours_again))[0] == 200
        status, body = await _status(api, again, theirs)
        # Faust had persisted offset 2: recovery started after the other writer's record, a 404.
        assert status == 200, f"{theirs}: the other writer's changelog record was never recovered"
        assert isinstance(body, dict) and body["name"] == "theirs"
    finally:
        again.stop()

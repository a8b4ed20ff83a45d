"""A dead letter Kafka refuses never costs the intake its batch: the real broker refusing, not a mock.

Two refusals of a record's dead letter for its size: ``leads.rejected`` given a ``max.message.bytes``
below the poison record's (the broker answers ``MESSAGE_TOO_LARGE``), and, with nothing changed, a
record the broker took on ``leads.inbound`` (up to its 1,048,588 bytes) above Faust's producer limit
of 1,000,000 bytes, which the worker's own producer refuses. Before session 17 the intake's
``reject`` raised, ``take_ready`` acked the batch anyway, and the poison record and the valid leads
of its batch were committed without a dead letter or a capture: lost for good (5 of 6 here).
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from rules.capture import derive_lead_id
from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, one_rep_config
from tests.integration.test_poison import worker  # noqa: F401  (the fixture: one worker, one rep)

#: (the dead-letter topic's ``max.message.bytes``, or ``None``: as created; the poison record's size).
#: The poison record is not JSON: ``malformed_json``.
REFUSALS = [(2048, 4000), (None, 1_010_000)]


async def _limit_topic(spec: WorkerSpec, topic: str, max_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=spec.stack.kafka_bootstrap)
    await admin.start()
    try:
        responses = await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(max_bytes)})])
    finally:
        await admin.close()
    assert not [(code, message) for r in responses for code, message, *_ in r.resources if code]


async def _dead_letters(spec: WorkerSpec) -> list[Any]:
    consumer = AIOKafkaConsumer(f"{spec.app_id}.leads.rejected", bootstrap_servers=spec.stack.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        for _ in range(4):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("limit", "size"), REFUSALS, ids=["topic-limit", "producer-limit"])
async def test_a_dead_letter_too_large_for_kafka_loses_neither_the_record_nor_its_batch(
    spec: WorkerSpec, worker: Worker, api: aiohttp.ClientSession, limit: int | None, size: int
) -> None:
    if limit is not None:
        await _limit_topic(spec, f"{spec.app_id}.leads.rejected", limit)
    poison = b"not a lead " + b"x" * (size - 11)
    inbound = f"{spec.app_id}.leads.inbound"
    before = [f"before.{i}@refused.example" for i in range(3)]
    after = [f"after.{i}@refused.example" for i in range(3)]
    producer = AIOKafkaProducer(bootstrap_servers=spec.stack.kafka_bootstrap, linger_ms=50,
                                max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        # One partition and one producer batch: the intake takes them in one batch, as under load.
        sends = [await producer.send(inbound, orjson.dumps({"email": email}), partition=0) for email in before]
        sends.append(await producer.send(inbound, poison, partition=0))
        sends += [await producer.send(inbound, orjson.dumps({"email": email}), partition=0) for email in after]
        await asyncio.gather(*sends)
        # The stream goes on past them: a lead produced later is captured.
        await producer.send_and_wait(inbound, orjson.dumps({"email": "later@refused.example"}), partition=0)
    finally:
        await producer.stop()

    async def captured(email: str) -> bool:
        lead_id = derive_lead_id(email=email, phone=None, source="kafka", external_id=None)
        async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
            return r.status == 200

    await eventually(lambda: captured("later@refused.example"), timeout=45,
                     what=f"the lead produced after the batch\n{worker.log(60)}")
    missing = [email for email in before + after if not await captured(email)]
    letters = await _dead_letters(spec)
    print(f"\ndead letter refused: {len(before + after) - len(missing)} of {len(before + after)} valid leads of "
          f"the batch captured, {len(letters)} dead letter(s) stored")
    assert not missing, f"valid leads of the poison's batch lost: {missing}\n{worker.log(40)}"
    # The poison's dead letter is stored, as far as the topic takes it: its reason and where the
    # original is, without the original bytes that made it too large.
    (letter,) = letters
    headers = dict(letter.headers)
    assert headers["leadflow-reason"] == b"malformed_json"
    assert headers["leadflow-origin"] == f"{inbound}:0:3".encode()
    assert not letter.value and headers["leadflow-value-omitted"] == str(size).encode()
    assert orjson.loads(headers["leadflow-detail"])["message"]


async def _committed(spec: WorkerSpec, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=spec.stack.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(spec.app_id)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


@pytest.mark.timeout(120)
async def test_a_dead_letter_kafka_keeps_refusing_holds_its_batch_through_a_stop_until_it_is_stored(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    # A topic limit below even the smallest dead letter (its headers): Kafka refuses every form,
    # as it refuses everything in an outage. The batch waits uncommitted, a SIGTERM ends the worker
    # at once without committing it, and the restart, with the limit raised, stores and captures it.
    spec.config_yaml = one_rep_config(receiver, capacity=50)
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        rejected = f"{spec.app_id}.leads.rejected"
        await _limit_topic(spec, rejected, 64)
        inbound = f"{spec.app_id}.leads.inbound"
        emails = [f"held.{i}@refused.example" for i in range(4)]
        producer = AIOKafkaProducer(bootstrap_servers=spec.stack.kafka_bootstrap, linger_ms=50)
        await producer.start()
        try:
            sends = [await producer.send(inbound, orjson.dumps({"email": email}), partition=0) for email in emails[:2]]
            sends.append(await producer.send(inbound, b"not json", partition=0))  # offset 2
            sends += [await producer.send(inbound, orjson.dumps({"email": email}), partition=0) for email in emails[2:]]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()
        await asyncio.sleep(2.0)  # the batch is taken, its dead letter refused

        async def captured(email: str) -> bool:
            lead_id = derive_lead_id(email=email, phone=None, source="kafka", external_id=None)
            async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
                return r.status == 200

        await asyncio.sleep(3.0)  # past a commit interval (2.8 s)
        assert not await captured(emails[-1])  # after the poison: held, not skipped
        assert (await _committed(spec, inbound)).get(0, 0) <= 2, "the refused dead letter's record was committed"
        assert "was not stored (MessageSizeTooLargeError)" in worker.log(200), worker.log(40)
        began = asyncio.get_running_loop().time()
        worker.stop()
        took = asyncio.get_running_loop().time() - began
        assert worker.proc.returncode == 143 and took < 10, (worker.proc.returncode, took)
        assert "not stored: Kafka" in worker.log(60)
        assert (await _committed(spec, inbound)).get(0, 0) <= 2, "the stop committed the held batch"

        await _limit_topic(spec, rejected, 1_048_588)  # the operator raises the limit again
        worker = Worker(spec, port=worker.port, data_dir=worker.data_dir)
        await worker.wait_ready()
        for email in emails:
            await eventually(lambda: captured(email), timeout=30, what=f"{email} captured after the restart")
        letters = [r for r in await _dead_letters(spec) if r.value == b"not json"]
        assert letters and all(dict(r.headers)["leadflow-reason"] == b"malformed_json" for r in letters)
        print(f"\nheld through a stop: exit {took:.1f} s after SIGTERM, {len(emails)} leads captured and "
              f"{len(letters)} dead letter stored after the restart")
    finally:
        worker.stop()

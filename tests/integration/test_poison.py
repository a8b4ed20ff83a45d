"""Poison records on the Kafka feed ``leads.inbound``: each dead-lettered with a reason, the stream never stalls.

Records a hostile or broken producer could write: invalid UTF-8, empty, a tombstone (null
value), binary, huge values, wrong types, deep nesting, JSON that is not an object, an
unreadable key. Each must land on ``leads.rejected`` once, with its original bytes and a
machine-readable reason; records that are odd but valid must be routed; and an ordinary
lead produced after all of them must still be assigned.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from rules.capture import derive_lead_id
from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, one_rep_config


#: (name, key, value, reason expected on leads.rejected)
POISON: list[tuple[str, bytes | None, bytes | None, str]] = [
    ("invalid utf-8", b"k", b"\xff\xfe\x00 not utf-8 \xc3\x28", "not_utf8"),
    ("empty", b"k", b"", "empty"),
    ("tombstone", b"k", None, "empty"),
    ("binary", b"k", bytes(range(256)) * 64, "not_utf8"),
    ("deep nesting", b"k", b'{"a":' * 5000 + b"1" + b"}" * 5000, "malformed_json"),
    ("deep array", b"k", b"[" * 200_000, "malformed_json"),
    ("NaN", b"k", b'{"email": NaN}', "malformed_json"),
    ("a string", b"k", b'"lead@string.example"', "not_an_object"),
    ("null", b"k", b"null", "not_an_object"),
    ("an array of leads", b"k", b'[{"email": "a@b.example"}]', "not_an_object"),
    ("wrong types", b"k", b'{"email": 7, "phone": [], "company": {"x": 1}}', "invalid_lead"),
    ("huge value", b"k", b'{"email": "' + b"a" * 900_000 + b'@huge.example"}', "invalid_lead"),
    ("huge unknown field", b"k", b'{"email": "big@field.example", "blob": "' + b"x" * 500_000 + b'"}',
     "invalid_lead"),
    ("no identity", b"k", b'{"company": "Nobody Inc"}', "invalid_lead"),
    ("control characters", b"k", b'{"email": "a\\u0000b@ctl.example"}', "invalid_lead"),
    ("bad key", b"\xff\xfe\xfd", b'{"email": "badkey@poison.example"}', ""),  # see the test: routed or rejected
    # A seal that looks like one on a lead nested past 254 levels: orjson reads it, but the seal's
    # orjson.dumps refused it with a TypeError that crashed the intake and lost its batch (review s16-b H1).
    ("deep lead under a seal", b"k", b'{"email": "deep.seal@poison.example", "message": ' + b"[" * 300 + b"]" * 300
     + b', "_meta": {"capture_id": "c-1", "seal": "' + b"0" * 32 + b'"}}', "invalid_lead"),
]

#: Odd but valid: must be routed (or rejected with a reason), never crash anything.
HOSTILE_VALID: list[tuple[str, dict[str, Any]]] = [
    ("naive received_at", {"email": "naive.time@poison.example", "_meta": {"received_at": "2020-01-01T00:00:00"}}),
    ("meta not an object", {"email": "meta.string@poison.example", "_meta": "x"}),
    ("far-future received_at", {"email": "future@poison.example", "_meta": {"received_at": "9999-12-31T23:59:59+00:00"}}),
    ("unicode everywhere", {"email": "unicode@names.example", "first_name": "Zoë 🚀", "company": "Ünïcødé ⚙️ \u202e"}),
    # hmac.compare_digest refused a non-ASCII str with a TypeError: the intake crashed (review s16-b H1).
    ("non-ASCII seal", {"email": "seal.accent@poison.example", "_meta": {"capture_id": "c-1", "seal": "\u00e9"}}),
    ("non-ASCII seal of a seal's length", {"email": "seal.long@poison.example", "_meta": {"seal": "\u00e9" * 32}}),
]


@pytest.fixture
async def worker(spec: WorkerSpec, receiver: Receiver) -> AsyncIterator[Worker]:
    """A worker whose one rep's webhook is the receiver; stopped after the test."""
    spec.config_yaml = one_rep_config(receiver, capacity=50)
    started = Worker(spec)
    try:
        await started.wait_ready()
        yield started
    finally:
        started.stop()


async def _read(spec: WorkerSpec, topic: str, n: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=spec.stack.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_bytes=8 * 1024 * 1024,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    out: list[Any] = []
    try:
        async def enough() -> bool:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
            return len(out) >= n

        await eventually(enough, timeout=60, what=f"{n} record(s) on {topic} (have {len(out)})")
    finally:
        await consumer.stop()
    return out


@pytest.mark.timeout(240)
async def test_poison_records_are_dead_lettered_and_the_feed_keeps_flowing(
    spec: WorkerSpec, worker: Worker, api: aiohttp.ClientSession
) -> None:
    inbound = f"{spec.app_id}.leads.inbound"
    producer = AIOKafkaProducer(bootstrap_servers=spec.stack.kafka_bootstrap, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        for _, key, value, _ in POISON:
            await producer.send_and_wait(inbound, value, key=key)
        for _, lead in HOSTILE_VALID:
            await producer.send_and_wait(inbound, orjson.dumps(lead), key=b"h")
        last = {"email": "after.poison@feed.example", "company": "Still Flowing"}
        await producer.send_and_wait(inbound, orjson.dumps(last), key=b"y")
    finally:
        await producer.stop()

    def lead_id(email: str) -> str:
        return derive_lead_id(email=email, phone=None, source="kafka", external_id=None)

    async def assigned(email: str) -> Any:
        async with api.get(f"{worker.url}/v1/leads/{lead_id(email)}") as r:
            body = await r.json(content_type=None) if r.status == 200 else None
        return body if body and body["routing"] == "assigned" else None

    # The stream never stalled: the lead after every poison record is routed and notified.
    await eventually(lambda: assigned("after.poison@feed.example"), timeout=60,
                     what=f"the lead after the poison records\n{worker.log(60)}")

    expected = [(name, reason) for name, _, _, reason in POISON if reason]
    rejected = await _read(spec, f"{spec.app_id}.leads.rejected", len(expected))
    got = [(dict(r.headers)["leadflow-reason"].decode(), r.value or b"") for r in rejected]
    for name, key, value, reason in POISON:
        if reason:
            assert (reason, value or b"") in got, f"{name}: not dead-lettered as {reason}"
    assert all(dict(r.headers).get("leadflow-detail") for r in rejected)
    # The detail names the problem, not what the JSON parser made of it.
    messages = {orjson.loads(dict(r.headers)["leadflow-detail"]).get("message") for r in rejected}
    assert "empty record (a tombstone: no value): no lead" in messages
    assert "not UTF-8 at byte 1 of 16; a lead is JSON, encoded as UTF-8" in messages

    # A key that is not UTF-8 cannot hide a lead: it is routed, or rejected with a reason.
    # Leads on other partitions move independently (agents take batches): wait for it, as below.
    bad_key_rejected = [reason for reason, value in got if b"badkey@poison.example" in value]
    if not bad_key_rejected:
        await eventually(lambda: assigned("badkey@poison.example"), timeout=30,
                         what="the record with a binary key, neither rejected nor routed: vanished?")

    for name, lead in HOSTILE_VALID:
        email = str(lead["email"])
        routed = await eventually(lambda: assigned(email), timeout=30, what=f"{name}: routed")
        assert routed["lead"]["email"]
    async with api.get(f"{worker.url}/metrics") as r:
        metrics = await r.text()
    assert 'leadflow_leads_rejected_total{channel="kafka",reason="malformed_json"}' in metrics
    print(f"\npoison: {len(POISON)} poison + {len(HOSTILE_VALID)} hostile-but-valid records; "
          f"{len(rejected)} dead-lettered with a reason, the feed kept flowing")


#: Internal topics a bug or a hostile producer with Kafka access could write to, and the agent reading each.
INTERNAL = [("lead.commands", "lead"), ("team.commands", "team"), ("account.commands", "account"),
            ("rep.commands", "rep"), ("notifications", "notifier"), ("crm.outbox", "crm"), ("outcomes", "outcomes")]


@pytest.mark.timeout(240)
async def test_unreadable_records_on_internal_topics_are_counted_and_skipped_and_routing_goes_on(
    spec: WorkerSpec, receiver: Receiver, worker: Worker, api: aiohttp.ClientSession
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=spec.stack.kafka_bootstrap)
    await producer.start()
    try:
        for topic, _ in INTERNAL:
            name = f"{spec.app_id}.{topic}"
            await producer.send_and_wait(name, b"\xff not a leadflow message", key=b"ld_x")
            await producer.send_and_wait(name, b'{"type": "CaptureLead", "data": {"lead_id": 7}}', key=b"ld_x")
            await producer.send_and_wait(name, b'{"type": "NoSuchCommand", "data": {}}', key=b"ld_x")
            await producer.send_and_wait(name, b'{"type": "DrainQueue", "data": {}}', key=b"\xff\xfe")
        after = {"email": "after.internal.poison@feed.example", "company": "Still Routing"}
        await producer.send_and_wait(f"{spec.app_id}.leads.inbound", orjson.dumps(after), key=b"y")
    finally:
        await producer.stop()

    lead_id = derive_lead_id(email=after["email"], phone=None, source="kafka", external_id=None)
    # Every agent went on: the lead crossed the account, lead and team agents and the notifier.
    await eventually(lambda: receiver.for_lead(lead_id), timeout=60,
                     what=f"the webhook of the lead after the poison\n{worker.log(60)}")

    async def counted() -> dict[str, float] | None:
        async with api.get(f"{worker.url}/metrics") as r:
            text = await r.text()
        seen = {agent: _sample(text, "leadflow_command_failures_total", agent) for _, agent in INTERNAL}
        return seen if all(value >= 4 for value in seen.values()) else None

    failures = await eventually(counted, timeout=30, what="every agent counting the 4 unreadable records")
    assert failures is not None


def _sample(metrics: str, name: str, agent: str) -> float:
    prefix = f'{name}{{agent="{agent}"}} '
    return sum(float(line[len(prefix):]) for line in metrics.splitlines() if line.startswith(prefix))

"""The baseline: a raw aiokafka consume -> produce loop on the same broker, no processing at all.

It answers "how fast can Python move records through this Kafka on this machine", the
ceiling any Python stream processor here lives under. The loop is the honest minimal version
of what an at-least-once processor must do: fetch a batch, produce every record to the output
topic, wait for the broker's acknowledgements (acks=all, like leadflow's publish), commit the
input offsets, repeat. Input records are lead-sized JSON on as many partitions as leadflow uses.
"""
from __future__ import annotations

import asyncio
import time
import uuid

import orjson

from ops.bench.harness import Say, quiet_about_new_topics
from ops.bench.load import bench_lead
from ops.bench.results import PassthroughResult
from ops.bench.stats import percentile, rate

__all__ = ["run_passthrough"]


async def run_passthrough(bootstrap: str, records: int, partitions: int, say: Say) -> PassthroughResult:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    run = "benchpt" + uuid.uuid4().hex[:8]
    source, sink = f"{run}.in", f"{run}.out"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(source, partitions, 1), NewTopic(sink, partitions, 1)])
    finally:
        await admin.close()
    with quiet_about_new_topics(run):
        return await _run(bootstrap, records, partitions, say, run, source, sink)


async def _run(bootstrap: str, records: int, partitions: int, say: Say, run: str, source: str,
               sink: str) -> PassthroughResult:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    payload = orjson.dumps(bench_lead(0, run, "DE"))
    say(f"passthrough: filling {source} with {records:,} records of {len(payload)} bytes…")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        # First, on a quiet broker: one record at a time, each acknowledgement awaited, with no
        # linger (as leadflow's producer: Faust's default linger is 0).
        single = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await single.start()
        rtts = []
        try:
            # Every partition of the new topic led and written once, so no retry is timed below.
            for partition in range(partitions):
                await (await single.send(sink, payload, partition=partition))
            for i in range(300):
                sent = time.perf_counter()
                await (await single.send(sink, payload, key=str(i).encode()))
                rtts.append(time.perf_counter() - sent)
        finally:
            await single.stop()
        futures = [await producer.send(source, payload, key=str(i).encode()) for i in range(records)]
        await asyncio.gather(*futures)
        consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=run, auto_offset_reset="earliest",
                                    enable_auto_commit=False, max_poll_records=2000)
        await consumer.start()
        try:
            say("passthrough: consume → produce → await acks → commit…")
            moved, began = 0, 0.0
            while moved < records:
                batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
                if not batches:
                    continue
                if not began:
                    began = time.monotonic()
                sends = []
                for batch in batches.values():
                    for record in batch:
                        sends.append(await producer.send(sink, record.value, key=record.key))
                await asyncio.gather(*sends)
                await consumer.commit()
                moved += len(sends)
            elapsed = time.monotonic() - began
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    rtt50, rtt99 = percentile(rtts, 50), percentile(rtts, 99)
    result = PassthroughResult(records=records, partitions=partitions, elapsed_s=elapsed,
                               throughput=rate(records, elapsed), record_bytes=len(payload),
                               ack_rtt_p50_s=rtt50, ack_rtt_p99_s=rtt99)
    say(f"passthrough: {records:,} records in {elapsed:.2f} s → {result.throughput:,.0f} records/s; one send "
        f"awaited alone: p50 {rtt50 * 1000:.1f} ms, p99 {rtt99 * 1000:.1f} ms")
    return result

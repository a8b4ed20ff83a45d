"""``leadflow report`` against the real broker: a missing topic fails fast in one line that names
the topics there are; an existing one is read in full; the default broker follows LEADFLOW_KAFKA_PORT."""
from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ops.report import TopicNotFound, read_events
from ops.stack import StackConfig

REPO = Path(__file__).resolve().parents[2]


def _demo_run() -> str:
    """A run id as the demo makes them (``demo<timestamp>``), newer than any demo run before it, and
    unique: a broker shared with the whole suite holds many ``*lead.events`` topics."""
    return time.strftime("demo%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]


async def _make_topic(stack: StackConfig, name: str, events: Sequence[dict[str, object]] = ()) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1)])
    finally:
        await admin.close()
    if events:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        await producer.start()
        try:
            for i, event in enumerate(events):
                await producer.send_and_wait(name, orjson.dumps(event), key=str(i).encode())
        finally:
            await producer.stop()


async def test_a_missing_topic_fails_at_once_naming_the_lead_events_topics_there(
        stack: StackConfig, caplog: pytest.LogCaptureFixture) -> None:
    run = _demo_run()
    await _make_topic(stack, f"{run}.lead.events")
    missing = f"nothing{uuid.uuid4().hex[:8]}.lead.events"
    began = time.monotonic()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG, logger="aiokafka"):
        warnings.simplefilter("always")
        with pytest.raises(TopicNotFound) as raised:
            await read_events(stack.kafka_url, missing, since_s=3600)
        gc.collect()  # an unclosed consumer warns from its __del__
    assert time.monotonic() - began < 5.0  # was ~15 s: start() waited for the topic to appear
    assert raised.value.topic == missing and f"{run}.lead.events" in raised.value.candidates
    assert f"{run}.lead.events" in str(raised.value) and "--topic" in str(raised.value)
    assert not [r for r in caplog.records if "not found in cluster metadata" in r.getMessage()]
    assert not [w for w in caught if "Unclosed" in str(w.message)]


async def test_an_existing_topic_is_read_to_its_end(stack: StackConfig) -> None:
    topic = f"rep{uuid.uuid4().hex[:10]}.lead.events"
    sent = [{"type": "lead.captured", "lead_id": f"l{i}", "n": i} for i in range(7)]
    await _make_topic(stack, topic, sent)
    got = await read_events(stack.kafka_url, topic, since_s=600)
    assert sorted(e["n"] for e in got) == list(range(7))


async def test_the_cli_defaults_to_the_stacks_port_and_says_it_in_one_line(stack: StackConfig, tmp_path: Path) -> None:
    run = _demo_run()
    await _make_topic(stack, f"{run}.lead.events")
    env = {k: v for k, v in os.environ.items() if k not in ("LEADFLOW_BROKER", "LEADFLOW_TOPIC_PREFIX")}
    env["LEADFLOW_KAFKA_PORT"] = str(stack.kafka_port)
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "leadflow", "report", "-o", str(tmp_path / "r.html")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert time.monotonic() - began < 10.0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "leadflow.lead.events does not exist on " + stack.kafka_bootstrap in lines[0]
    assert "--topic" in lines[0] and f"{run}.lead.events" in lines[0]
    assert not (tmp_path / "r.html").exists()

"""The checks a worker makes of its deployment's topics before Faust starts (``streams/topic_check.py``).

A worker whose LEADFLOW_PARTITIONS differs from its deployment's topics refuses to start. Without
the check such a worker started "ready" and created the topics still missing with its own count,
beside the existing ones: co-partitioning broken, silently. And a changelog made by an older
version, without the topic configs its table now creates it with, is given them.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.tables.team_state import CHANGELOG_CONFIGS
from tests.integration.harness import Worker, WorkerSpec


async def _exit_code(worker: Worker, timeout: float = 60.0) -> int | None:
    """The worker's exit status once it exits on its own (None: still running after ``timeout``;
    it is killed then, by its pid)."""
    deadline = time.monotonic() + timeout
    while worker.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    if worker.proc.poll() is None:
        worker.kill()
        return None
    return worker.proc.returncode


@pytest.mark.timeout(120)
async def test_a_worker_refuses_topics_with_another_partition_count(spec: WorkerSpec) -> None:
    # A deployment made with 2 partitions: two of its topics exist. This worker expects 4.
    made = [f"{spec.app_id}.lead.commands", f"{spec.app_id}.team.commands"]
    admin = AIOKafkaAdminClient(bootstrap_servers=spec.stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1) for name in made])
        worker = Worker(spec)
        status = await _exit_code(worker)
        log = worker.log()
        assert status == 2, f"the worker did not refuse to start:\n{log}"
        assert "(LEADFLOW_PARTITIONS=4)" in log
        for name in made:
            assert f"{name}: 2 partition(s), expected 4" in log
        assert "set LEADFLOW_PARTITIONS=2 to match its topics" in log
        # It stopped before creating anything with its own count.
        topics = await admin.list_topics()
        assert not [t for t in topics if t.startswith(spec.app_id) and t not in made]
    finally:
        await admin.close()


@pytest.mark.timeout(120)
async def test_a_worker_refuses_more_copies_than_brokers(spec: WorkerSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    # The test stack is one broker. Before the check, Faust crashed with a traceback about its
    # __assignor-__leader topic, naming no setting.
    monkeypatch.setenv("LEADFLOW_REPLICATION", "3")
    worker = Worker(spec)
    status = await _exit_code(worker)
    log = worker.log()
    assert status == 2, f"the worker did not refuse to start:\n{log}"
    assert "LEADFLOW_REPLICATION=3, but the cluster has 1 broker(s) up" in log
    assert "Traceback" not in log


async def _overrides(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    """The topic's own configs (source 1: DYNAMIC_TOPIC_CONFIG), not the broker's defaults."""
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    (resource,) = response.to_object()["resources"]
    return {e["config_names"]: e["config_value"] for e in resource["config_entries"] if e["config_source"] == 1}


@pytest.mark.timeout(120)
async def test_an_older_team_changelog_is_given_its_topic_configs(spec: WorkerSpec) -> None:
    # As a version before session 9 made it: compacted, with Kafka's 1 GiB / 7 day segments, so
    # it never compacted and every start read all of it.
    changelog = f"{spec.app_id}-team_state-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=spec.stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(changelog, 4, 1, topic_configs={"cleanup.policy": "compact",
                                                                            "retention.ms": "86400000"})])
        assert await _overrides(admin, changelog) == {"cleanup.policy": "compact", "retention.ms": "86400000"}
        worker = Worker(spec)
        try:
            await worker.wait_ready()
            log = worker.log(400)
        finally:
            worker.stop()
        # Its own configs are kept (AlterConfigs replaces them all: compaction must stay on).
        assert await _overrides(admin, changelog) == {"cleanup.policy": "compact", "retention.ms": "86400000",
                                                      **CHANGELOG_CONFIGS}
        assert f"topic config updated: {changelog}: segment.bytes broker default -> 8388608" in log
    finally:
        await admin.close()

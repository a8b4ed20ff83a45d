"""A worker killed in the middle of a team batch's table writes comes back with the team whole.

``team_crash_worker.py`` makes the crash certain: the worker dies right after the first team-table
write of the batch that routes the third lead reached Kafka. Before the team kept one table with
its record first (streams/tables/team_record.py), that write was the new lead's holding without
the state that counts it: after the restart the lead was "assigned", and no rep counted it.
"""
from __future__ import annotations

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.tables.team_state import CHANGELOG_CONFIGS

from tests.integration.harness import Receiver, SECRET, Worker, WorkerSpec, eventually
from tests.integration.test_restart_and_bad_input import CONFIG, LAST, _assert_each_lead_assigned_once, _get, \
    _post_leads, _team


async def _topic_configs(spec: WorkerSpec, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=spec.stack.kafka_bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    (resource,) = response.to_object()["resources"]
    return {entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]}


def _sample(text: str, name: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.timeout(300)
async def test_a_kill_between_a_team_batchs_writes_leaves_the_team_whole(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = CONFIG.format(url=receiver.url, secret=SECRET)
    receiver.secrets.update({"ana": SECRET, "ben": SECRET})
    worker = Worker(spec, module=("tests.integration.team_crash_worker", "3"))
    await worker.wait_ready()
    try:
        await eventually(lambda: _team(api, worker, reps_available=2), what="the configured reps")
        leads = await _post_leads(api, worker, 0, 2)
        await eventually(lambda: _team(api, worker, open_leads=2, queue_depth=0), what="2 assigned")
        # The third lead, alone: its team batch is the one cut short.
        leads += await _post_leads(api, worker, 2, 1)
        await eventually(lambda: worker.proc.poll() is not None, what="the worker killing itself")
        assert "killing myself" in worker.log_path.read_text(), worker.log()

        worker = Worker(spec, port=worker.port, data_dir=worker.data_dir)
        await worker.wait_ready()
        try:
            team = await eventually(lambda: _team(api, worker, open_leads=3, queue_depth=0), timeout=60,
                                    what="the team counting the 3 assigned leads")
        except AssertionError:
            routing = [(await _get(api, f"{worker.url}/v1/leads/{lid}"))[1].get("routing") for lid in leads]
            raise AssertionError(f"team after the crash: {LAST.get('team')}; leads: {routing}") from None
        assert sorted(r["open_leads"] for r in team["reps"]) == [1, 2]

        async def all_assigned() -> bool:
            states = [await _get(api, f"{worker.url}/v1/leads/{lid}") for lid in leads]
            return all(status == 200 and body["routing"] == "assigned" for status, body in states)

        await eventually(all_assigned, what="the 3 leads assigned")
        await eventually(lambda: len({d["payload"]["data"]["lead_id"] for d in receiver.deliveries}) == 3,
                         what="3 leads notified")
        _assert_each_lead_assigned_once(receiver)
        # The third lead's RouteLead was read again (its offset was never committed) and skipped:
        # the record that reached Kafka had applied it.
        async with api.get(f"{worker.url}/metrics") as r:
            metrics = await r.text()
        assert _sample(metrics, "leadflow_commands_replayed_total", 'agent="team"') >= 1
        # Restored whole at every start: its changelog is created to stay compact.
        configs = await _topic_configs(spec, f"{spec.app_id}-team_state-changelog")
        assert {name: configs.get(name) for name in CHANGELOG_CONFIGS} == CHANGELOG_CONFIGS
        assert configs.get("cleanup.policy") == "compact"
        # In memory, although the worker's other tables are RocksDB (LEADFLOW_STORE=rocksdb here):
        # a RocksDB team store kept the lost batch's side keys (found by the crash verifier).
        assert not list(worker.data_dir.glob("**/team_state-*.db")), "the team table is on RocksDB"
        assert list(worker.data_dir.glob("**/lead_state-*.db")), "the worker's store is not RocksDB"
    finally:
        worker.stop()

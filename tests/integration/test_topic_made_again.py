"""Command topics deleted and made again, while the tables' changelogs stay: no command is lost.

The lead and team agents skip a command read at or below the offset their state last applied
(a replay after a crash). Topics made again begin their offsets at 0, so before the partitions'
ends were consulted (``streams.agents._batch.end_offset``) every new command up to the old mark
was skipped as "a replay": the new leads below were never routed, the disposition never applied,
and the worker said nothing but ``leadflow_commands_replayed_total``.
"""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tests.integration.harness import Receiver, SECRET, Worker, WorkerSpec, eventually
from tests.integration.test_restart_and_bad_input import CONFIG, LAST, _assert_each_lead_assigned_once, _get, \
    _post_leads, _team
from tests.integration.test_team_crash import _sample


async def _make_again(spec: WorkerSpec, topics: list[str], timeout: float = 60.0) -> None:
    """Delete ``topics`` and create them again, empty, with the deployment's partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=spec.stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
        deadline = time.monotonic() + timeout
        while set(topics) & set(await admin.list_topics()):
            assert time.monotonic() < deadline, f"{topics} still listed {timeout} s after their deletion"
            await asyncio.sleep(0.2)
        while True:  # a topic being deleted still refuses its name for a moment
            try:
                await admin.create_topics([NewTopic(name, spec.partitions, 1) for name in topics])
                return
            except TopicAlreadyExistsError:
                assert time.monotonic() < deadline, f"{topics} could not be made again in {timeout} s"
                await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def _routing(api: aiohttp.ClientSession, worker: Worker, lead_ids: list[str]) -> list[str]:
    return [(await _get(api, f"{worker.url}/v1/leads/{lid}"))[1].get("routing") for lid in lead_ids]


@pytest.mark.timeout(300)
async def test_commands_on_topics_made_again_are_applied(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = CONFIG.format(url=receiver.url, secret=SECRET)
    receiver.secrets.update({"ana": SECRET, "ben": SECRET})
    worker = Worker(spec)
    await worker.wait_ready()
    try:
        await eventually(lambda: _team(api, worker, reps_available=2), what="the configured reps")
        first = await _post_leads(api, worker, 0, 3)
        await eventually(lambda: _team(api, worker, open_leads=3, queue_depth=0), what="3 assigned")

        async def all_assigned() -> bool:  # read: nothing left in the topics deleted below
            return await _routing(api, worker, first) == ["assigned"] * 3

        await eventually(all_assigned, what="the 3 leads told they are assigned")
        worker.stop()

        # The tables' changelogs stay: the team's record and each lead remember offsets of the
        # topics deleted here.
        await _make_again(spec, [f"{spec.app_id}.lead.commands", f"{spec.app_id}.team.commands"])
        worker = Worker(spec, port=worker.port, data_dir=worker.data_dir)
        await worker.wait_ready()
        await eventually(lambda: _team(api, worker, open_leads=3), what="the team restored")

        # A disposition: the first record of its lead.commands partition, below the lead's mark.
        async with api.post(f"{worker.url}/v1/leads/{first[0]}/disposition", json={"status": "nurture"}) as r:
            assert r.status == 202, await r.text()
        try:
            await eventually(lambda: _team(api, worker, open_leads=2), timeout=30, what="the disposition applied")
        except AssertionError:
            raise AssertionError(f"team {LAST.get('team')}; leads {await _routing(api, worker, first)}") from None
        second = await _post_leads(api, worker, 3, 2)
        try:
            await eventually(lambda: _team(api, worker, open_leads=4, queue_depth=0), timeout=30,
                             what="the new leads routed")
        except AssertionError:
            raise AssertionError(f"team {LAST.get('team')}; new leads {await _routing(api, worker, second)}") from None

        async def settled() -> list[str] | None:
            routing = await _routing(api, worker, first + second)
            return routing if routing == ["released"] + ["assigned"] * 4 else LAST.update(leads=routing)

        try:
            await eventually(settled, what="lead0 released, the 4 others assigned")
        except AssertionError:
            raise AssertionError(f"the leads' routing: {LAST.get('leads')}") from None
        await eventually(lambda: len({d["payload"]["data"]["lead_id"] for d in receiver.deliveries}) == 5,
                         what="5 leads notified")
        _assert_each_lead_assigned_once(receiver)
        async with api.get(f"{worker.url}/metrics") as r:
            metrics = await r.text()
        for agent in ("lead", "team"):
            assert _sample(metrics, "leadflow_commands_replayed_total", f'agent="{agent}"') == 0, agent
    finally:
        worker.stop()

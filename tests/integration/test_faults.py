"""Faults on the real stack: failing webhook receivers, Kafka restarted mid-stream, Redis stopped.

* Receivers that fail half the time, time out, or answer ``410 Gone``: retries follow the
  (scaled-down) Standard Webhooks schedule, a failing endpoint's circuit opens and defers
  instead of hammering it, ``410`` is never retried, undeliverable messages land on
  ``notifications.dead`` with their reason, and a lead whose rep stays unreachable is
  reassigned to a rep who answers.
* Kafka stopped and started again (``stack_down(cfg, ["kafka"])``, by its recorded pid, as
  ``leadflow stack down kafka`` does) while leads arrive: the API answers
  ``503`` with ``Retry-After`` while it is down, and every lead it accepted is assigned once.
* Redis stopped: capture and routing go on, a repeat is still recognized (in the lead table),
  and ``leadflow_redis_degraded_total`` counts the operations done without it.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from standardwebhooks import Webhook

from ops.stack import StackConfig, stack_down, stack_status, stack_up
from tests.integration.harness import SECRET, Worker, WorkerSpec, eventually, free_port, read_json_topic

SCHEDULE = (0.5, 1.0, 1.5, 2.0)  # 5 attempts over 5 s: Standard Webhooks' shape, scaled down


@dataclass
class FaultSpec(WorkerSpec):
    """A ``WorkerSpec`` with extra environment (retry schedule, breaker, timeouts)."""

    extra: dict[str, str] = field(default_factory=dict)

    def env(self, port: int, data_dir: Any) -> dict[str, str]:
        return {**super().env(port, data_dir), **self.extra}


@dataclass
class Hit:
    webhook_id: str
    lead_id: str
    kind: str
    status: int
    at: float


class Endpoint:
    """One rep's webhook endpoint on its own port (so its circuit is its own), with a behaviour."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour  # ok | flaky | gone | slow
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.hits: list[Hit] = []
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        Webhook(SECRET).verify(body, {k.lower(): v for k, v in request.headers.items()})
        payload = orjson.loads(body)
        if self.behaviour == "flaky":
            status = 503 if len(self.hits) % 2 == 0 else 204  # half of all requests fail
        elif self.behaviour == "gone":
            status = 410
        elif self.behaviour == "slow":
            status = 204
        else:
            status = 204
        self.hits.append(Hit(request.headers["webhook-id"], payload["data"]["lead_id"], payload["type"], status,
                             time.monotonic()))
        if self.behaviour == "slow":
            await asyncio.sleep(3)  # past the sender's 1 s timeout
        return web.Response(status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered(self) -> dict[str, str]:
        """lead_id -> webhook_id of each lead.assigned this endpoint accepted (2xx)."""
        return {h.lead_id: h.webhook_id for h in self.hits if h.kind == "lead.assigned" and h.status < 300}


@pytest.fixture
async def endpoints() -> AsyncIterator[dict[str, Endpoint]]:
    eps = {"ana": Endpoint("flaky"), "ben": Endpoint("gone"), "cid": Endpoint("slow"), "dot": Endpoint("ok")}
    for ep in eps.values():
        await ep.start()
    yield eps
    for ep in eps.values():
        await ep.stop()


def _config(urls: dict[str, str], capacity: int = 50) -> str:
    reps = "\n".join(f'      - {{id: {rep}, capacity: {capacity}, webhook_url: "{url}", webhook_secret: "{SECRET}"}}'
                     for rep, url in urls.items())
    return f"routing: {{default_team: sdr}}\nteams:\n  - id: sdr\n    reps:\n{reps}\n"


async def _post(api: aiohttp.ClientSession, worker: Worker, leads: list[dict[str, Any]]) -> tuple[int, Any, Any]:
    async with api.post(f"{worker.url}/v1/leads", json={"leads": leads}) as r:
        return r.status, await r.json(content_type=None), r.headers


async def _lead(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> Any:
    async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
        return await r.json() if r.status == 200 else None



async def _metric(worker: Worker, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


@pytest.mark.timeout(240)
async def test_failing_receivers_retry_on_schedule_break_dead_letter_and_reassign(
    spec: WorkerSpec, endpoints: dict[str, Endpoint], api: aiohttp.ClientSession
) -> None:
    fault = FaultSpec(stack=spec.stack, tmp=spec.tmp, extra={
        "LEADFLOW_WEBHOOK_RETRY_SCHEDULE": ",".join(str(s) for s in SCHEDULE),
        "LEADFLOW_WEBHOOK_TIMEOUT": "1",
        "LEADFLOW_WEBHOOK_BREAKER_THRESHOLD": "3",
        "LEADFLOW_WEBHOOK_BREAKER_COOLDOWN": "1.5",
    })
    fault.config_yaml = _config({rep: ep.url for rep, ep in endpoints.items()})
    worker = Worker(fault)
    try:
        await worker.wait_ready()
        await eventually(lambda: _reps(api, worker, 4), what="the four reps")
        status, body, _ = await _post(api, worker, [{"email": f"fault{i}@hooks.example"} for i in range(16)])
        assert status == 202 and body["accepted"] == 16, body
        lead_ids = [item["lead_id"] for item in body["results"]]

        # Every lead ends with a rep who answers (ana, flaky; dot), and that rep got the webhook.
        async def settled() -> dict[str, Any] | None:
            states = {lid: await _lead(api, worker, lid) for lid in lead_ids}
            good = {**endpoints["ana"].delivered(), **endpoints["dot"].delivered()}
            done = all(s and s["routing"] == "assigned" and s["assignment"]["rep_id"] in ("ana", "dot")
                       and lid in good for lid, s in states.items())
            return states if done else None

        states = await eventually(settled, timeout=120, interval=0.5, what="every lead with a reachable rep")
        assert all(s["assignment"]["rep_id"] in ("ana", "dot") for s in states.values())

        # 410 Gone: one request per message, never retried; then the lead moved on.
        ben = Counter(h.webhook_id for h in endpoints["ben"].hits)
        assert ben and set(ben.values()) == {1}, ben
        # The slow endpoint: at most the schedule's attempts per message, and its circuit opened.
        cid = Counter(h.webhook_id for h in endpoints["cid"].hits)
        assert cid and max(cid.values()) <= len(SCHEDULE) + 1, cid
        assert await _metric(worker, 'leadflow_webhook_deliveries_total{event_type="lead.assigned",outcome="deferred"') > 0
        # The flaky endpoint: a 503 is retried no sooner than the schedule's first delay, same id.
        ana: dict[str, list[Hit]] = defaultdict(list)
        for h in endpoints["ana"].hits:
            ana[h.webhook_id].append(h)
        retried = [hits for hits in ana.values() if len(hits) > 1 and hits[0].status == 503]
        assert retried, "some flaky delivery needed a retry"
        assert all(hits[1].at - hits[0].at >= SCHEDULE[0] * 0.8 for hits in retried)

        # Dead letters: one per undeliverable message, with a reason and without the secret.
        dead = await read_json_topic(spec.stack, f"{fault.app_id}.notifications.dead")
        reasons = Counter(d["reason"].split(" after")[0].split(":")[0] for d in dead)
        assert {d["webhook_id"] for d in dead} >= set(ben), dead
        assert reasons["endpoint gone (410)"] == len(ben), reasons
        assert all("secret" not in d and SECRET not in orjson.dumps(d).decode() for d in dead)
        slow_dead = [d for d in dead if d["endpoint"] == f"http://127.0.0.1:{endpoints['cid'].port}"]
        # Every message the slow endpoint saw is dead-lettered; so may be some it never saw: deferred by
        # its open circuit from the first try until the schedule's span ran out.
        assert {d["webhook_id"] for d in slow_dead} >= set(cid), (slow_dead, cid)
        assert all(d["reason"].startswith(("retries exhausted", "endpoint circuit open")) for d in slow_dead), slow_dead

        # Each lead that went to ben or cid says why it moved.
        moved = {h.lead_id for ep in ("ben", "cid") for h in endpoints[ep].hits}
        for lid in moved:
            kinds = [e["kind"] for e in states[lid]["timeline"]]
            assert "notification_dead_lettered" in kinds and "reassigned" in kinds, kinds
        # Capacity came back for the unreachable reps.
        async with api.get(f"{worker.url}/v1/teams/sdr") as r:
            team = await r.json()
        load = {rep["rep_id"]: rep["open_leads"] for rep in team["reps"]}
        assert load["ben"] == 0 and load["cid"] == 0 and load["ana"] + load["dot"] == 16, load
        # The reps whose endpoints are unreachable were set offline: no more leads are offered to them.
        presence = {rep["rep_id"]: rep["presence"] for rep in team["reps"]}
        assert presence == {"ana": "available", "ben": "offline", "cid": "offline", "dot": "available"}, presence
    finally:
        worker.stop()


async def _reps(api: aiohttp.ClientSession, worker: Worker, n: int) -> bool:
    async with api.get(f"{worker.url}/v1/teams/sdr") as r:
        return r.status == 200 and len((await r.json())["reps"]) == n


def _stop_service(stack: StackConfig, name: str) -> None:
    """``leadflow stack down <name>``: the service alone, by the pid the stack recorded."""
    assert stack_status(stack)[name].running, f"{name} is not running"
    stack_down(stack, [name], progress=lambda _: None)


def _start_service(stack: StackConfig, name: str) -> None:
    """``leadflow stack up <name>``: back on the same data, ready when this returns."""
    stack_up(stack, [name], progress=lambda _: None)


async def _assigned_once(stack: StackConfig, app_id: str, lead_ids: set[str]) -> dict[str, set[tuple[str, str]]]:
    events = await read_json_topic(stack, f"{app_id}.lead.events")
    assignments: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for e in events:
        if e["type"] == "lead.assigned":
            assignments[e["lead_id"]].add((e["data"]["route_id"], e["data"]["rep_id"]))
    return assignments


@pytest.mark.timeout(300)
async def test_kafka_restarted_mid_stream_loses_no_accepted_lead(
    spec: WorkerSpec, endpoints: dict[str, Endpoint], api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = _config({"dot": endpoints["dot"].url}, capacity=500)
    worker = Worker(spec)
    accepted: set[str] = set()
    try:
        await worker.wait_ready()
        await eventually(lambda: _reps(api, worker, 1), what="the rep")

        async def feed(first: int, n: int) -> tuple[int, float]:
            """Post until accepted; returns how many 503s it took and how long."""
            leads = [{"email": f"kafka{i}@restart.example"} for i in range(first, first + n)]
            refused, started = 0, time.monotonic()
            while True:
                try:
                    status, body, headers = await _post(api, worker, leads)
                except (aiohttp.ClientError, TimeoutError):
                    status, body, headers = 0, None, {}
                if status == 202:
                    accepted.update(item["lead_id"] for item in body["results"])
                    return refused, time.monotonic() - started
                assert status == 503 and headers.get("Retry-After"), (status, body)
                refused += 1
                await asyncio.sleep(0.5)

        await feed(0, 40)
        # Mid-stream: some of these leads are routed and notified, the rest still on their way.
        await eventually(lambda: len(endpoints["dot"].delivered()) >= 5, interval=0.05, what="the stream flowing")
        await asyncio.to_thread(_stop_service, spec.stack, "kafka")
        down_at = time.monotonic()
        # While Kafka is down, a post is refused with 503 + Retry-After (never a 500, never a lie).
        outage = asyncio.create_task(feed(40, 40))
        await asyncio.sleep(6)
        assert not outage.done(), "a lead was accepted while Kafka was down"
        await asyncio.to_thread(_start_service, spec.stack, "kafka")
        up_at = time.monotonic()
        refused, _ = await outage
        assert refused >= 1
        await feed(80, 40)
        assert len(accepted) == 120

        async def all_assigned() -> dict[str, set[tuple[str, str]]] | None:
            a = await _assigned_once(spec.stack, spec.app_id, accepted)
            return a if set(a) >= accepted else None

        assignments = await eventually(all_assigned, timeout=120, interval=1.0, what="all 120 leads assigned")
        assert all(len(assignments[lid]) == 1 for lid in accepted)
        await eventually(lambda: set(endpoints["dot"].delivered()) >= accepted, timeout=60,
                         what="every assignment webhook after the restart")
        print(f"\nkafka restart: down {up_at - down_at:.1f} s, {refused} post(s) refused with 503, "
              f"120 leads accepted, all assigned once")
    finally:
        worker.stop()
        await asyncio.to_thread(stack_up, spec.stack, progress=lambda _: None)  # leave it running for others


@pytest.mark.timeout(240)
async def test_redis_stopped_capture_and_routing_go_on(
    spec: WorkerSpec, endpoints: dict[str, Endpoint], api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = _config({"dot": endpoints["dot"].url}, capacity=100)
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        await eventually(lambda: _reps(api, worker, 1), what="the rep")
        await asyncio.to_thread(_stop_service, spec.stack, "redis")
        status, body, _ = await _post(api, worker, [{"email": f"redis{i}@down.example"} for i in range(20)])
        assert status == 202 and body["accepted"] == 20, body
        lead_ids = {item["lead_id"] for item in body["results"]}
        # The same person again, from another campaign (an identical resubmission is not a touch,
        # 5f6258e): without Redis the API cannot tell, but the lead table does.
        again_status, again, _ = await _post(api, worker, [{"email": "redis0@down.example", "campaign": "again"}])
        assert again_status == 202, again
        await eventually(lambda: set(endpoints["dot"].delivered()) >= lead_ids, timeout=60,
                         what="every lead routed and notified without Redis")
        assert await _metric(worker, "leadflow_redis_degraded_total") > 0
        repeat = next(iter(item["lead_id"] for item in again["results"]))
        state = await _lead(api, worker, repeat)
        assert state["touches"] == 2, state  # merged into the lead, not a second lead
        assignments = await _assigned_once(spec.stack, spec.app_id, lead_ids)
        assert all(len(assignments[lid]) == 1 for lid in lead_ids)
        assert Counter(h.lead_id for h in endpoints["dot"].hits if h.kind == "lead.assigned")[repeat] == 1
    finally:
        worker.stop()
        await asyncio.to_thread(stack_up, spec.stack, progress=lambda _: None)


#: The API's bound on one write to Kafka (``streams/web.py``: ``_ACK_TIMEOUT_S``), plus slack.
_WRITE_BOUND_S = 5.0 + 1.5


@pytest.mark.timeout(240)
async def test_kafka_down_a_capture_is_refused_quickly_and_honestly_the_worker_unready_and_the_retry_gets_through(
    spec: WorkerSpec, endpoints: dict[str, Endpoint], api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = _config({"dot": endpoints["dot"].url})
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        await eventually(lambda: _reps(api, worker, 1), what="the rep")

        async def capture(email: str, key: str | None = None) -> tuple[int, Any, Any, float]:
            headers = {"Idempotency-Key": key} if key else {}
            started = time.monotonic()
            async with api.post(f"{worker.url}/v1/leads", json={"email": email}, headers=headers) as r:
                return r.status, await r.json(content_type=None), r.headers, time.monotonic() - started

        async def readyz() -> tuple[int, Any]:
            async with api.get(f"{worker.url}/readyz") as r:
                return r.status, await r.json()

        async def healthz() -> int:
            async with api.get(f"{worker.url}/healthz") as r:
                return r.status

        await asyncio.to_thread(_stop_service, spec.stack, "kafka")
        # The first capture of the outage is how the worker learns of it: it waits out the bound.
        answers = [await capture("first@outage.example")]
        # The next ones, while the worker knows Kafka did not take its last write, are answered at once.
        answers += [await capture(f"next{i}@outage.example") for i in range(5)]
        seconds = [round(a[3], 2) for a in answers]
        print(f"\nkafka down: 503 after {seconds} s; first: {answers[0][1]['error']['message']!r}; "
              f"next: {answers[1][1]['error']['message']!r}")
        for status, body, headers, _ in answers:
            assert status == 503 and body["error"]["code"] == "unavailable", body
            assert int(headers["Retry-After"]) >= 1, headers
            message = body["error"]["message"]
            # No key was sent: no promise about "the same Idempotency-Key", but how to make a retry safe.
            assert "same Idempotency-Key" not in message and "never captures a lead twice" not in message, message
        assert answers[0][3] <= _WRITE_BOUND_S, seconds
        assert max(a[3] for a in answers[1:]) < 1.0, seconds
        # Counted once each (Faust initializes its web server twice: the API must be mounted once).
        assert await _metric(worker, 'leadflow_http_requests_total{route="/v1/leads",status="503"}') == len(answers)
        # Not ready: a load balancer stops sending captures this worker could only refuse. Alive:
        # the orchestrator must not kill a worker that only waits for Kafka.
        ready_status, ready = await readyz()
        print(f"/readyz while Kafka is down: {ready_status} {ready}")
        assert ready_status == 503 and ready["detail"].startswith("Kafka has not taken this worker's writes"), ready
        assert await healthz() == 200
        await asyncio.sleep(5)  # a few checks of the broker, all failing: still unready, still alive
        ready_status, ready = await readyz()
        assert ready_status == 503 and "the last check of the broker" in ready["detail"], ready
        assert await healthz() == 200
        # Prometheus sees it too (LeadflowKafkaRefusesWrites): lag and `up` do not move.
        assert await _metric(worker, "leadflow_kafka_writes_refused_seconds") >= 5

        await asyncio.to_thread(_start_service, spec.stack, "kafka")
        # No capture reaches an unready worker: its own check of the broker makes it ready again.
        back_at = time.monotonic()

        async def ready_again() -> bool:
            return (await readyz())[0] == 200

        await eventually(ready_again, timeout=90, interval=0.5, what="/readyz 200 once Kafka is back")
        print(f"/readyz 200 {time.monotonic() - back_at:.1f} s after Kafka was started again: "
              f"{(await readyz())[1]['detail']}")
        # The client retries as told (Retry-After) until the capture is accepted.
        retried_at = time.monotonic()
        while True:
            status, body, headers, _ = await capture("first@outage.example", key="outage-retry-1")
            if status == 202:
                break
            assert status == 503 and headers.get("Retry-After"), (status, body)
            assert time.monotonic() - retried_at < 90, "Kafka is back but captures are still refused"
            await asyncio.sleep(int(headers["Retry-After"]))
        print(f"accepted {time.monotonic() - retried_at:.1f} s after /readyz was 200 again")
        lead_id = body["lead_id"]
        await eventually(lambda: lead_id in endpoints["dot"].delivered(), timeout=60,
                         what="the retried lead routed and notified")
        assert "Kafka" not in (await readyz())[1]["detail"]
        assert await _metric(worker, "leadflow_kafka_writes_refused_seconds") == 0
        log = worker.log(lines=5000)
        assert "Exception in callback" not in log and "CancelledError" not in log, log
    finally:
        worker.stop()
        await asyncio.to_thread(stack_up, spec.stack, progress=lambda _: None)  # leave it running for others


async def _topic_config(stack: StackConfig, topic: str, configs: dict[str, str]) -> None:
    """Set ``topic``'s configs through Kafka's AlterConfigs API (what ``kafka-configs.sh --alter``
    sends, without its JVM's start)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        responses = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
    finally:
        await admin.close()
    errors = [(code, message) for r in responses for code, message, *_ in r.resources if code]
    assert not errors, errors


@pytest.mark.timeout(180)
async def test_min_insync_replicas_above_the_replicas_the_broker_takes_writes_and_the_worker_stays_ready(
    spec: WorkerSpec, endpoints: dict[str, Endpoint], api: aiohttp.ClientSession
) -> None:
    """The broker check's acks=all rule (in-sync replicas against min.insync.replicas) on the real
    broker: Kafka 4 caps the setting at a partition's replicas, so on this one-broker stack
    min.insync.replicas=2 refuses nothing, and a worker that called it a refusal would go unready
    for nothing. The check asks the broker for the setting (DescribeConfigs) each time: a failing
    request would make the idle worker unready too."""
    spec.config_yaml = _config({"dot": endpoints["dot"].url})
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        await _topic_config(spec.stack, f"{spec.app_id}.leads.inbound", {"min.insync.replicas": "2"})
        status, body, _ = await _post(api, worker, [{"email": "isr@caps.example"}])
        assert status == 202 and body["accepted"] == 1, body
        await asyncio.sleep(11)  # past the idle bound: the next /readyz checks the broker
        seen = []
        for _ in range(4):
            async with api.get(f"{worker.url}/readyz") as r:
                seen.append((r.status, (await r.json())["detail"]))
            await asyncio.sleep(0.5)
        assert all(status == 200 for status, _ in seen), seen
        assert "does not answer this idle worker" not in worker.log(lines=2000)
    finally:
        worker.stop()

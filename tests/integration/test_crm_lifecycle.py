"""The rest of the lead lifecycle on the real stack: the MQL gate, recycling, two more CRMs, learning on two workers.

* One worker, the HubSpot-compatible adapter, ``mql_threshold: 40``, ``recycle_after: 3s``: a
  below-threshold lead goes to nurture (``lead.nurture``, never routed); a demo request with a
  low score is an MQL and is routed; a CRM down for the whole retry schedule shows retries
  pending, then one dead letter, in ``/metrics``; the deal is upserted once in the stand-in
  and a replayed upsert keeps one; a lost deal is routed again after ``recycle_after``, once; a lost
  deal reopened and won is won, not routed again, and moved on the board.
* Two workers, the generic signed-webhook adapter: one opportunity by leadflow's id (replay keeps
  one); a lost deal recorded through one worker lowers the scores computed on both; the worker
  owning a lost deal's lead is killed (-9) while its recycle timer waits and restarted: the lead
  is routed again exactly once, both workers are ready and live, and the next outcome, recorded
  through the restarted worker, again reaches the scoring on both.
"""
from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

from ops.stack import StackConfig
from ops.standins.crm import CrmStandIn
from rules.commands import UpsertOpportunity
from streams.codec import encode
from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, get_lead, post_lead, read_json_topic

EVENTS_SECRET = "whsec_" + base64.b64encode(b"crm-events-secret-for-tests-32b!").decode()
REP_SECRET = "whsec_" + base64.b64encode(b"sdr-ana-webhook-secret-32-bytes!").decode()
BANT = {"budget": "approved", "authority": "decision_maker", "need": "leads wait two days",
        "timeline": "this_quarter"}
#: A webinar lead in segment mid/logistics: 52 points with no outcomes yet (docs/QUALIFICATION.md).
PROFILE = {"title": "Director of Operations", "company": "Northwind", "country": "ES", "source": "webinar",
           "attributes": {"employees": "120", "industry": "logistics"}}


def _config(receiver: Receiver, crm: str, *, scoring: str = "") -> str:
    receiver.secrets["ana"] = REP_SECRET
    return f"""
routing: {{default_team: sdr}}
teams:
  - id: sdr
    reps:
      - {{id: ana, capacity: 50, webhook_url: "{receiver.hook_url('ana')}", webhook_secret: "{REP_SECRET}"}}
{scoring}
crm:
{crm}
  timeout: 2s
  retry_delays: [0.3, 0.5, 1, 1.5]
  events_secret_env: IT_CRM_EVENTS
"""


@pytest.fixture
async def standin(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CrmStandIn]:
    s = CrmStandIn()
    await s.start()
    monkeypatch.setenv("IT_CRM_EVENTS", EVENTS_SECRET)
    monkeypatch.setenv("IT_HS_TOKEN", s.hubspot_token)
    monkeypatch.setenv("IT_CRM_WEBHOOK", s.webhook_secret)
    yield s
    await s.stop()


def _signed(body: dict[str, Any], msg_id: str) -> tuple[bytes, dict[str, str]]:
    raw = orjson.dumps(body)
    at = datetime.now(UTC)
    return raw, {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
                 "webhook-signature": Webhook(EVENTS_SECRET).sign(msg_id, at, raw.decode()),
                 "Content-Type": "application/json"}


async def _crm_event(api: aiohttp.ClientSession, worker: Worker, kind: str, lead_id: str, timestamp: str | None = None,
                     **data: Any) -> None:
    stamp = {"timestamp": timestamp} if timestamp is not None else {}
    raw, headers = _signed({"type": kind, **stamp, "data": {"lead_id": lead_id, **data}}, f"evt-{kind}-{lead_id}")
    async with api.post(f"{worker.url}/v1/crm/events", data=raw, headers=headers) as r:
        assert r.status == 202, await r.text()


async def _qualify(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> None:
    async with api.post(f"{worker.url}/v1/leads/{lead_id}/qualification",
                        json={"framework": "BANT", "answers": BANT, "rep_id": "ana"}) as r:
        assert r.status == 202, await r.text()
        assert (await r.json())["sql"] is True


async def _when(api: aiohttp.ClientSession, worker: Worker, lead_id: str, **expected: Any) -> Any:
    """The lead's view once every ``field == value`` holds (else ``None``, for ``eventually``)."""
    view = await get_lead(api, worker, lead_id)
    if view is None or any(view.get(k) != v for k, v in expected.items()):
        return None
    return view


async def _synced(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> Any:
    view = await get_lead(api, worker, lead_id)
    return view if view and view["opportunity"] and view["opportunity"]["synced_at"] else None


async def _replay_upsert(stack: StackConfig, app_id: str, lead_id: str, opportunity_id: str, times: int) -> None:
    """Put the same opportunity on ``crm.outbox`` again, as a crash replay would."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        replay = UpsertOpportunity(opportunity_id=opportunity_id, lead_id=lead_id,
                                   payload={"name": "replayed", "created_at": "2026-03-02T10:00:00+00:00"},
                                   created_at=datetime.now(UTC))
        for _ in range(times):
            await producer.send_and_wait(f"{app_id}.crm.outbox", key=lead_id.encode(), value=encode(replay))
    finally:
        await producer.stop()


async def _metric(worker: Worker, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on the worker's ``/metrics`` whose labels include ``labels``."""
    async with aiohttp.ClientSession() as s, s.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _failed(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> Any:
    view = await get_lead(api, worker, lead_id)
    return view if view and view["opportunity"] and view["opportunity"]["sync_failed"] else None


async def _events(stack: StackConfig, app_id: str) -> list[dict[str, Any]]:
    """Every ``lead.events`` record so far."""
    return await read_json_topic(stack, f"{app_id}.lead.events", idle_s=1.0)



def _assigned_webhooks(receiver: Receiver, lead_id: str) -> list[dict[str, Any]]:
    return [d for d in receiver.for_lead(lead_id) if d["rep_id"] == "ana" and d["payload"]["type"] == "lead.assigned"]


def _of(events: list[dict[str, Any]], lead_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["lead_id"] == lead_id and e["type"] == kind]


@pytest.mark.timeout(120)
async def test_mql_gate_hubspot_dead_letter_and_a_lost_deal_routed_again_once(
    spec: WorkerSpec, standin: CrmStandIn, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = _config(receiver, f"""  adapter: hubspot
  hubspot: {{base_url: "{standin.url}", token_env: IT_HS_TOKEN}}
  recycle_after: 3s""", scoring="scoring: {mql_threshold: 40}")
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        # Below the threshold: nurture. A demo request with a low score: a hot source, routed.
        cold = await post_lead(api, worker, "kid@gmail.com", source="webinar", message="homework for school")
        hot = await post_lead(api, worker, "buyer@gmail.com", source="demo-request")
        doomed = await post_lead(api, worker, "third@gmail.com", source="demo-request")
        nurtured = await eventually(lambda: _when(api, worker, cold, status="nurture"), what="cold in nurture")
        assert nurtured["routing"] == "released" and nurtured["assignment"] is None
        assert nurtured["score"]["value"] < 40, nurtured["score"]
        for lead_id in (hot, doomed):
            await eventually(lambda: _assigned_webhooks(receiver, lead_id), timeout=30, what="hot lead routed")
            view = await _when(api, worker, lead_id, status="mql")
            assert view is not None and view["score"]["value"] < 40, view
            assert _assigned_webhooks(receiver, lead_id)[0]["verified"]

        # HubSpot down for the whole retry schedule: retries pending, then one dead letter, all in /metrics.
        standin.down = True
        await _qualify(api, worker, doomed)
        await eventually(lambda: _metric(worker, "leadflow_crm_retries_pending"), what="a retry pending")
        failed = await eventually(lambda: _failed(api, worker, doomed), timeout=30, what="opportunity.sync_failed")
        assert failed["opportunity"]["sync_failed"].startswith("gave up after 5 attempts"), failed["opportunity"]
        standin.down = False
        assert await _metric(worker, "leadflow_crm_dead_letters_total", reason="gave_up") == 1
        assert await _metric(worker, "leadflow_crm_calls_total", outcome="transient") == 5

        async def nothing_pending() -> bool:
            return await _metric(worker, "leadflow_crm_retries_pending") == 0

        await eventually(nothing_pending, what="no retry pending")
        (dead,) = await read_json_topic(spec.stack, f"{spec.app_id}.crm.outbox.dead", idle_s=1.0)
        assert dead["lead_id"] == doomed and dead["attempts"] == 5 and dead["crm"] == "hubspot"
        assert standin.stored("hubspot") == []

        # HubSpot: the SQL becomes one deal keyed by leadflow's id; a replayed upsert keeps one.
        await _qualify(api, worker, hot)
        synced = await eventually(lambda: _synced(api, worker, hot), what="the deal synced")
        opportunity_id = synced["opportunity"]["opportunity_id"]
        (deal,) = standin.stored("hubspot")
        assert deal.key == f"leadflow_id={opportunity_id}" and synced["opportunity"]["crm_id"] == deal.crm_id
        assert deal.fields["pipeline"] == "default" and "Score" in deal.fields["description"]
        await _replay_upsert(spec.stack, spec.app_id, hot, opportunity_id, 2)
        await eventually(lambda: standin.stored("hubspot")[0].writes >= 3, what="the replayed upserts")
        assert len(standin.stored("hubspot")) == 1

        # Lost: recycled, then routed again after recycle_after (3 s), once.
        lost_at = time.monotonic()
        await _crm_event(api, worker, "opportunity.lost", hot, reason="timing")
        # The doomed deal (open in leadflow, its upsert dead-lettered) is lost, then reopened and won:
        # a correction (202). Its own recycle timer, due with hot's, then finds a won lead.
        await _crm_event(api, worker, "opportunity.lost", doomed, reason="no budget")
        await eventually(lambda: _when(api, worker, doomed, status="recycled"), what="doomed recycled")
        await _crm_event(api, worker, "opportunity.won", doomed, amount=48000)
        await eventually(lambda: _when(api, worker, doomed, status="won"), what="doomed won after lost")
        await eventually(lambda: _when(api, worker, hot, status="recycled"), what="hot recycled")
        back = await eventually(lambda: _when(api, worker, hot, cycle=2, routing="assigned"), timeout=30,
                                what="hot routed again")
        waited = time.monotonic() - lost_at
        assert 3.0 <= waited < 10.0, waited
        assert back["status"] == "mql" and back["opportunity"] is None
        await eventually(lambda: len(_assigned_webhooks(receiver, hot)) == 2, what="the second lead.assigned")
        await asyncio.sleep(1.5)  # room for a duplicate to show up (a due timer fires within 0.2 s)

        events = await _events(spec.stack, spec.app_id)
        _routed_again_once(events, receiver, hot)
        (mql,) = [e for e in _of(events, hot, "lead.mql") if e["cycle"] == 1]
        assert mql["data"]["why"] == "hot source demo-request" and mql["data"]["score"] < 40, mql
        # The nurtured lead: lead.nurture downstream, never an MQL, never routed, no webhook.
        (nurture,) = _of(events, cold, "lead.nurture")
        assert nurture["data"]["threshold"] == 40 and "below the MQL threshold" in nurture["data"]["why"]
        assert not _of(events, cold, "lead.mql") and not _of(events, cold, "lead.assigned")
        assert not receiver.for_lead(cold)
        assert not _of(events, doomed, "opportunity.synced") and len(_of(events, doomed, "opportunity.sync_failed")) == 1
        # The corrected deal: won, not routed again, moved on the board, its revenue counted.
        assert (await _when(api, worker, doomed, status="won", cycle=1)) is not None
        assert len(_assigned_webhooks(receiver, doomed)) == 1
        assert [e["data"].get("corrects") for e in _of(events, doomed, "opportunity.won")] == ["lost"]
        assert await _metric(worker, "leadflow_lifecycle_transitions_total", to="won") == 1
        assert await _metric(worker, "leadflow_lifecycle_transitions_total", **{"from": "lost", "to": "won"}) == 1
        assert await _metric(worker, "leadflow_won_revenue_total") == 48000
        board = (await read_json_topic(spec.stack, f"{spec.app_id}.outcomes.board", idle_s=1.0))[-1]["data"]
        assert board["tallies"]["source:demo-request"] == {"won": 1.0, "lost": 1.0}, board["tallies"]

        # Then the CRM moves the won deal back into a stage: a reopen (was a 409), its won off the board.
        # With the CRM's time of the move: events are ordered by the CRM's own times only.
        await _crm_event(api, worker, "opportunity.stage_changed", doomed, stage="contractsent",
                         timestamp=datetime.now(UTC).isoformat())
        reopened = await eventually(lambda: _when(api, worker, doomed, status="converted"), what="doomed reopened")
        assert (reopened["cycle"], reopened["opportunity"]["status"], reopened["opportunity"]["stage"]) == (
            1, "open", "contractsent")
        assert await _metric(worker, "leadflow_lifecycle_transitions_total", **{"from": "won", "to": "reopened"}) == 1

        async def won_taken_off() -> bool:
            board = (await read_json_topic(spec.stack, f"{spec.app_id}.outcomes.board", idle_s=1.0))[-1]["data"]
            return bool(board["tallies"]["source:demo-request"] == {"won": 0.0, "lost": 1.0})

        await eventually(won_taken_off, what="the reopened deal's won off the board")

        # A lost that happened an hour before the reopen, delivered now (a CRM retry out of order): stale,
        # 200 ignored (no redelivery), and nothing moves: the deal stays open, the lead converted.
        stale_at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        raw, headers = _signed({"type": "opportunity.lost", "timestamp": stale_at,
                                "data": {"lead_id": doomed, "reason": "No budget"}}, f"evt-stale-lost-{doomed}")
        async with api.post(f"{worker.url}/v1/crm/events", data=raw, headers=headers) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["status"] == "ignored"

        async def ignored() -> list[dict[str, Any]]:
            return _of(await _events(spec.stack, spec.app_id), doomed, "opportunity.event_ignored")

        (said,) = await eventually(ignored, what="opportunity.event_ignored on lead.events")
        assert said["data"]["kind"] == "lost" and said["data"]["why"].startswith("stale:")
        view = await get_lead(api, worker, doomed)
        assert view is not None and (view["status"], view["opportunity"]["status"]) == ("converted", "open")
        assert view["opportunity"]["moved_at"] is not None and view["opportunity"]["crm_moved_at"] is not None
    finally:
        worker.stop()


def _routed_again_once(events: list[dict[str, Any]], receiver: Receiver, lead_id: str) -> dict[str, Any]:
    """Assert a lost deal's lead went back to routing once (one new route, one more webhook); its event."""
    recycled = [e["data"]["to"] for e in _of(events, lead_id, "lead.recycled")]
    assert recycled == ["nurture", "routing"], (lead_id, recycled)
    routes = {e["data"]["route_id"] for e in _of(events, lead_id, "lead.assigned") if e["cycle"] == 2}
    assert len(routes) == 1, routes
    hooks = _assigned_webhooks(receiver, lead_id)
    assert len(hooks) == 2 and len({h["headers"]["webhook-id"] for h in hooks}) == 2, hooks
    (routed_again,) = [e for e in _of(events, lead_id, "lead.recycled") if e["data"]["to"] == "routing"]
    return routed_again


async def _owns_partitions(api: aiohttp.ClientSession, workers: tuple[Worker, ...]) -> bool:
    for w in workers:
        try:
            async with api.get(f"{w.url}/readyz") as r:
                body = await r.json()
        except (aiohttp.ClientError, TimeoutError):
            return False
        if r.status != 200 or not body["detail"][:1].isdigit() or body["detail"].startswith("0 partition"):
            return False
    return True


async def _twins(api: aiohttp.ClientSession, via: Worker, tag: str, n: int) -> list[str]:
    """``n`` leads of the same profile (segment mid/logistics, source webinar), captured through ``via``."""
    async with api.post(f"{via.url}/v1/leads", json={"leads": [
            {"email": f"twin{i}.{tag}@southwind{i}.example", **PROFILE} for i in range(n)]}) as r:
        assert r.status == 202, await r.text()
        return [item["lead_id"] for item in (await r.json())["results"]]


async def _scores(api: aiohttp.ClientSession, via: Worker, lead_ids: list[str]) -> dict[str, tuple[int, str]] | None:
    """Each lead's learned points and the worker that owns it (``via`` or the one it relays to)."""
    found = {}
    for lead_id in lead_ids:
        async with api.get(f"{via.url}/v1/leads/{lead_id}") as r:
            if r.status != 200:
                return None
            view = await r.json(content_type=None)
            owner = r.headers.get("X-Leadflow-Owner", "self")
        if not view.get("score"):
            return None
        found[lead_id] = (view["score"]["outcomes"], owner)
    return found


async def _close(api: aiohttp.ClientSession, worker: Worker, standin: CrmStandIn, lead_id: str, reason: str) -> None:
    """Qualify the lead (an opportunity through the webhook CRM) and lose it with ``reason``."""
    await eventually(lambda: _when(api, worker, lead_id, routing="assigned"), timeout=30, what="lead assigned")
    await _qualify(api, worker, lead_id)
    await eventually(lambda: _synced(api, worker, lead_id), what="the opportunity synced")
    await _crm_event(api, worker, "opportunity.lost", lead_id, reason=reason)
    await eventually(lambda: _when(api, worker, lead_id, status="recycled"), what="recycled")


async def _owner(api: aiohttp.ClientSession, workers: tuple[Worker, Worker], lead_id: str) -> tuple[Worker, Worker]:
    """``(the worker that owns the lead, the other one)``, from whether a read through the first is relayed."""
    async with api.get(f"{workers[0].url}/v1/leads/{lead_id}") as r:
        assert r.status == 200
        relayed_to = r.headers.get("X-Leadflow-Owner")
    if relayed_to is None:
        return workers
    assert relayed_to.endswith(f":{workers[1].port}"), relayed_to
    return workers[1], workers[0]


@pytest.mark.timeout(180)
async def test_webhook_crm_learning_on_two_workers_and_a_recycle_timer_across_a_kill(
    spec: WorkerSpec, standin: CrmStandIn, receiver: Receiver, api: aiohttp.ClientSession
) -> None:
    spec.config_yaml = _config(receiver, f"""  adapter: webhook
  webhook: {{url: "{standin.url}/crm/webhook", secret_env: IT_CRM_WEBHOOK}}
  recycle_after: 3s""")
    first, second = Worker(spec), Worker(spec)  # started together: one start-up's wait for both
    replacement: Worker | None = None
    try:
        await asyncio.gather(first.wait_ready(), second.wait_ready())
        await eventually(lambda: _owns_partitions(api, (first, second)), timeout=60, what="partitions on both")

        # The generic CRM: one opportunity by leadflow's id, signed; a replayed upsert keeps one.
        marta = await post_lead(api, first, "marta@northwind.example", **PROFILE)
        baseline = await eventually(lambda: _when(api, second, marta, routing="assigned"), timeout=30,
                                    what="the lead assigned")
        assert baseline["score"]["outcomes"] == 0
        await _close(api, second, standin, marta, "no budget")
        view = await get_lead(api, first, marta)
        opportunity_id = view["opportunity"]["opportunity_id"]
        (stored,) = standin.stored("webhook")
        assert stored.key == opportunity_id and view["opportunity"]["crm_id"] == stored.crm_id
        assert stored.fields["lead_id"] == marta and stored.fields["qualification"]["answers"] == BANT
        await _replay_upsert(spec.stack, spec.app_id, marta, opportunity_id, 2)
        await eventually(lambda: standin.stored("webhook")[0].writes >= 3, what="the replayed upserts")
        assert len(standin.stored("webhook")) == 1

        # The loss (recorded through the second worker) lowers twins' scores on both workers.
        twins = await _twins(api, first, "a", 8)
        after_one = await eventually(lambda: _scores(api, first, twins), timeout=30, what="twins scored")
        assert len({owner for _, owner in after_one.values()}) == 2, f"twins on one worker only: {after_one}"
        assert all(points < 0 for points, _ in after_one.values()), after_one
        one_loss = min(points for points, _ in after_one.values())

        # Another deal lost; the worker owning its lead is killed while the recycle timer waits.
        lost = await post_lead(api, second, "jon@northwind.example", **PROFILE)
        await _close(api, first, standin, lost, "bad fit")
        await asyncio.sleep(1.2)  # the CRM agent's offset and its timer row committed
        owner, survivor = await _owner(api, (first, second), lost)
        assert await _when(api, survivor, lost, status="recycled", cycle=1), "the timer fired before the kill"
        owner.kill()
        killed_wall = datetime.now(UTC)
        replacement = Worker(spec, data_dir=owner.data_dir)
        workers = (survivor, replacement)
        await replacement.wait_ready()
        await eventually(lambda: _owns_partitions(api, workers), timeout=60, what="partitions on both again")
        await eventually(lambda: _when(api, survivor, lost, cycle=2, routing="assigned"), timeout=40,
                         what="the lost deal's lead routed again after the kill")

        # A third loss, recorded through the restarted worker, reaches both workers' scoring.
        third = await post_lead(api, replacement, "ines@northwind.example", **PROFILE)
        await _close(api, replacement, standin, third, "no budget")
        more_twins = await _twins(api, survivor, "b", 8)
        after_three = await eventually(lambda: _scores(api, replacement, more_twins), timeout=30,
                                       what="new twins scored")
        assert len({owner for _, owner in after_three.values()}) == 2, f"twins on one worker only: {after_three}"
        assert all(points < one_loss for points, _ in after_three.values()), (one_loss, after_three)
        for _ in range(4):
            for w in workers:
                async with api.get(f"{w.url}/healthz") as r:
                    assert r.status == 200
                async with api.get(f"{w.url}/readyz") as r:
                    assert r.status == 200, await r.text()
            await asyncio.sleep(0.5)
        assert len(standin.stored("webhook")) == 3

        await eventually(lambda: len(_assigned_webhooks(receiver, lost)) == 2, what="its second lead.assigned")
        events = await _events(spec.stack, spec.app_id)
        for lead_id in (marta, lost):
            routed_again = _routed_again_once(events, receiver, lead_id)
        # The killed worker's timer fired after the kill: it was durable, not in that worker's memory.
        assert datetime.fromisoformat(routed_again["at"]) > killed_wall, (routed_again, killed_wall)
    finally:
        first.stop()
        second.stop()
        if replacement is not None:
            replacement.stop()

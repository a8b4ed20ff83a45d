"""The demo pieces, without Kafka: receiver verification, feed data, view rendering, disposer."""
from __future__ import annotations

import asyncio
import io
import itertools
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import email_validator
import orjson
import phonenumbers
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from ops.demo.disposer import DemoDisposer
from ops.demo.feed import COUNTRIES, DemoFeed, generate_leads
from ops.demo.receiver import Delivery, DemoReceiver, verify_signature
from ops.demo.run import load_demo_settings
from ops.demo.stats import DemoStats, percentile
from ops.demo.view import LiveView, parse_broker, render, summary_line
from sla.clock import FakeClock

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SECRETS = {
    "ana": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "ben": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
}
EMAIL = "maria.lopez@contoso.example"
PHONE = "+12025550123"


def _body(lead_id: str = "ld_abc123", captured: datetime = NOW - timedelta(seconds=0.25)) -> bytes:
    return orjson.dumps({
        "type": "lead.assigned",
        "timestamp": NOW,
        "data": {
            "lead_id": lead_id, "cycle": 1,
            "lead": {"email": EMAIL, "phone": PHONE, "company": "Contoso", "source": "web_form"},
            "rep": {"rep_id": "ana", "name": "Ana"}, "team_id": "sdr-emea",
            "why": {"reason": "weighted round robin: highest credit (2)", "strategy": "weighted_round_robin",
                    "candidates": []},
            "sla_deadline": NOW + timedelta(minutes=5),
            "attribution": {"first_touch": {"at": captured - timedelta(days=3)}, "last_touch": {"at": captured}},
            "timeline": [],
        },
    })


def _headers(body: bytes, *, secret: str = SECRETS["ana"], msg_id: str = "msg_1", at: datetime = NOW) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature,
            "content-type": "application/json"}


@pytest.fixture
async def receiver() -> AsyncIterator[DemoReceiver]:
    async with DemoReceiver(SECRETS, port=0, clock=FakeClock(NOW)) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> int:
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


# --- receiver ---------------------------------------------------------------------------


async def test_receiver_accepts_a_delivery_signed_by_standard_webhooks(receiver, session) -> None:
    seen: list[Delivery] = []
    receiver.subscribe(seen.append)
    body = _body()
    assert await _post(session, receiver.hook_url("ana"), body, _headers(body)) == 204
    (delivery,) = seen
    assert delivery.verified and not delivery.duplicate and delivery.status == 204
    assert (delivery.rep_id, delivery.webhook_id, delivery.event_type, delivery.lead_id) == (
        "ana", "msg_1", "lead.assigned", "ld_abc123")
    assert delivery.latency_s == pytest.approx(0.25)  # from the last touch, not the 3-day-old first one
    assert receiver.url.startswith("http://127.0.0.1:") and not receiver.url.endswith(":0")


def _tampered(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"Contoso", b"Contosa"), _headers(body)


@pytest.mark.parametrize("forge", [
    pytest.param(_tampered, id="tampered-body"),
    pytest.param(lambda b: (b, _headers(b, secret=SECRETS["ben"])), id="other-reps-secret"),
    pytest.param(lambda b: (b, _headers(b, at=NOW - timedelta(minutes=6))), id="stale-timestamp"),
    pytest.param(lambda b: (b, _headers(b, at=NOW + timedelta(minutes=6))), id="future-timestamp"),
    pytest.param(lambda b: (b, {k: v for k, v in _headers(b).items() if k != "webhook-signature"}),
                 id="no-signature"),
])
async def test_receiver_rejects_a_forged_delivery_with_401(
    receiver, session, forge: Callable[[bytes], tuple[bytes, dict[str, str]]]
) -> None:
    body, headers = forge(_body())
    assert await _post(session, receiver.hook_url("ana"), body, headers) == 401
    (delivery,) = receiver.deliveries
    assert not delivery.verified and delivery.status == 401


async def test_receiver_dedups_redeliveries_by_webhook_id(receiver, session) -> None:
    body = _body()
    for _ in range(3):
        assert await _post(session, receiver.hook_url("ana"), body, _headers(body)) == 204
    other = _body("ld_other")
    assert await _post(session, receiver.hook_url("ana"), other, _headers(other, msg_id="msg_2")) == 204
    assert [d.duplicate for d in receiver.deliveries] == [False, True, True, False]


async def test_simulated_outage_is_not_remembered_so_the_retry_counts(session) -> None:
    async with DemoReceiver(SECRETS, port=0, clock=FakeClock(NOW), fail_rate=1.0) as flaky:
        body = _body()
        assert await _post(session, flaky.hook_url("ana"), body, _headers(body)) == 503
        flaky.fail_rate = 0.0
        assert await _post(session, flaky.hook_url("ana"), body, _headers(body)) == 204
        assert [(d.status, d.duplicate) for d in flaky.deliveries] == [(503, False), (204, False)]


async def test_receiver_answers_404_for_an_unknown_rep(receiver, session) -> None:
    body = _body()
    assert await _post(session, receiver.hook_url("zoe"), body, _headers(body)) == 404


def test_any_matching_v1_signature_in_the_list_passes() -> None:
    body = _body()
    good = _headers(body)
    wrong = _headers(body, secret=SECRETS["ben"])["webhook-signature"]
    listed = {**good, "webhook-signature": f"v1a,c2lnbmF0dXJl {wrong} v1,not-base64! {good['webhook-signature']}"}
    assert verify_signature(SECRETS["ana"], listed, body, NOW) is None
    assert verify_signature(SECRETS["ana"], {**good, "webhook-signature": wrong}, body, NOW) is not None


def test_receiver_refuses_a_secret_that_is_not_whsec() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        DemoReceiver({"ana": "plain-password"})


# --- feed -------------------------------------------------------------------------------


def test_feed_is_deterministic_for_a_seed() -> None:
    first = list(itertools.islice(generate_leads(42), 50))
    assert first == list(itertools.islice(generate_leads(42), 50))
    assert first != list(itertools.islice(generate_leads(43), 50))


def test_generated_leads_look_real_but_reach_nobody() -> None:
    leads = list(itertools.islice(generate_leads(7), 300))
    for lead in leads:
        payload = lead.payload
        assert payload["country"] in COUNTRIES and payload["company"] and payload["source"]
        assert "email" in payload or "phone" in payload
        if email := payload.get("email"):
            domain = email.rsplit("@", 1)[1]
            assert domain.endswith(".example") or domain in ("example.com", "example.org", "example.net")
            email_validator.validate_email(email, check_deliverability=False)
        if phone := payload.get("phone"):
            parsed = phonenumbers.parse(phone)
            assert phonenumbers.is_valid_number(parsed)
            assert phonenumbers.region_code_for_number(parsed) == payload["country"]
    assert 10 <= sum(lead.repeat for lead in leads) <= 60
    assert sum("email" not in lead.payload for lead in leads) >= 5  # phone-only leads
    identity = {lead.payload.get("email") or lead.payload["phone"] for lead in leads if not lead.repeat}
    assert len(identity) == sum(not lead.repeat for lead in leads)  # only repeats share an identity


async def _serve(handler: Callable[[web.Request], Any], path: str) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    return runner, f"http://127.0.0.1:{port}"


async def test_feed_posts_with_the_api_key_and_records_each_answer() -> None:
    seen: list[tuple[str | None, dict[str, Any]]] = []
    answers = iter([
        (202, {"lead_id": "ld_1", "status": "accepted"}),
        (202, {"lead_id": "ld_1", "status": "duplicate"}),
        (422, {"error": {"code": "invalid_lead", "message": f"bad {EMAIL}",
                         "fields": [{"field": "email", "reason": "invalid"}]}}),
    ])

    async def api(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), await request.json()))
        status, body = next(answers)
        return web.json_response(body, status=status)

    runner, url = await _serve(api, "/v1/leads")
    try:
        results = await DemoFeed(url, "demo-key", count=3, rate=500.0, seed=1).run()
    finally:
        await runner.cleanup()
    assert [auth for auth, _ in seen] == ["Bearer demo-key"] * 3
    assert [payload for _, payload in seen] == [lead.payload for lead in itertools.islice(generate_leads(1), 3)]
    assert [(r.outcome, r.status, r.lead_id) for r in results] == [
        ("accepted", 202, "ld_1"), ("duplicate", 202, "ld_1"), ("rejected", 422, None)]
    assert results[2].error == "invalid_lead (email)"  # no echo of the submitted address


# --- stats and view ---------------------------------------------------------------------


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None),
    ([3.0], 95, 3.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
    ([float(v) for v in range(1, 101)], 95, 95.05),
    ([5.0, 1.0, 3.0], 0, 1.0),
    ([5.0, 1.0, 3.0], 100, 5.0),
])
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == (pytest.approx(expected) if expected is not None else None)


def _event(kind: str, lead_id: str, seconds: float, **data: Any) -> dict[str, Any]:
    at = (NOW + timedelta(seconds=seconds)).isoformat()
    return orjson.loads(orjson.dumps({"type": kind, "lead_id": lead_id, "cycle": 1, "at": at, "data": data}))


def _decision(rep: str | None) -> dict[str, Any]:
    reason = f"weighted round robin: highest credit (2) among 3 eligible" if rep else "no rep is eligible"
    return {"reason": reason, "strategy": "weighted_round_robin", "winner": rep, "candidates": []}


def _busy_stats() -> DemoStats:
    stats = DemoStats(started_at=NOW, capacities={"ana": 4, "ben": 3})
    lead = {"email": EMAIL, "phone": PHONE, "company": "Contoso", "first_name": "Maria"}
    for index, lead_id in enumerate(["ld_aaaa1111", "ld_bbbb2222", "ld_cccc3333"]):
        stats.on_event(_event("lead.captured", lead_id, index, source="web_form", team_id="sdr-emea",
                              lead={**lead, "company": f"Company {index}"}))
    stats.on_event(_event("lead.touched", "ld_aaaa1111", 3, source="webinar", touches=2))
    stats.on_event(_event("lead.assigned", "ld_aaaa1111", 4, rep_id="ana", team_id="sdr-emea",
                          decision=_decision("ana"), routing_seconds=0.04))
    stats.on_event(_event("lead.assigned", "ld_bbbb2222", 5, rep_id="ana", team_id="sdr-emea",
                          decision=_decision("ana"), routing_seconds=0.08))
    stats.on_event(_event("lead.queued", "ld_cccc3333", 6, team_id="sdr-emea", depth=1, decision=_decision(None)))
    stats.on_event(_event("lead.notified", "ld_aaaa1111", 7, rep_id="ana", attempts=1, notify_seconds=0.21,
                          event_type="lead.assigned"))
    stats.on_delivery(Delivery("ana", "msg_1", "lead.assigned", "ld_aaaa1111", True, NOW, 0.2, company="Contoso"))
    stats.on_delivery(Delivery("ana", "msg_1", "lead.assigned", "ld_aaaa1111", True, NOW, 0.2, duplicate=True))
    stats.on_event({"type": "lead.assigned", "lead_id": 7})  # malformed: counted, not fatal
    return stats


def _assert_no_pii(text: str) -> None:
    assert EMAIL not in text and "@" not in text
    assert PHONE not in text and "2025550123" not in text and "Maria" not in text
    assert not re.search(r"\+?\d{9,}", text)


def test_render_shows_the_numbers_and_no_personal_data() -> None:
    lines = render(_busy_stats(), NOW + timedelta(seconds=42), tz=UTC)
    text = "\n".join(lines)
    for expected in ("up 0:00:42", "last event 35s ago", "captured 3", "touches 1", "queued 1", "assigned 2", "notified 1",
                     "received 1", "redelivered 1", "sdr-emea 1 waiting", "unreadable 1",
                     "capture→assigned p50 0.06s  p95 0.08s", "capture→notified p50 0.21s"):
        assert expected in text, expected
    assert re.search(r"ana +█+░+  2/4", text) and re.search(r"ben +░+  0/3", text)
    decisions = lines[lines.index("recent routing decisions") + 1:]
    assert decisions[0].startswith("  09:00:06  ld_cccc…  Company 2") and "queued (sdr-emea)" in decisions[0]
    assert "→ ana (sdr-emea)" in decisions[2] and "wrr: highest credit" in decisions[2]
    assert "notified in 0.21s" in decisions[2] and "notifying…" in decisions[1]
    _assert_no_pii(text)
    _assert_no_pii(summary_line(_busy_stats(), NOW, tz=UTC))


def test_disposition_frees_the_reps_capacity_and_assignment_drains_the_queue() -> None:
    stats = _busy_stats()
    stats.on_event(_event("lead.dispositioned", "ld_aaaa1111", 8, status="nurture", reason="demo", rep_id=None))
    stats.on_event(_event("lead.assigned", "ld_cccc3333", 9, rep_id="ana", team_id="sdr-emea",
                          decision=_decision("ana"), routing_seconds=3.0))
    assert stats.open_leads("ana") == 2 and stats.queue_depth("sdr-emea") == 0
    stats.on_event(_event("lead.dispositioned", "ld_aaaa1111", 10, status="nurture", reason="demo", rep_id="ana"))
    assert stats.open_leads("ana") == 2  # a replayed disposition does not go negative
    assert "ana      ████████░░░░░░░░  2/4" in "\n".join(render(stats, NOW))


def test_render_falls_back_to_ascii_and_fits_the_width() -> None:
    lines = render(_busy_stats(), NOW, unicode=False, width=60)
    assert all(line.isascii() and len(line) <= 60 for line in lines)


@pytest.mark.parametrize(("url", "expected"), [
    ("kafka://127.0.0.1:9092", ["127.0.0.1:9092"]),
    ("kafka://a:1;kafka://b:2", ["a:1", "b:2"]),
    ("localhost:9092", ["localhost:9092"]),
])
def test_parse_broker(url: str, expected: list[str]) -> None:
    assert parse_broker(url) == expected


# --- disposer and config ----------------------------------------------------------------


async def _disposition_api() -> tuple[web.AppRunner, str, list[tuple[str, str | None, dict[str, Any]]]]:
    posted: list[tuple[str, str | None, dict[str, Any]]] = []

    async def api(request: web.Request) -> web.Response:
        posted.append((request.match_info["lead_id"], request.headers.get("Authorization"), await request.json()))
        return web.json_response({"status": "ok"}, status=202)

    runner, url = await _serve(api, "/v1/leads/{lead_id}/disposition")
    return runner, url, posted


async def test_disposer_works_each_first_verified_assignment_once() -> None:
    runner, url, posted = await _disposition_api()
    disposer = DemoDisposer(url, "demo-key", min_delay_s=0.0, max_delay_s=0.01, seed=3)
    await disposer.start()
    try:
        first = Delivery("ana", "msg_1", "lead.assigned", "ld_1", True, NOW, 0.1)
        for delivery in (first, first, replace(first, duplicate=True),
                         Delivery("ana", "msg_2", "lead.assigned", "ld_2", False, NOW, None, status=401),
                         Delivery("ana", "msg_5", "lead.assigned", "ld_5", True, NOW, 0.1, status=503),
                         Delivery("ben", "msg_3", "lead.reminder", "ld_3", True, NOW, 0.1)):
            disposer.on_delivery(delivery)
        for _ in range(200):
            if disposer.results:
                break
            await asyncio.sleep(0.01)
    finally:
        await disposer.stop()
        await runner.cleanup()
    assert [(lead_id, auth) for lead_id, auth, _ in posted] == [("ld_1", "Bearer demo-key")]
    assert posted[0][2]["status"] in ("nurture", "disqualified") and posted[0][2]["reason"] == "demo"
    assert [(r.lead_id, r.status) for r in disposer.results] == [("ld_1", 202)]


async def test_disposer_stop_cancels_leads_still_being_worked() -> None:
    runner, url, posted = await _disposition_api()
    disposer = DemoDisposer(url, "demo-key", min_delay_s=60.0, max_delay_s=60.0)
    await disposer.start()
    try:
        disposer.on_delivery(Delivery("ana", "msg_1", "lead.assigned", "ld_1", True, NOW, 0.1))
        await asyncio.sleep(0)
    finally:
        await disposer.stop()  # no pending-task warning, no post, and its own session closed
        await runner.cleanup()
    assert posted == [] and disposer.results == []


def test_demo_config_matches_the_receiver() -> None:
    settings = load_demo_settings()
    assert set(settings.rep_secrets) == {"ana", "ben", "chloe", "dev"}
    assert all(3 <= capacity <= 5 for capacity in settings.capacities.values())
    DemoReceiver(settings.rep_secrets)  # every secret is a well-formed whsec_
    for secret in settings.rep_secrets.values():
        Webhook(secret)  # and the independent implementation reads it too
    assert settings.api_key.startswith("demo-key-")


async def test_live_view_redraws_in_place_and_stops_cleanly_without_kafka() -> None:
    out = io.StringIO()
    view = LiveView("kafka://127.0.0.1:1", {"ana": 4}, out=out, tty=True, refresh_s=0.05)
    await view.start(ready_timeout_s=0.3)
    view.on_delivery(Delivery("ana", "msg_1", "lead.assigned", "ld_1", True, NOW, 0.1))
    await asyncio.sleep(0.2)
    await view.stop()
    screen = out.getvalue()
    assert screen.startswith("\x1b[?25l") and screen.endswith("\x1b[J\x1b[?25h")  # cursor hidden, then restored
    frames = screen.split("\x1b[J")
    assert len(frames) >= 3
    for previous, frame in itertools.pairwise(frames[:-1]):  # each redraw climbs back over the last block
        assert frame.startswith(f"\r\x1b[{previous.count(chr(10))}A")
    assert "kafka unavailable" in frames[-2] and "received 1" in frames[-2]

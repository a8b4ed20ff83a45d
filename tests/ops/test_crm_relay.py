"""The HubSpot → leadflow relay: HubSpot's v3 signature checked, the deal mapped, re-signed so /v1/crm/events takes it."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connectors.api.crm_events import CRM_EVENT_MODEL, verify
from ops.crm_relay import hubspot_signature_ok, leadflow_event, relay_app, signed_event

HUBSPOT_SECRET = "hubspot-app-client-secret"
EVENTS_SECRET = "whsec_" + base64.b64encode(b"e" * 32).decode()
LEAD_ID = "ld_0123456789abcdef01234567"
DEAL = {"hs_object_id": "1234567", "dealstage": "closedlost", "leadflow_lead_id": LEAD_ID,
        "leadflow_id": "op_0123456789abcdef01234567", "closed_lost_reason": "no budget", "amount": ""}
PUBLIC = "https://relay.example/hubspot"


def _hubspot_headers(body: bytes, *, at_ms: int | None = None, secret: str = HUBSPOT_SECRET) -> dict[str, str]:
    stamp = str(at_ms if at_ms is not None else int(time.time() * 1000))
    mac = hmac.new(secret.encode(), b"POST" + PUBLIC.encode() + body + stamp.encode(), hashlib.sha256)
    return {"X-HubSpot-Request-Timestamp": stamp, "X-HubSpot-Signature-v3": base64.b64encode(mac.digest()).decode(),
            "Content-Type": "application/json"}


def test_hubspot_v3_signatures() -> None:
    body, now = orjson.dumps(DEAL), int(time.time() * 1000)
    good = _hubspot_headers(body, at_ms=now)
    check = lambda b, h, at: hubspot_signature_ok(HUBSPOT_SECRET, "POST", PUBLIC, b, h["X-HubSpot-Request-Timestamp"],  # noqa: E731
                                                  h["X-HubSpot-Signature-v3"], at)
    assert check(body, good, now)
    assert not check(body + b" ", good, now)  # a changed body
    assert not check(body, good, now + 301_000)  # HubSpot's five minutes are over
    assert not check(body, _hubspot_headers(body, at_ms=now, secret="other"), now)


def test_deals_map_to_leadflow_events_that_validate() -> None:
    msg_id, lost = leadflow_event(DEAL)
    assert lost == {"type": "opportunity.lost", "data": {"lead_id": LEAD_ID, "crm_id": "1234567",
                                                         "opportunity_id": DEAL["leadflow_id"], "reason": "no budget"}}
    assert msg_id.startswith("hubspot_1234567_closedlost")
    _, won = leadflow_event({**DEAL, "dealstage": "closedwon", "amount": "1200.5"})
    _, moved = leadflow_event({"properties": {k: {"value": v} for k, v in {**DEAL, "dealstage": "contractsent"}.items()}})
    assert won["data"]["amount"] == 1200.5 and moved["data"]["stage"] == "contractsent"
    for event in (lost, won, moved):
        CRM_EVENT_MODEL.model_validate(event)
    raw, headers = signed_event(EVENTS_SECRET, msg_id, lost, int(time.time()))
    assert verify(EVENTS_SECRET, headers, raw, datetime.now(UTC), 300) == (msg_id, None)


async def test_the_relay_forwards_a_signed_event_and_refuses_a_bad_signature() -> None:
    received: list[dict[str, Any]] = []

    async def leadflow(request: web.Request) -> web.Response:
        raw = await request.read()
        _, problem = verify(EVENTS_SECRET, request.headers, raw, datetime.now(UTC), 300)
        received.append({"problem": problem, "event": orjson.loads(raw)})
        return web.json_response({"status": "accepted"}, status=202)

    fake = web.Application()
    fake.router.add_post("/v1/crm/events", leadflow)
    async with TestClient(TestServer(fake)) as upstream:
        url = str(upstream.make_url("/v1/crm/events"))
        app = relay_app(hubspot_secret=HUBSPOT_SECRET, events_secret=EVENTS_SECRET, leadflow_url=url,
                        public_url=PUBLIC)
        async with TestClient(TestServer(app)) as relay:
            body = orjson.dumps(DEAL)
            ok = await relay.post("/hubspot", data=body, headers=_hubspot_headers(body))
            assert ok.status == 204, await ok.text()
            bad = await relay.post("/hubspot", data=body, headers=_hubspot_headers(body, secret="other"))
            assert bad.status == 401
            unmapped = orjson.dumps({"hs_object_id": "1", "dealstage": "closedwon"})
            assert (await relay.post("/hubspot", data=unmapped, headers=_hubspot_headers(unmapped))).status == 400
    assert received == [{"problem": None, "event": leadflow_event(DEAL)[1]}]


def test_the_relay_without_its_secrets_says_which_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from ops.crm_relay import main

    monkeypatch.delenv("HUBSPOT_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("LEADFLOW_CRM_EVENTS_SECRET", "whsec_" + "A" * 44)
    with pytest.raises(SystemExit) as exited:
        main(["--leadflow-url", "http://x/v1/crm/events", "--public-url", "http://y/hubspot"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "ops.crm_relay: environment variable HUBSPOT_CLIENT_SECRET is not set\n"

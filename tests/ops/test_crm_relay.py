"""The HubSpot → leadflow relay: HubSpot's v3 signature checked, the deal mapped, re-signed so /v1/crm/events takes it."""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from defusedxml.ElementTree import fromstring
from prometheus_client import CollectorRegistry

from connectors.api.crm_events import CRM_EVENT_MODEL, verify
from connectors.crm import EventsAuth
from ops.crm_relay import SalesforceRoute, hubspot_signature_ok, leadflow_event, relay_app, signed_event
from ops.metrics import Metrics
from ops.salesforce_outbound import ACK, SalesforceFields
from rules.commands import RecordCrmEvent
from rules.opportunity import Opportunity, opportunity_id_for
from sla.clock import FakeClock
from tests.connectors.conftest import FakeEngine, build_app, lead_state
from tests.ops.salesforce_envelopes import OPPORTUNITY_ID, ORG_ID, envelope, opportunity

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


def test_a_hubspot_retry_keeps_its_webhook_id_and_a_move_back_has_a_new_one_when_hubspot_dates_it() -> None:
    """HubSpot retries a failed webhook for up to three days, each attempt signed with its own
    X-HubSpot-Request-Timestamp. The id never takes that (da1d517 did: every retry was a new
    event, and one delivered after a later close reopened or reversed it; review s18-b F2)."""
    deal = {**DEAL, "dealstage": "contractsent"}
    nested = lambda at: {"properties": {**{k: {"value": v} for k, v in deal.items()},  # noqa: E731
                                        "dealstage": {"value": "contractsent", "timestamp": at}}}
    # When HubSpot set the stage (the deals API's form): the same on a retry, new for a move back.
    assert leadflow_event(nested(1767603500000))[0] == leadflow_event(nested(1767603500000))[0]
    assert leadflow_event(nested(1767603500000))[0] != leadflow_event(nested(1767607100000))[0]
    # hs_lastmodifieddate, as the docs ask, the same.
    modified = {**deal, "hs_lastmodifieddate": "1767603500000"}
    assert leadflow_event(modified)[0] != leadflow_event({**modified, "hs_lastmodifieddate": "1767607100000"})[0]
    # Neither: one id per deal and stage (a move back within 24 h is then missed: the lesser harm).
    assert leadflow_event(deal)[0] == "hubspot_1234567_contractsent_"


def test_the_event_carries_hubspots_time_of_the_move() -> None:
    """So leadflow can tell a retry delivered after a later close (stale) from a new move."""
    stage_set = {"properties": {**{k: {"value": v} for k, v in DEAL.items()},
                                "dealstage": {"value": "closedlost", "timestamp": 1767603500000},
                                "hs_lastmodifieddate": {"value": "1767607100000"}}}
    _, event = leadflow_event(stage_set)
    assert event["timestamp"] == "2026-01-05T08:58:20+00:00"  # the stage's own time first
    _, event = leadflow_event({**DEAL, "hs_lastmodifieddate": "2026-01-05T09:58:20.000Z"})
    assert event["timestamp"] == "2026-01-05T09:58:20+00:00"
    _, event = leadflow_event({**DEAL, "hs_lastmodifieddate": 1767607100000})
    assert event["timestamp"] == "2026-01-05T09:58:20+00:00"
    assert "timestamp" not in leadflow_event(DEAL)[1]  # no time: leadflow takes the arrival
    assert "timestamp" not in leadflow_event({**DEAL, "hs_lastmodifieddate": "yesterday"})[1]
    for deal in (stage_set, DEAL):
        CRM_EVENT_MODEL.model_validate(leadflow_event(deal)[1])


async def test_the_relay_gives_a_retry_the_same_webhook_id_and_acks_an_ignored_event() -> None:
    """Two attempts of one delivery, a minute apart, reach leadflow with one webhook-id; leadflow's
    200 ``ignored`` (a stale event) is a 204 to HubSpot, so it stops retrying."""
    ids: list[str] = []

    async def leadflow(request: web.Request) -> web.Response:
        ids.append(request.headers["webhook-id"])
        return web.json_response({"status": "ignored", "why": "stale: ..."}, status=200)

    fake = web.Application()
    fake.router.add_post("/v1/crm/events", leadflow)
    async with TestClient(TestServer(fake)) as upstream:
        app = relay_app(hubspot_secret=HUBSPOT_SECRET, events_secret=EVENTS_SECRET,
                        leadflow_url=str(upstream.make_url("/v1/crm/events")), public_url=PUBLIC)
        async with TestClient(TestServer(app)) as relay:
            body, now = orjson.dumps({**DEAL, "dealstage": "contractsent"}), int(time.time() * 1000)
            for at in (now - 60_000, now):  # HubSpot's retry a minute later
                answer = await relay.post("/hubspot", data=body, headers=_hubspot_headers(body, at_ms=at))
                assert answer.status == 204, await answer.text()
    assert len(ids) == 2 and ids[0] == ids[1]


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


# --- Salesforce Outbound Messages, through leadflow's real POST /v1/crm/events ------------------------

SF_TOKEN = "sf-outbound-token-0123456789abcdef"
_SOAP_NS = "{http://schemas.xmlsoap.org/soap/envelope/}"


def _converted(engine: FakeEngine, clock: FakeClock, email: str) -> tuple[str, str]:
    """A lead whose opportunity is open in the CRM, as the lead agent leaves it after conversion."""
    state = lead_state(email, clock.now(), assigned_to="rep-ana")
    opportunity_id = opportunity_id_for(state.lead_id, 1)
    engine.leads[state.lead_id] = replace(state, status="converted", routing="released", opportunity=Opportunity(
        opportunity_id=opportunity_id, created_at=clock.now()))
    return state.lead_id, opportunity_id


def _fault(text: str) -> str:
    parsed = fromstring(text.encode())
    return str(parsed.findtext(f"{_SOAP_NS}Body/{_SOAP_NS}Fault/faultstring"))


@pytest.fixture
async def leadflow() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], FakeEngine]]:
    """leadflow's API as a worker mounts it (the real /v1/crm/events), over an in-memory engine."""
    engine, clock = FakeEngine(), FakeClock(datetime.now(UTC))
    app = build_app(engine, Metrics(CollectorRegistry()), clock,
                    crm_events=EventsAuth(secret=EVENTS_SECRET, tolerance_s=300))
    async with TestClient(TestServer(app)) as client:
        yield client, engine


def _relay(url: str, **route: Any) -> web.Application:
    options: dict[str, Any] = {"org_id": ORG_ID, "token": SF_TOKEN, "fields": SalesforceFields(loss_reason="Loss_Reason__c"),
                               **route}
    return relay_app(events_secret=EVENTS_SECRET, leadflow_url=url, salesforce=SalesforceRoute(**options))


async def test_an_outbound_message_reaches_leadflow_and_is_acked_once_every_notification_is_taken(
        leadflow: tuple[TestClient[web.Request, web.Application], FakeEngine]) -> None:
    client, engine = leadflow
    clock = FakeClock(datetime.now(UTC))
    lost_lead, lost_op = _converted(engine, clock, "marta@northwind.example")
    won_lead, won_op = _converted(engine, clock, "jon@contoso.example")
    message = envelope(
        opportunity("04l5e00000Gx7QzAAJ", lead_id=lost_lead).replace(OPPORTUNITY_ID, lost_op),
        opportunity("04l5e00000Gx7R0AAJ", stage="Closed Won", won="true", lead_id=won_lead).replace(OPPORTUNITY_ID,
                                                                                                     won_op))
    async with TestClient(TestServer(_relay(str(client.make_url("/v1/crm/events"))))) as relay:
        answer = await relay.post(f"/salesforce/{SF_TOKEN}", data=message, headers={"Content-Type": "text/xml"})
        assert answer.status == 200 and answer.content_type == "text/xml"
        assert await answer.read() == ACK
        commands = {lead_id: command for lead_id, command in engine.lead_commands}
        lost, won = commands[lost_lead], commands[won_lead]
        assert isinstance(lost, RecordCrmEvent) and lost.kind == "lost" and lost.reason == "No budget this year"
        assert lost.event_id == "crm:sfdc_04l5e00000Gx7QzAAJ"
        assert isinstance(won, RecordCrmEvent) and won.kind == "won" and won.amount == 48000.0
        # Salesforce delivers the same message again (it may): leadflow answers with its first answer.
        again = await relay.post(f"/salesforce/{SF_TOKEN}", data=message, headers={"Content-Type": "text/xml"})
        assert again.status == 200 and await again.read() == ACK
    assert len(engine.lead_commands) == 2


async def test_no_ack_unless_leadflow_took_every_notification(
        leadflow: tuple[TestClient[web.Request, web.Application], FakeEngine]) -> None:
    client, engine = leadflow
    clock = FakeClock(datetime.now(UTC))
    taken_lead, taken_op = _converted(engine, clock, "marta@northwind.example")
    open_lead = lead_state("bo@example.com", clock.now(), assigned_to="rep-ana")  # no opportunity yet
    engine.leads[open_lead.lead_id] = open_lead
    message = envelope(
        opportunity("04l5e00000Gx7QzAAJ", lead_id=taken_lead).replace(OPPORTUNITY_ID, taken_op),
        opportunity("04l5e00000Gx7R0AAJ", lead_id=open_lead.lead_id).replace(f"<sf:Leadflow_Id__c>{OPPORTUNITY_ID}"
                                                                             "</sf:Leadflow_Id__c>", ""),
        opportunity("04l5e00000Gx7R1AAJ", lead_id=None, opportunity_id=None))
    async with TestClient(TestServer(_relay(str(client.make_url("/v1/crm/events"))))) as relay:
        answer = await relay.post(f"/salesforce/{SF_TOKEN}", data=message)
        text = await answer.text()
        assert answer.status == 409 and "<Ack>" not in text, text  # leadflow's refusal, the only problem left
        said = _fault(text)
        assert said.startswith("1 of 3 notification(s) taken by leadflow, 1 skipped (no Leadflow_Lead_Id__c); "
                               "Salesforce will deliver the message again: "), said
        assert "04l5e00000Gx7R1AAJ" not in said  # skipped: not what holds the message back
        assert "sfdc_04l5e00000Gx7R0AAJ: leadflow refused it (409 conflict: " in said
    # The notification leadflow could take was taken, once; Salesforce's redelivery will be answered from memory.
    assert [lead_id for lead_id, _ in engine.lead_commands] == [taken_lead]


async def test_a_notification_without_a_lead_id_is_skipped_and_the_message_acked(
        leadflow: tuple[TestClient[web.Request, web.Application], FakeEngine],
        caplog: pytest.LogCaptureFixture) -> None:
    # An Opportunity leadflow did not make carries no lead id, in this delivery and every later one:
    # a fault had Salesforce send the whole message again for 24 h, for nothing.
    client, engine = leadflow
    clock = FakeClock(datetime.now(UTC))
    lead_id, opportunity_id = _converted(engine, clock, "marta@northwind.example")
    message = envelope(
        opportunity("04l5e00000Gx7QzAAJ", lead_id=lead_id).replace(OPPORTUNITY_ID, opportunity_id),
        opportunity("04l5e00000Gx7R1AAJ", record_id="0065e00000XyZwVAAV", lead_id=None, opportunity_id=None),
        opportunity("04l5e00000Gx7R2AAJ", lead_id=None, opportunity_id=None,
                    extra='<sf:Leadflow_Lead_Id__c xsi:nil="true"/>'))
    caplog.set_level(logging.INFO, logger="ops.crm_relay")
    async with TestClient(TestServer(_relay(str(client.make_url("/v1/crm/events"))))) as relay:
        answer = await relay.post(f"/salesforce/{SF_TOKEN}", data=message, headers={"Content-Type": "text/xml"})
        assert answer.status == 200 and await answer.read() == ACK
    assert [lead for lead, _ in engine.lead_commands] == [lead_id]  # the good one taken, once
    skipped = [r.getMessage() for r in caplog.records if "skipped notification" in r.getMessage()]
    assert len(skipped) == 2, skipped
    assert skipped[0].startswith("salesforce relay: skipped notification 04l5e00000Gx7R1AAJ (Opportunity "
                                 "0065e00000XyZwVAAV): it has no Leadflow_Lead_Id__c, so leadflow did not make it; "
                                 "acknowledged")
    assert "04l5e00000Gx7R2AAJ" in skipped[1]
    assert "No budget this year" not in caplog.text and "48000" not in caplog.text  # ids, never the deal's values


async def test_a_wrong_lead_id_field_keeps_the_message_in_salesforces_queue(
        leadflow: tuple[TestClient[web.Request, web.Application], FakeEngine]) -> None:
    """Review s17-a C1: leadflow's own Opportunity (Leadflow_Id__c) read with a lead-id field it does
    not carry (here the managed package's prefix is missing) is a fault naming the field, not acked:
    skipped, every won and lost would be lost for good; Salesforce delivers it again once fixed."""
    client, engine = leadflow
    clock = FakeClock(datetime.now(UTC))
    lead_id, opportunity_id = _converted(engine, clock, "marta@northwind.example")
    message = envelope(opportunity("04l5e00000Gx7QzAAJ", lead_id=None, opportunity_id=opportunity_id,
                                   extra=f"<sf:lf__Leadflow_Lead_Id__c>{lead_id}</sf:lf__Leadflow_Lead_Id__c>"))
    async with TestClient(TestServer(_relay(str(client.make_url("/v1/crm/events"))))) as relay:
        answer = await relay.post(f"/salesforce/{SF_TOKEN}", data=message, headers={"Content-Type": "text/xml"})
        text = await answer.text()
        assert answer.status == 400 and "<Ack>" not in text, text
        said = _fault(text)
        assert said.startswith("0 of 1 notification(s) taken by leadflow; Salesforce will deliver the message again: "
                               "notification 04l5e00000Gx7QzAAJ: the Opportunity has Leadflow_Id__c, so leadflow "
                               "made it, but no Leadflow_Lead_Id__c: check that --salesforce-lead-id-field"), said
    assert engine.lead_commands == []
    async with TestClient(TestServer(_relay(str(client.make_url("/v1/crm/events")), fields=SalesforceFields(
            lead_id="lf__Leadflow_Lead_Id__c", loss_reason="Loss_Reason__c")))) as relay:
        answer = await relay.post(f"/salesforce/{SF_TOKEN}", data=message, headers={"Content-Type": "text/xml"})
        assert answer.status == 200 and await answer.read() == ACK  # the field named right: taken
    assert [lead for lead, _ in engine.lead_commands] == [lead_id]


async def test_leadflow_unreachable_is_a_server_fault_salesforce_retries() -> None:
    async with TestClient(TestServer(_relay("http://127.0.0.1:1/v1/crm/events"))) as relay:
        answer = await relay.post(f"/salesforce/{SF_TOKEN}", data=envelope(opportunity()))
        text = await answer.text()
    assert answer.status == 502 and "<faultcode>soapenv:Server</faultcode>" in text
    assert "sfdc_04l5e00000Gx7QzAAJ: leadflow unreachable" in _fault(text)


@pytest.mark.parametrize(("path", "body", "route", "status", "says"), [
    (f"/salesforce/{SF_TOKEN}", b"""<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><x>&b;</x>""", {}, 400, "refused XML: DTDForbidden"),
    (f"/salesforce/{SF_TOKEN}", b"not xml at all", {}, 400, "not an outbound message leadflow can read: not well"),
    (f"/salesforce/{SF_TOKEN}", envelope(opportunity(), org_id="00D000000000001AAA"), {}, 403,
     "OrganizationId 00D000000000001AAA is not the org this relay serves"),
    (f"/salesforce/{SF_TOKEN}", envelope(opportunity()), {"allow_from": (ipaddress.ip_network("13.108.0.0/14"),)},
     403, "this address may not send outbound messages"),
    ("/salesforce/wrong-token-0123456789abcdef", envelope(opportunity()), {}, 404, None),
])
async def test_bad_messages_get_a_clear_4xx_and_reach_nobody(path: str, body: bytes, route: dict[str, Any],
                                                             status: int, says: str | None) -> None:
    reached: list[bytes] = []

    async def leadflow(request: web.Request) -> web.Response:
        reached.append(await request.read())
        return web.json_response({"status": "accepted"}, status=202)

    fake = web.Application()
    fake.router.add_post("/v1/crm/events", leadflow)
    async with TestClient(TestServer(fake)) as upstream, \
            TestClient(TestServer(_relay(str(upstream.make_url("/v1/crm/events")), **route))) as relay:
        answer = await relay.post(path, data=body)
        text = await answer.text()
    assert answer.status == status, text
    if says is not None:
        assert says in _fault(text) and "<faultcode>soapenv:Client</faultcode>" in text
    assert reached == []


def test_the_relay_explains_itself_and_checks_its_salesforce_settings(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ops.crm_relay import main

    with pytest.raises(SystemExit):
        main(["--help"])
    helped = capsys.readouterr().out
    for words in ("Outbound Message", "/salesforce/<SALESFORCE_OUTBOUND_TOKEN>", "--salesforce-org-id",
                  "<Ack>true</Ack>", "Leadflow_Lead_Id__c", "--salesforce-allow-from"):
        assert words in helped
    monkeypatch.setenv("LEADFLOW_CRM_EVENTS_SECRET", EVENTS_SECRET)
    monkeypatch.delenv("HUBSPOT_CLIENT_SECRET", raising=False)
    cases = [([], None, "nothing to relay: give --public-url (HubSpot), --salesforce-org-id"),
             (["--salesforce-org-id", ORG_ID], None, "environment variable SALESFORCE_OUTBOUND_TOKEN is not set"),
             (["--salesforce-org-id", ORG_ID], "short", "24 to 128 URL-safe characters"),
             (["--salesforce-org-id", "12345"], SF_TOKEN, "the 15- or 18-character id starting 00D"),
             (["--salesforce-org-id", ORG_ID, "--salesforce-allow-from", "nope"], SF_TOKEN, "does not appear to be")]
    for args, token, says in cases:
        if token is None:
            monkeypatch.delenv("SALESFORCE_OUTBOUND_TOKEN", raising=False)
        else:
            monkeypatch.setenv("SALESFORCE_OUTBOUND_TOKEN", token)
        with pytest.raises(SystemExit) as exited:
            main(["--leadflow-url", "http://x/v1/crm/events", *args])
        assert exited.value.code == 2
        assert says in capsys.readouterr().err


async def test_the_relays_access_log_never_holds_the_salesforce_token(
        leadflow: tuple[TestClient[web.Request, web.Application], FakeEngine], caplog: pytest.LogCaptureFixture) -> None:
    # Review s16-b M2: aiohttp's default access line is the request line, POST /salesforce/<token>.
    from ops.crm_relay import SERVER_OPTIONS
    client, _ = leadflow
    caplog.set_level(logging.DEBUG)
    server = TestServer(_relay(str(client.make_url("/v1/crm/events"))))
    await server.start_server(**SERVER_OPTIONS)  # the runner's options, as main() gives web.run_app
    async with TestClient(server) as relay:
        await relay.post(f"/salesforce/{SF_TOKEN}", data=b"<not-soap/>", headers={"Content-Type": "text/xml"})
        await relay.post("/salesforce/wrong-token-guess", data=b"<x/>")
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("POST /salesforce/<token>" in line for line in access), access
    assert SF_TOKEN not in caplog.text and "wrong-token-guess" not in caplog.text


def test_an_org_id_whose_checksum_does_not_fit_is_refused_at_start() -> None:
    # Review s16-b L6: a retyped 18-character id is read through its checksum; one that fits no id is an error.
    with pytest.raises(ValueError, match="org id is not valid.*checksum"):
        SalesforceRoute(org_id="00D5e000000KQ2eEA5", token=SF_TOKEN)
    assert SalesforceRoute(org_id=ORG_ID.lower(), token=SF_TOKEN).org_id == ORG_ID.lower()


async def test_a_redelivery_carrying_the_close_leadflow_holds_is_acked_not_redelivered_for_a_day(
        leadflow: tuple[TestClient[web.Request, web.Application], FakeEngine]) -> None:
    """Salesforce: "if the source object changes after a notification is queued but before it's
    sent, the endpoint only receives the latest data". A Negotiation notification that failed is
    redelivered after the Closed Lost of 10:15 went through: it carries Closed Lost and the close's
    own LastModifiedDate. It repeats what leadflow holds: 200 ignored ("already lost"), Acked. It
    was a 409 "already lost", a fault Salesforce redelivers for 24 h (review s18-e E1). (A
    redelivery with an older LastModifiedDate than the record's is not a shape Salesforce sends.)"""
    client, engine = leadflow
    clock = FakeClock(datetime.now(UTC))
    lead_id, op_id = _converted(engine, clock, "marta@northwind.example")
    state = engine.leads[lead_id]
    assert state.opportunity is not None
    at = datetime(2026, 3, 2, 10, 15, tzinfo=UTC)  # the envelope's LastModifiedDate: the close's own time
    engine.leads[lead_id] = replace(state, status="recycled", opportunity=replace(
        state.opportunity, status="lost", stage="Closed Lost", closed_at=at, moved_at=at, crm_moved_at=at))
    message = envelope(opportunity("04l5e00000Gx7QzAAJ", stage="Closed Lost", won="false", closed="true",
                                   lead_id=lead_id).replace(OPPORTUNITY_ID, op_id))
    async with TestClient(TestServer(_relay(str(client.make_url("/v1/crm/events"))))) as relay:
        answer = await relay.post(f"/salesforce/{SF_TOKEN}", data=message, headers={"Content-Type": "text/xml"})
        body = await answer.read()
        assert answer.status == 200 and body == ACK, (answer.status, body[:400])
    ((_, command),) = engine.lead_commands  # the lead gets it, decides the same and says opportunity.event_ignored
    assert isinstance(command, RecordCrmEvent) and command.crm_at == at and command.kind == "lost"

"""Provider webhooks: Facebook Lead Ads (handshake, X-Hub-Signature-256, leadgen, Graph API) and Typeform."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.providers import FacebookSettings, Providers, ProvidersConfig, TypeformSettings
from connectors.providers.facebook import GRAPH_API_VERSION, FieldDatum, GraphAccessRefused, GraphLeadFetcher
from connectors.rate_limit import RateLimiter
from rules.capture import derive_lead_id
from leadflow.errors import ConfigError, PermanentError, TransientError
from ops.metrics import Metrics
from sla.clock import FakeClock
from tests.connectors.conftest import Client, ClientFactory, DownRedis, FakeEngine
from tests.connectors.test_api import error_of, fields_of, sample
from tests.connectors.test_openapi import _conforms
from tests.connectors.test_rate_limit import GcraRedis

APP_SECRET, VERIFY_TOKEN, TF_SECRET = "fb-app-secret-0123", "verify-me-0123", "tf-webhook-secret"
FORM_MAP = {"lT4Z3j": {"company_ref": "company", "role_ref": "title", "hidden.utm_campaign": "campaign"}}


class StandInFetcher:
    """The Graph API as a dict: leadgen_id -> answers, or the error it raises."""

    def __init__(self, leads: dict[str, Sequence[FieldDatum] | Exception]) -> None:
        self.leads, self.asked = leads, []

    async def fetch(self, leadgen_id: str) -> Sequence[FieldDatum]:
        self.asked.append(leadgen_id)
        got = self.leads[leadgen_id]
        if isinstance(got, Exception):
            raise got
        return got


Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
def fetcher() -> StandInFetcher:
    return StandInFetcher({"901": [FieldDatum("work_email", ("li.wei@example.org",)),
                                   FieldDatum("company_name", ("Northwind",))]})


@pytest.fixture
def serve(make_client: ClientFactory, fetcher: StandInFetcher) -> Serve:
    async def make(providers: Providers | None = None, **options: Any) -> Client:
        if providers is None:
            providers = Providers(
                facebook=FacebookSettings(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, fetcher=fetcher),
                typeform=TypeformSettings(secret=TF_SECRET, forms=FORM_MAP))
        return await make_client(providers=providers, **options)
    return make


@pytest.fixture
async def client(serve: Serve) -> Client:
    return await serve()


def fb_signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def tf_signed(body: bytes, secret: str = TF_SECRET) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"Typeform-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def leadgen(*values: dict[str, Any], extra_changes: Sequence[dict[str, Any]] = ()) -> bytes:
    changes = [{"field": "leadgen", "value": value} for value in values] + list(extra_changes)
    # Meta escapes non-ASCII in its bodies; what matters is that the signature covers the raw bytes.
    return json.dumps({"object": "page", "entry": [{"id": "516540199134611", "time": 1767603600,
                                                    "changes": changes}]}).encode()


ANA = {"leadgen_id": "444444444444", "page_id": "516540199134611", "form_id": "551111744595541", "ad_id": "0",
       "created_time": 1767603600, "field_data": [
           {"name": "email", "values": ["Ana.Garcia@Example.com"]},
           {"name": "full_name", "values": ["Ana García López"]},
           {"name": "phone_number", "values": ["+34 612 345 678"]},
           {"name": "job_title", "values": ["Head of Operations"]},
           {"name": "how_many_seats?", "values": ["40"]},
           {"name": "products", "values": ["routing", "sla"]}]}


# --- Facebook: the handshake ------------------------------------------------------------------


async def test_the_facebook_handshake_echoes_the_challenge(client: Client) -> None:
    response = await client.get("/v1/providers/facebook", params={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})
    assert response.status == 200 and response.content_type == "text/plain"
    assert await response.text() == "1158201444"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    await _conforms(response, "/v1/providers/facebook", "get")


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}, 401, "unauthorized"),
    ({"hub.mode": "subscribe", "hub.challenge": "1"}, 401, "unauthorized"),
    ({"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}, 400, "bad_request"),
    ({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}, 400, "bad_request"),
    ({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "<script>x</script> "}, 400,
     "bad_request"),
])
async def test_a_bad_handshake_is_refused(client: Client, params: dict[str, str], status: int, code: str) -> None:
    response = await client.get("/v1/providers/facebook", params=params)
    error = await error_of(response, status, code)
    assert "<script>" not in error["message"]
    await _conforms(response, "/v1/providers/facebook", "get")


async def test_a_provider_not_configured_on_this_worker_is_503_and_an_unknown_one_404(
        serve: Serve, metrics: Metrics) -> None:
    # Typeform switches a webhook off for good at the first 404 or 410; it retries a 503 every few
    # minutes for 10 h (Meta for 36 h). A worker without the section (a rolling deploy, a typo)
    # must not cost the webhook.
    client = await serve(Providers())
    response = await client.get("/v1/providers/facebook", params={"hub.verify_token": ""})
    await error_of(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "60"
    response = await client.post("/v1/providers/typeform", data=b"{}", headers=tf_signed(b"{}"))
    error = await error_of(response, 503, "unavailable")
    assert "typeform provider is not configured" in error["message"] and "providers.typeform" in error["message"]
    assert response.headers["Retry-After"] == "60"
    await _conforms(response, "/v1/providers/typeform", "post")
    await error_of(await client.post("/v1/providers/typefrom", data=b"{}", headers=tf_signed(b"{}")), 404)
    # What LeadflowProviderWebhooksUnavailable watches: the 503s by provider and reason.
    assert sample(metrics, "leadflow_provider_webhooks_unavailable_total", provider="facebook",
                  reason="unconfigured") == 1
    assert sample(metrics, "leadflow_provider_webhooks_unavailable_total", provider="typeform",
                  reason="unconfigured") == 1


# --- Facebook: leads ------------------------------------------------------------------------


async def test_a_signed_leadgen_with_field_data_is_captured(
        client: Client, engine: FakeEngine, metrics: Metrics) -> None:
    body = leadgen(ANA, extra_changes=[{"field": "feed", "value": {"item": "post"}}])
    response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    assert response.status == 200
    result = await response.json()
    assert (result["accepted"], result["rejected"], result["ignored"]) == (1, 0, 1)
    assert result["results"][0]["leadgen_id"] == "444444444444"
    await _conforms(response, "/v1/providers/facebook", "post")

    [(key, value)] = engine.captured
    record = orjson.loads(value)
    assert key == result["results"][0]["lead_id"]
    assert (record["email"], record["first_name"], record["last_name"]) == (
        "Ana.Garcia@Example.com", "Ana", "García López")
    assert (record["phone"], record["title"], record["external_id"]) == (
        "+34 612 345 678", "Head of Operations", "444444444444")
    assert record["attributes"] == {"how_many_seats?": "40", "products": "routing, sla",
                                    "facebook_form_id": "551111744595541", "facebook_page_id": "516540199134611"}
    assert record["_meta"]["channel"] == "facebook" and record["_meta"]["default_source"] == "facebook-lead-ads"
    assert sample(metrics, "leadflow_leads_captured_total", source="facebook-lead-ads", channel="facebook") == 1

    # Meta redelivers on any doubt: the same body gets the first answer, and nothing is captured twice.
    again = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == result and len(engine.captured) == 1


async def test_a_facebook_phone_number_with_an_extension_is_its_own_lead(
        client: Client, engine: FakeEngine) -> None:
    bo = {**ANA, "leadgen_id": "555", "field_data": [
        {"name": "phone_number", "values": ["+1 650-253-0000 ext. 123"]}, {"name": "full_name", "values": ["Bo"]}]}
    body = leadgen(bo)
    response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    assert response.status == 200
    [(key, _)] = engine.captured
    assert key == derive_lead_id(email=None, phone="+16502530000", phone_extension="123", source="facebook-lead-ads",
                                 external_id="555")
    assert key != derive_lead_id(email=None, phone="+16502530000", source="facebook-lead-ads", external_id="555")


async def test_without_redis_a_redelivery_carries_the_same_capture_id(serve: Serve, engine: FakeEngine) -> None:
    # The first answer cannot be looked up: the lead is captured again under the same capture id,
    # which the lead agent recognizes as a replay (Redis only saves the Kafka write).
    client = await serve(redis=DownRedis())
    body = leadgen(ANA)
    for _ in range(2):
        assert (await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))).status == 200
    first, second = (orjson.loads(value)["_meta"]["capture_id"] for _, value in engine.captured)
    assert first == second


@pytest.mark.parametrize(("hours", "accepted"), [(47, True), (49, False)])
async def test_a_lead_created_before_the_replay_window_is_refused(
        client: Client, engine: FakeEngine, clock: FakeClock, metrics: Metrics, hours: int, accepted: bool) -> None:
    # The body is signed, created_time with it: a delivery caught and sent again days later
    # still says when Meta made the lead. Meta retries for 36 h; the window is 48 h.
    clock.advance(hours * 3600)
    body = leadgen(ANA)
    response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    assert response.status == 200
    [result] = (await response.json())["results"]
    await _conforms(response, "/v1/providers/facebook", "post")
    if accepted:
        assert result["status"] == "accepted" and len(engine.captured) == 1
    else:
        assert result["status"] == "rejected" and not engine.captured
        [error] = result["errors"]
        assert error["field"] == "entry[0].changes[0].value.created_time"
        assert "49 h old, past the 48 h" in error["reason"] and "providers.facebook.max_age_hours" in error["reason"]
        assert sample(metrics, "leadflow_leads_rejected_total", channel="facebook", reason="stale") == 1


async def test_the_entry_time_stands_in_for_a_missing_created_time(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    clock.advance(72 * 3600)
    body = leadgen({k: v for k, v in ANA.items() if k != "created_time"})
    [result] = (await (await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))).json())[
        "results"]
    assert result["errors"][0]["field"] == "entry[0].time" and not engine.captured


async def test_leads_without_field_data_are_fetched_through_the_lead_fetcher(
        client: Client, engine: FakeEngine, fetcher: StandInFetcher) -> None:
    fetcher.leads["902"] = PermanentError("graph api answered 400 (code 100): lead deleted")
    body = leadgen({"leadgen_id": 901, "page_id": 516540199134611}, {"leadgen_id": "902"})  # old numeric ids too
    response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    result = await response.json()
    assert sorted(fetcher.asked) == ["901", "902"]
    first, second = result["results"]
    assert first["status"] == "accepted"
    assert second == {"leadgen_id": "902", "status": "rejected", "errors": [{
        "field": "entry[0].changes[1].value.leadgen_id",
        "reason": "cannot be read from the Graph API: graph api answered 400 (code 100): lead deleted"}]}
    record = orjson.loads(engine.captured[0][1])
    assert record["email"] == "li.wei@example.org" and record["company"] == "Northwind"
    await _conforms(response, "/v1/providers/facebook", "post")


@pytest.mark.parametrize(("problem", "retry_after", "says", "reason"), [
    ("transient", "5", "graph api answered 503", "graph_unavailable"),
    ("no token", "60", "no access token is configured", "token_missing"),
])
async def test_when_leads_cannot_be_read_now_meta_is_asked_to_redeliver(
        serve: Serve, engine: FakeEngine, fetcher: StandInFetcher, metrics: Metrics,
        problem: str, retry_after: str, says: str, reason: str) -> None:
    fetcher.leads["903"] = TransientError("graph api answered 503")
    providers = Providers(facebook=FacebookSettings(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN,
                                                    fetcher=fetcher if problem == "transient" else None))
    client = await serve(providers)
    body = leadgen(ANA, {"leadgen_id": "903"})
    response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    error = await error_of(response, 503, "unavailable")
    assert response.headers["Retry-After"] == retry_after
    assert "1 of 2 leads cannot be read now" in error["message"] and says in error["message"]
    await _conforms(response, "/v1/providers/facebook", "post")
    # Ana came with her answers: stored now, under the capture id her redelivery will carry.
    [(_, first)] = engine.captured
    assert orjson.loads(first)["external_id"] == "444444444444"
    assert sample(metrics, "leadflow_leads_rejected_total", channel="facebook", reason="unreadable") == 0
    assert sample(metrics, "leadflow_provider_webhooks_unavailable_total", provider="facebook", reason=reason) == 1

    if problem == "transient":  # it passes: the redelivery (a 503 is not remembered) brings the lead in
        fetcher.leads["903"] = [FieldDatum("email", ("bo@example.org",))]
        again = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
        assert again.status == 200 and "Idempotent-Replayed" not in again.headers
        ana, bo = (await again.json())["results"]
        # Ana's marker was set by this same capture (the redelivery carries its id): accepted, as
        # the first time would have said, not a duplicate of herself (review s18-redis, finding 4).
        assert (ana["status"], bo["status"]) == ("accepted", "accepted")
        ids = [orjson.loads(value)["_meta"]["capture_id"] for _, value in engine.captured]
        assert len(ids) == 3 and ids[0] == ids[1]  # Ana again is a replay the lead agent drops


@pytest.mark.parametrize(("code", "subcode"), [(190, 463), (190, None), (102, None), (10, None), (200, None),
                                               (299, None), (100, 33)])
async def test_a_token_or_permission_problem_is_503_until_fixed_and_no_lead_is_lost(
        serve: Serve, engine: FakeEngine, fetcher: StandInFetcher, metrics: Metrics,
        caplog: pytest.LogCaptureFixture, code: int, subcode: int | None) -> None:
    # Meta, Graph API "Handling Errors": 102 and 190 mean "get a new access token"; 10 and 200-299
    # a missing permission; 100/33 "cannot be loaded due to missing permissions". The config is
    # fixable and Meta redelivers for 36 h: rejecting inside a 200 would lose the lead for good.
    answers = fetcher.leads["901"]
    fetcher.leads["901"] = GraphAccessRefused(400, code, subcode, "OAuthException")
    client = await serve()
    body = leadgen({"leadgen_id": "901"})
    with caplog.at_level(logging.WARNING, logger="connectors.api.providers"):
        response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    error = await error_of(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "60"
    assert f"code {code}" in error["message"] and "providers.facebook.access_token_env" in error["message"]
    assert engine.captured == []
    assert sample(metrics, "leadflow_leads_rejected_total", channel="facebook", reason="unreadable") == 0
    # What an alert watches (docs/capture.md): 503s on the Facebook route.
    assert sample(metrics, "leadflow_http_requests_total", route="/v1/providers/facebook", status="503") == 1
    assert sample(metrics, "leadflow_provider_webhooks_unavailable_total", provider="facebook",
                  reason="token_refused") == 1
    [record] = [r for r in caplog.records if r.name == "connectors.api.providers"]
    assert record.levelno == logging.ERROR and f"code {code}" in record.getMessage()
    assert "901" not in record.getMessage()  # no lead data: codes and counts only

    fetcher.leads["901"] = answers  # the token is renewed; Meta redelivers the same body
    again = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    assert again.status == 200 and (await again.json())["accepted"] == 1
    assert orjson.loads(engine.captured[0][1])["email"] == "li.wei@example.org"


async def test_a_delivery_of_1000_leads_is_taken_whole(serve: Serve, engine: FakeEngine) -> None:
    # Meta batches up to 1000 updates in one notification and retries that same batch for 36 h:
    # a lower limit refuses every retry and loses every lead in it.
    client = await serve(client_max_size=1_048_576)  # the worker's default LEADFLOW_MAX_BODY_BYTES
    people = [{"leadgen_id": str(800000000000 + i), "created_time": 1767603600,
               "field_data": [{"name": "email", "values": [f"p{i}@example.org"]}]} for i in range(1001)]
    body = leadgen(*people[:1000])
    response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    assert response.status == 200, await response.text()
    result = await response.json()
    assert (result["accepted"], result["rejected"], len(engine.captured)) == (1000, 0, 1000)
    await _conforms(response, "/v1/providers/facebook", "post")

    too_many = leadgen(*people)
    response = await client.post("/v1/providers/facebook", data=too_many, headers=fb_signed(too_many))
    assert "at most 1000" in fields_of(await error_of(response, 422, "invalid_payload"))["entry[0].changes"]


async def test_1000_graph_reads_fit_in_a_few_seconds(serve: Serve, engine: FakeEngine) -> None:
    # Meta does not say how long it waits for the answer: 1000 reads at 0.1 s each must not add up.
    class SlowGraph:
        async def fetch(self, leadgen_id: str) -> Sequence[FieldDatum]:
            await asyncio.sleep(0.1)
            return [FieldDatum("email", (f"g{leadgen_id}@example.org",))]

    client = await serve(Providers(facebook=FacebookSettings(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN,
                                                             fetcher=SlowGraph())))
    body = leadgen(*({"leadgen_id": str(700000000000 + i)} for i in range(1000)))
    started = time.monotonic()
    response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    took = time.monotonic() - started
    assert response.status == 200 and (await response.json())["accepted"] == 1000
    assert took < 9, f"{took:.1f} s for 1000 reads"  # 32 at a time: 3.2 s; 8 at a time took 12.5 s


@pytest.mark.parametrize(("header", "reason"), [
    (None, "missing X-Hub-Signature-256 header"),
    ("sha256=" + "0" * 64, "does not match the body"),
    ("sha256=zz" + "0" * 62, "64 hex digits"),
    ("sha1=" + "0" * 40, "64 hex digits"),
    ("wrong-secret", "does not match the body"),
    ("tampered", "does not match the body"),
])
async def test_a_bad_facebook_signature_is_401_and_nothing_captured(
        client: Client, engine: FakeEngine, header: str | None, reason: str) -> None:
    body = leadgen(ANA)
    headers = {"Content-Type": "application/json"}
    if header == "wrong-secret":
        headers = fb_signed(body, "another-app-secret")
    elif header == "tampered":
        headers = fb_signed(body)
        body = body.replace(b"444444444444", b"444444444445")
    elif header is not None:
        headers["X-Hub-Signature-256"] = header
    response = await client.post("/v1/providers/facebook", data=body, headers=headers)
    error = await error_of(response, 401, "bad_signature")
    assert reason in error["message"]
    await _conforms(response, "/v1/providers/facebook", "post")
    assert engine.captured == []


@pytest.mark.parametrize(("payload", "field", "reason"), [
    ({"object": "user", "entry": []}, "object", '"page"'),
    ({"object": "page"}, "entry", "expected an array"),
    ({"object": "page", "entry": [{"changes": {}}]}, "entry[0].changes", "expected an array"),
    ({"object": "page", "entry": [{"changes": [{"field": "leadgen"}]}]}, "entry[0].changes[0].value",
     "expected an object"),
    ({"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {}}]}]},
     "entry[0].changes[0].value.leadgen_id", "non-empty string"),
    ({"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {"leadgen_id": "../me"}}]}]},
     "entry[0].changes[0].value.leadgen_id", "numeric Graph API id"),
    ({"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {
        "leadgen_id": "1", "field_data": [{"name": "email", "values": "a@example.com"}]}}]}]},
     "entry[0].changes[0].value.field_data[0].values", "expected an array"),
    ({"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {
        "leadgen_id": "1", "created_time": "yesterday"}}]}]},
     "entry[0].changes[0].value.created_time", "Unix time in seconds"),
    ({"object": "page", "entry": [{"time": 1.5, "changes": []}]}, "entry[0].time", "Unix time in seconds"),
    ([], "(body)", "expected an object"),
])
async def test_a_payload_of_the_wrong_shape_is_422_naming_the_field(
        client: Client, engine: FakeEngine, payload: Any, field: str, reason: str) -> None:
    body = orjson.dumps(payload)
    response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    error = await error_of(response, 422, "invalid_payload")
    assert reason in fields_of(error)[field]
    await _conforms(response, "/v1/providers/facebook", "post")
    assert engine.captured == []


async def test_signed_garbage_is_400(client: Client) -> None:
    response = await client.post("/v1/providers/facebook", data=b"{not json", headers=fb_signed(b"{not json"))
    await error_of(response, 400, "malformed_json")


async def test_an_answer_that_would_not_validate_is_kept_not_lost(client: Client, engine: FakeEngine) -> None:
    lead = {"leadgen_id": "77", "field_data": [{"name": "email", "values": ["ana@"]},
                                               {"name": "phone_number", "values": ["6552467291"]},
                                               {"name": "country", "values": ["Spain"]}]}
    body = leadgen(lead)
    response = await client.post("/v1/providers/facebook", data=body, headers=fb_signed(body))
    assert (await response.json())["accepted"] == 1
    record = orjson.loads(engine.captured[0][1])
    assert "email" not in record and "phone" not in record and record["external_id"] == "77"
    assert record["attributes"] == {"email_as_given": "ana@", "phone_as_given": "6552467291",
                                    "country_as_given": "Spain"}


# --- the Graph API fetcher --------------------------------------------------------------------


async def test_the_graph_fetcher_reads_field_data_with_the_token_and_proof() -> None:
    seen: list[web.Request] = []
    answers = {"1": (200, {"id": "1", "field_data": [{"name": "email", "values": ["a@example.com"]}]}),
               "2": (400, {"error": {"message": "Unsupported get request", "code": 100}}),
               "3": (400, {"error": {"message": "User request limit reached", "code": 17}}),
               "4": (502, {"error": {"message": "bad gateway"}}),
               "5": (400, {"error": {"message": "Error validating access token: Session has expired",
                                     "type": "OAuthException", "code": 190, "error_subcode": 463}}),
               "6": (403, {"error": {"message": "(#200) Requires leads_retrieval", "type": "OAuthException",
                                     "code": 200}}),
               "7": (400, {"error": {"message": "Object with ID '7' does not exist, cannot be loaded due to "
                                                "missing permissions", "type": "GraphMethodException",
                                     "code": 100, "error_subcode": 33}})}

    async def graph(request: web.Request) -> web.Response:
        seen.append(request)
        status, body = answers[request.match_info["id"]]
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get(f"/{GRAPH_API_VERSION}/{{id}}", graph)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        base = str(server.make_url(""))
        # A callable: the worker opens its one session lazily, on the running loop.
        fetcher = GraphLeadFetcher(lambda: session, access_token="page-token", app_secret=APP_SECRET, base_url=base)
        assert await fetcher.fetch("1") == (FieldDatum("email", ("a@example.com",)),)
        assert seen[0].headers["Authorization"] == "Bearer page-token"
        assert seen[0].query["appsecret_proof"] == hmac.new(APP_SECRET.encode(), b"page-token",
                                                             hashlib.sha256).hexdigest()
        with pytest.raises(PermanentError, match="code 100"):
            await fetcher.fetch("2")
        with pytest.raises(TransientError, match="code 17"):
            await fetcher.fetch("3")
        with pytest.raises(TransientError, match="502"):
            await fetcher.fetch("4")
        for node, code in (("5", "code 190, subcode 463, OAuthException"), ("6", "code 200"),
                           ("7", "code 100, subcode 33")):
            with pytest.raises(GraphAccessRefused, match=code) as refused:
                await fetcher.fetch(node)
            assert "does not exist" not in str(refused.value) and "Session" not in str(refused.value)
        with pytest.raises(PermanentError, match="not a Graph API id"):
            await fetcher.fetch("1/../../me")
        assert "page-token" not in repr(fetcher)
    async with aiohttp.ClientSession() as session:
        gone = GraphLeadFetcher(session, access_token="t", app_secret="s", base_url=base)  # closed now
        with pytest.raises(TransientError, match="unreachable"):
            await gone.fetch("1")


# --- Typeform --------------------------------------------------------------------------------


def tf_payload(**overrides: Any) -> dict[str, Any]:
    response = {
        "form_id": "lT4Z3j", "token": "a3a12ec67a1365927098a606107fac15", "submitted_at": "2026-01-05T09:00:00Z",
        "hidden": {"utm_campaign": "spring-webinar", "utm_source": "newsletter"},
        "calculated": {"score": 7},
        "definition": {"id": "lT4Z3j", "fields": [{"id": "k1", "ref": "seats_ref", "title": "How many seats?"}]},
        "answers": [
            {"type": "email", "email": "Ana.Garcia@Example.com", "field": {"id": "e1", "type": "email", "ref": "mail"}},
            {"type": "text", "text": "Acme Iberia", "field": {"id": "c1", "type": "short_text", "ref": "company_ref"}},
            {"type": "choice", "choice": {"label": "CTO"}, "field": {"id": "r1", "type": "dropdown", "ref": "role_ref"}},
            {"type": "number", "number": 40, "field": {"id": "k1", "type": "number", "ref": "seats_ref"}},
            {"type": "choices", "choices": {"labels": ["Routing", "SLA"], "other": "CRM"},
             "field": {"id": "m1", "type": "multiple_choice", "ref": "needs"}},
            {"type": "boolean", "boolean": True, "field": {"id": "b1", "type": "yes_no", "ref": "newsletter"}},
            {"type": "payment", "payment": {"amount": "1"}, "field": {"id": "p1", "type": "payment", "ref": "pay"}},
        ],
        **overrides,
    }
    return {"event_id": "01HZX0", "event_type": "form_response", "form_response": response}


async def test_a_signed_typeform_response_is_mapped_and_captured(
        client: Client, engine: FakeEngine, metrics: Metrics) -> None:
    body = orjson.dumps(tf_payload())
    response = await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))
    assert response.status == 200
    result = await response.json()
    assert result["status"] == "accepted"
    await _conforms(response, "/v1/providers/typeform", "post")
    record = orjson.loads(engine.captured[0][1])
    assert (record["email"], record["company"], record["title"], record["campaign"]) == (
        "Ana.Garcia@Example.com", "Acme Iberia", "CTO", "spring-webinar")
    assert record["external_id"] == "a3a12ec67a1365927098a606107fac15"
    assert record["attributes"] == {"How many seats?": "40", "needs": "Routing, SLA, CRM", "newsletter": "yes",
                                    "utm_source": "newsletter", "typeform_form_id": "lT4Z3j", "typeform_score": "7"}
    assert record["_meta"]["channel"] == "typeform" and record["_meta"]["default_source"] == "typeform"
    assert sample(metrics, "leadflow_leads_captured_total", source="typeform", channel="typeform") == 1

    again = await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))
    assert again.headers["Idempotent-Replayed"] == "true" and await again.json() == result
    assert len(engine.captured) == 1


async def test_a_typeform_response_submitted_before_the_replay_window_is_401(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    clock.advance(49 * 3600)
    body = orjson.dumps(tf_payload())
    response = await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))
    error = await error_of(response, 401, "stale")
    assert "form_response.submitted_at is 49 h old, past the 48 h" in error["message"]
    assert not engine.captured
    await _conforms(response, "/v1/providers/typeform", "post")


async def test_a_form_without_a_field_map_still_finds_email_and_phone(client: Client, engine: FakeEngine) -> None:
    body = orjson.dumps(tf_payload(form_id="other", answers=[
        {"type": "phone_number", "phone_number": "+34612345678", "field": {"id": "p", "type": "phone_number"}},
        {"type": "text", "text": "Acme", "field": {"id": "c", "type": "short_text", "ref": "company_ref"}}]))
    assert (await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))).status == 200
    record = orjson.loads(engine.captured[0][1])
    assert record["phone"] == "+34612345678" and record["attributes"]["company_ref"] == "Acme"


@pytest.mark.parametrize(("case", "reason"), [
    ("missing", "missing Typeform-Signature header"),
    ("hex", "does not match the body"),
    ("wrong-secret", "does not match the body"),
    ("no-scheme", "sha256=<base64 digest>"),
])
async def test_a_bad_typeform_signature_is_401(client: Client, engine: FakeEngine, case: str, reason: str) -> None:
    body = orjson.dumps(tf_payload())
    headers = {"Content-Type": "application/json"}
    if case == "hex":
        headers["Typeform-Signature"] = "sha256=" + hmac.new(TF_SECRET.encode(), body, hashlib.sha256).hexdigest()
    elif case == "wrong-secret":
        headers = tf_signed(body, "not-the-secret")
    elif case == "no-scheme":
        headers["Typeform-Signature"] = tf_signed(body)["Typeform-Signature"].removeprefix("sha256=")
    response = await client.post("/v1/providers/typeform", data=body, headers=headers)
    assert reason in (await error_of(response, 401, "bad_signature"))["message"]
    await _conforms(response, "/v1/providers/typeform", "post")
    assert engine.captured == []


@pytest.mark.parametrize("where", ["answer", "hidden", "choice"])
async def test_a_very_long_typeform_answer_is_cut_not_refused(
        client: Client, engine: FakeEngine, where: str) -> None:
    # Typeform retries a 4xx five times and then drops the response: refusing one long answer
    # would lose the lead. It is cut to fit an attribute, like every other provider value.
    long = "word " * 1200  # 6000 characters
    answers = tf_payload()["form_response"]["answers"]
    hidden = {"utm_campaign": "spring-webinar"}
    if where == "answer":
        answers = [*answers, {"type": "text", "text": long, "field": {"id": "l1", "type": "long_text", "ref": "story"}}]
    elif where == "hidden":
        hidden["story"] = long
    else:
        answers = [*answers, {"type": "choice", "choice": {"other": long},
                              "field": {"id": "l1", "type": "multiple_choice", "ref": "story"}}]
    body = orjson.dumps(tf_payload(answers=answers, hidden=hidden))
    response = await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "accepted"
    story = orjson.loads(engine.captured[0][1])["attributes"]["story"]
    assert len(story) == 200 and story.startswith("word word") and story.endswith("…")


async def test_a_long_answer_mapped_to_a_lead_field_is_kept_as_given(client: Client, engine: FakeEngine) -> None:
    field_map = tf_payload()["form_response"]["answers"]
    long = "x" * 6000
    answers = [{**a, "text": long} if a.get("field", {}).get("ref") == "company_ref" else a for a in field_map]
    body = orjson.dumps(tf_payload(answers=answers))
    response = await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))
    assert response.status == 200, await response.text()
    record = orjson.loads(engine.captured[0][1])
    assert "company" not in record and record["attributes"]["company_as_given"] == long[:200]


async def test_other_typeform_events_are_ignored(client: Client, engine: FakeEngine) -> None:
    body = orjson.dumps({"event_id": "x", "event_type": "form_response_partial", "form_response": {}})
    response = await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))
    assert await response.json() == {"status": "ignored"}
    assert engine.captured == []


@pytest.mark.parametrize(("payload", "field", "reason"), [
    ({"event_type": "form_response"}, "form_response", "expected an object"),
    (tf_payload(token=""), "form_response.token", "non-empty string"),
    (tf_payload(submitted_at="last week"), "form_response.submitted_at", "ISO 8601"),
    (tf_payload(submitted_at="2026-01-05T09:00:00"), "form_response.submitted_at", "with its offset"),
    (tf_payload(answers={}), "form_response.answers", "expected an array"),
    (tf_payload(answers=[{"type": "text", "text": "x"}]), "form_response.answers[0].field", "expected an object"),
    (tf_payload(answers=[{"type": "number", "number": "40", "field": {"id": "n"}}]),
     "form_response.answers[0].number", "expected a number"),
    (tf_payload(hidden=["x"]), "form_response.hidden", "expected an object"),
    ({"form_response": {}}, "event_type", "non-empty string"),
])
async def test_a_typeform_payload_of_the_wrong_shape_is_422(
        client: Client, payload: Any, field: str, reason: str) -> None:
    body = orjson.dumps(payload)
    response = await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))
    assert reason in fields_of(await error_of(response, 422, "invalid_payload"))[field]
    await _conforms(response, "/v1/providers/typeform", "post")


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                         st.sampled_from(["object", "entry", "changes", "field", "value", "leadgen_id", "field_data",
                                          "name", "values", "event_type", "form_response", "answers", "type", "text",
                                          "token", "form_id", "hidden", "email", "choice", "label"]), inner,
                         max_size=4), max_leaves=12)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_JSON, provider=st.sampled_from(["facebook", "typeform"]))
async def test_no_signed_payload_makes_a_5xx(client: Client, payload: Any, provider: str) -> None:
    body = json.dumps(payload).encode()  # orjson refuses integers past 64 bits; a sender need not
    headers = fb_signed(body) if provider == "facebook" else tf_signed(body)
    response = await client.post(f"/v1/providers/{provider}", data=body, headers=headers)
    assert response.status < 500 or response.status == 503, await response.text()


async def test_a_provider_limit_counts_only_signed_requests(serve: Serve) -> None:
    redis = GcraRedis()
    client = await serve(rate_limiter=RateLimiter(redis), rate_limits={"provider:typeform": 1})
    body = orjson.dumps(tf_payload())
    await error_of(await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body, "x")), 401)
    assert redis.calls == 0
    assert (await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))).status == 200
    # The same body again is a replay: answered as before, without spending the allowance.
    assert (await client.post("/v1/providers/typeform", data=body, headers=tf_signed(body))).status == 200
    other = orjson.dumps(tf_payload(token="b3a12ec67a1365927098a606107fac16"))
    limited = await client.post("/v1/providers/typeform", data=other, headers=tf_signed(other))
    await error_of(limited, 429, "rate_limited")
    await _conforms(limited, "/v1/providers/typeform", "post")


# --- configuration --------------------------------------------------------------------------


def test_secrets_come_from_the_named_environment_variables() -> None:
    config = ProvidersConfig.model_validate({
        "facebook": {"app_secret_env": "FB_SECRET", "verify_token_env": "FB_VERIFY"},
        "typeform": {"secret_env": "TF_SECRET", "source": "typeform-eu", "forms": FORM_MAP}})
    providers = config.resolve({"FB_SECRET": "s1", "FB_VERIFY": "v1", "TF_SECRET": "s2"})
    assert providers.facebook is not None and providers.typeform is not None
    assert (providers.facebook.app_secret, providers.facebook.verify_token) == ("s1", "v1")
    assert providers.facebook.fetcher is None
    assert providers.typeform.secret == "s2" and providers.typeform.forms == FORM_MAP
    assert "s1" not in repr(providers) and "s2" not in repr(providers)
    with pytest.raises(ConfigError, match=r"\$FB_VERIFY, which is not set"):
        config.resolve({"FB_SECRET": "s1", "TF_SECRET": "s2"})


async def test_an_access_token_enables_the_graph_api_fetcher() -> None:
    config = ProvidersConfig.model_validate({"facebook": {"access_token_env": "FB_TOKEN"}})
    env = {"LEADFLOW_FACEBOOK_APP_SECRET": "s", "LEADFLOW_FACEBOOK_VERIFY_TOKEN": "v", "FB_TOKEN": "t"}
    with pytest.raises(ConfigError, match="HTTP session"):
        config.resolve(env)
    async with aiohttp.ClientSession() as session:
        providers = config.resolve(env, session)
    assert providers.facebook is not None and isinstance(providers.facebook.fetcher, GraphLeadFetcher)


async def test_the_graph_api_url_is_configurable_and_checked() -> None:
    env = {"LEADFLOW_FACEBOOK_APP_SECRET": "s", "LEADFLOW_FACEBOOK_VERIFY_TOKEN": "v", "FB_TOKEN": "t"}
    default = ProvidersConfig.model_validate({"facebook": {"access_token_env": "FB_TOKEN"}})
    relay = ProvidersConfig.model_validate({"facebook": {"access_token_env": "FB_TOKEN", "graph_api_version": "v22.0",
                                                         "graph_api_url": "http://graph-relay.internal:8080/"}})
    async with aiohttp.ClientSession() as session:
        assert repr(default.resolve(env, session).facebook.fetcher) == (  # type: ignore[union-attr]
            f"GraphLeadFetcher('https://graph.facebook.com/{GRAPH_API_VERSION}')")
        assert repr(relay.resolve(env, session).facebook.fetcher) == (  # type: ignore[union-attr]
            "GraphLeadFetcher('http://graph-relay.internal:8080/v22.0')")
    for bad in ("graph.facebook.com", "ftp://graph.facebook.com", "https://user@graph.facebook.com",
                "https://graph.facebook.com/?x=1"):
        with pytest.raises(ValueError, match="graph_api_url"):
            ProvidersConfig.model_validate({"facebook": {"graph_api_url": bad}})


def test_the_default_graph_api_version_is_served_past_2027() -> None:
    # Meta's changelog: v21.0 is served until 21 Jan 2027; a default past its end breaks every read.
    assert GRAPH_API_VERSION == "v24.0"
    assert ProvidersConfig.model_validate({"facebook": {}}).facebook.graph_api_version == "v24.0"  # type: ignore[union-attr]


def test_a_field_map_must_point_at_lead_fields() -> None:
    with pytest.raises(ValueError, match="'external_id' is not a lead field"):
        ProvidersConfig.model_validate({"typeform": {"forms": {"f": {"ref": "external_id"}}}})

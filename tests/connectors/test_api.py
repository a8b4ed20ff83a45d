"""The HTTP API's real handlers over an in-memory engine and Redis: capture, reads, reps, errors."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.api.openapi import openapi_document
from connectors.api.ports import Readiness
from connectors.api.write_gate import WritesPaused
from connectors.capture_store import CaptureStore
from connectors.lead_input import LEAD_FIELDS
from connectors.webhooks import validate_secret
from leadflow.errors import TransientError, Unconfirmed
from ops.metrics import Metrics
from rules.commands import ChangePresence, DispositionLead, PutRep, RepProfile, RetireRep
from rules.reps import Joining, MoveRefusal, RepEntry, Refusal
from rules.roster import RepState
from sla.clock import FakeClock
from tests.connectors.conftest import (
    AUTH,
    KEYS,
    REP_SECRET,
    Client,
    ClientFactory,
    DownRedis,
    FakeEngine,
    FakeRedis,
    lead_state,
    team_state,
)

PARTNER = {"Authorization": f"Bearer {KEYS['partner']}"}


async def error_of(response: ClientResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the documented error shape and return its ``error`` object."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) <= {"code", "message", "fields"} and error["message"]
    assert all(set(f) == {"field", "reason"} for f in error.get("fields", []))
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


def fields_of(error: dict[str, Any]) -> dict[str, str]:
    return {f["field"]: f["reason"] for f in error.get("fields", [])}


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- capture ----------------------------------------------------------------------------


async def test_a_lead_is_accepted_then_the_same_person_is_a_duplicate(
        client: Client, engine: FakeEngine, metrics: Metrics, clock: FakeClock) -> None:
    first = await client.post("/v1/leads", json={"email": "Ana.Garcia@Example.com", "first_name": "Ana"},
                              headers=AUTH)
    assert first.status == 202
    accepted = await first.json()
    assert accepted["status"] == "accepted" and accepted["lead_id"].startswith("ld_")

    again = await client.post("/v1/leads", json={"email": "  ana.garcia@EXAMPLE.COM "}, headers=AUTH)
    assert await again.json() == {"lead_id": accepted["lead_id"], "status": "duplicate"}

    # Both touches are captured (the lead agent merges the second); the record is keyed by lead id.
    assert [key for key, _ in engine.captured] == [accepted["lead_id"]] * 2
    record = orjson.loads(engine.captured[0][1])
    assert record["email"] == "Ana.Garcia@Example.com"
    meta = record["_meta"]
    assert meta["channel"] == "api" and meta["default_source"] == "web-form"
    assert meta["received_at"] == clock.now().isoformat()
    assert meta["capture_id"] != orjson.loads(engine.captured[1][1])["_meta"]["capture_id"]
    assert sample(metrics, "leadflow_leads_captured_total", source="web-form", channel="api") == 2


async def test_a_batch_reports_each_lead_and_captures_only_the_valid_ones(
        client: Client, engine: FakeEngine, metrics: Metrics) -> None:
    batch = {"leads": [
        {"email": "li@example.org", "source": "trade-show"},
        {"email": "not-an-email"},
        "not an object",
        {"phone": "+44 20 7946 0018", "unknown": 1},
        {"email": "LI@example.org"},  # the first lead again, in the same batch
        {"phone": "020 7946 0018", "country": "GB"},
    ]}
    response = await client.post("/v1/leads", json=batch, headers=AUTH)
    assert response.status == 202
    body = await response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 1, 3)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "rejected", "duplicate",
                                              "accepted"]
    assert results[4]["lead_id"] == results[0]["lead_id"]
    errors = {e["field"]: e["reason"] for r in results if r["status"] == "rejected" for e in r["errors"]}
    assert errors["leads[1].email"] == "An email address must have an @-sign."
    assert "JSON object" in errors["leads[2]"]
    assert errors["leads[3].unknown"] == "unknown field"
    assert [key for key, _ in engine.captured] == [results[0]["lead_id"], results[4]["lead_id"],
                                                   results[5]["lead_id"]]
    assert sample(metrics, "leadflow_leads_rejected_total", channel="api", reason="invalid") == 3


@pytest.mark.parametrize(
    ("body", "status", "code", "field", "reason"),
    [
        pytest.param(b'{"email": "a@example.com"', 400, "malformed_json", None, None, id="truncated-json"),
        pytest.param(b"{'email': 'a@example.com'}", 400, "malformed_json", None, None, id="python-not-json"),
        pytest.param(b"", 400, "malformed_json", None, None, id="empty-body"),
        pytest.param(b"  \n ", 400, "malformed_json", None, None, id="blank-body"),
        pytest.param({"email": 42}, 422, "invalid_lead", "email", "valid string", id="number-for-email"),
        pytest.param({"email": "a@example.com", "attributes": {"seats": 40}}, 422, "invalid_lead",
                     "attributes.seats", "valid string", id="number-in-attributes"),
        pytest.param({"email": "a@example.com", "attributes": ["x"]}, 422, "invalid_lead", "attributes",
                     "valid dictionary", id="list-for-attributes"),
        pytest.param({"first_name": "Ana", "company": "Acme"}, 422, "invalid_lead", "(body)", "identity",
                     id="no-identity"),
        pytest.param({"email": "a@example.com", "emial": "b@example.com"}, 422, "invalid_lead", "emial",
                     "unknown field", id="unknown-field"),
        pytest.param({"email": "a@example.com", "country": "Spain"}, 422, "invalid_lead", "country",
                     "ISO 3166-1", id="bad-country"),
        pytest.param({"phone": "612 345 678"}, 422, "invalid_lead", "phone", "set country", id="national-phone"),
        pytest.param([{"email": "a@example.com"}], 422, "invalid_lead", "(body)", "JSON object",
                     id="array-not-batch"),
        pytest.param("a@example.com", 422, "invalid_lead", "(body)", "JSON object", id="string-body"),
        pytest.param(None, 422, "invalid_lead", "(body)", "JSON object", id="null-body"),
        pytest.param({"leads": []}, 422, "invalid", "leads", "non-empty array", id="empty-batch"),
        pytest.param({"leads": {"email": "a@example.com"}}, 422, "invalid", "leads", "non-empty array",
                     id="batch-not-array"),
        pytest.param({"leads": [{"email": "a@example.com"}], "source": "x"}, 422, "invalid", "source",
                     "unknown field", id="batch-envelope-extra"),
    ],
)
async def test_bad_input_gets_a_4xx_naming_the_problem(
        client: Client, engine: FakeEngine, body: Any, status: int, code: str, field: str | None,
        reason: str | None) -> None:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post("/v1/leads", data=data,
                                 headers={**AUTH, "Content-Type": "application/json"})
    error = await error_of(response, status, code)
    if field is not None:
        assert reason is not None and reason in fields_of(error)[field]
    assert engine.captured == []


async def test_a_body_over_the_size_limit_is_413(make_client: ClientFactory, engine: FakeEngine) -> None:
    client = await make_client(client_max_size=1024)
    response = await client.post("/v1/leads", json={"email": "a@example.com", "message": "x" * 2000},
                                 headers=AUTH)
    error = await error_of(response, 413, "payload_too_large")
    assert "1024 bytes" in error["message"]
    assert engine.captured == []


async def test_a_batch_over_the_bound_is_413(make_client: ClientFactory, engine: FakeEngine) -> None:
    client = await make_client(max_batch=3)
    leads = [{"email": f"p{i}@example.com"} for i in range(4)]
    error = await error_of(await client.post("/v1/leads", json={"leads": leads}, headers=AUTH), 413,
                           "batch_too_large")
    assert fields_of(error) == {"leads": "at most 3 items"}
    assert engine.captured == []
    assert (await client.post("/v1/leads", json={"leads": leads[:3]}, headers=AUTH)).status == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
async def test_a_body_that_is_not_json_is_415(client: Client, content_type: str) -> None:
    response = await client.post("/v1/leads", data=b'{"email": "a@example.com"}',
                                 headers={**AUTH, "Content-Type": content_type})
    error = await error_of(response, 415, "unsupported_media_type")
    assert content_type in error["message"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/lead+json", None])
async def test_json_content_types_and_a_missing_one_are_accepted(client: Client, content_type: str | None) -> None:
    headers = dict(AUTH) if content_type is None else {**AUTH, "Content-Type": content_type}
    # (aiohttp's client would label raw bytes application/octet-stream; send no Content-Type at all.)
    response = await client.post("/v1/leads", data=b'{"email": "a@example.com"}', headers=headers,
                                 skip_auto_headers=["Content-Type"])
    assert response.status == 202


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Bearer wrong-key", f"Basic {KEYS['web-form']}", KEYS["web-form"],
])
async def test_a_missing_or_unknown_api_key_is_401(client: Client, engine: FakeEngine,
                                                   authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    # Auth comes first: even a malformed body gets the 401.
    response = await client.post("/v1/leads", data=b"{nope", headers={**headers, "Content-Type": "application/json"})
    await error_of(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="leadflow"'
    assert engine.captured == []


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/leads/ld_0"), ("POST", "/v1/leads/ld_0/disposition"), ("PUT", "/v1/reps/rep-1"),
    ("POST", "/v1/reps/rep-1/presence"), ("GET", "/v1/teams/emea"), ("DELETE", "/v1/reps/rep-1"),
])
async def test_every_v1_route_needs_the_api_key(client: Client, method: str, path: str) -> None:
    await error_of(await client.request(method, path, json={}), 401, "unauthorized")


async def test_the_key_scheme_is_case_blind_and_the_key_name_is_the_default_source(
        client: Client, engine: FakeEngine) -> None:
    response = await client.post("/v1/leads", json={"external_id": "crm-7"},
                                 headers={"Authorization": f"bearer {KEYS['partner']}"})
    assert response.status == 202
    assert orjson.loads(engine.captured[0][1])["_meta"]["default_source"] == "partner"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nope", 404), ("GET", "/v1/nope", 404), ("POST", "/v1/leads/ld_0/assign", 404),
    ("GET", "/v1/leads", 405), ("PATCH", "/v1/reps/rep-1", 405),
])
async def test_unknown_routes_and_methods_answer_json(client: Client, method: str, path: str, status: int) -> None:
    response = await client.request(method, path, headers=AUTH)
    error = await error_of(response, status)
    if status == 404:
        assert error == {"code": "not_found", "message": f"no route for {method} {path}"}
    else:
        assert error["code"] == "method_not_allowed" and response.headers["Allow"]
        allowed = ", ".join(sorted(m.strip() for m in response.headers["Allow"].split(",")))
        assert error["message"] == f"{method} is not allowed on {path}; allowed: {allowed}"


async def test_get_on_a_rep_shows_the_directory_entry_without_secrets(client: Client, engine: FakeEngine,
                                                                      clock: FakeClock) -> None:
    await error_of(await client.get("/v1/reps/ana", headers=AUTH), 404, "not_found")
    profile = RepProfile(rep_id="ana", team_id="emea", name="Ana", capacity=4, webhook_url="https://hooks.test/ana",
                         webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", email="ana@example.com")
    engine.reps["ana"] = RepEntry(rep_id="ana", team_id="emea", updated_at=clock.now(), profile=profile,
                                  move_refused=MoveRefusal(team_id="apac", reason="team apac has 500 reps",
                                                           at=clock.now()))
    response = await client.get("/v1/reps/ana", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert (body["rep_id"], body["team"], body["status"], body["capacity"]) == ("ana", "emea", "active", 4)
    assert body["move_refused"]["team"] == "apac" and body["webhook_configured"] is True
    assert "whsec_" not in await response.text() and "ana@example.com" not in await response.text()
    assert engine.rep_commands == []


async def test_get_on_a_rep_the_team_has_not_taken_shows_it_pending_or_refused(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    """A new rep in no team yet shows no profile, and says which team was asked and what it answered."""
    profile = RepProfile(rep_id="bo", team_id="emea", name="Bo", capacity=4)
    asked = Joining(team_id="emea", move=1, profile=profile, config_digest=None, origin="api", since=clock.now())
    # Kept in ``asked``; an entry written between f9c1b98 and it kept the question in ``joining``.
    for waiting in ({"asked": asked}, {"joining": asked}):
        engine.reps["bo"] = RepEntry(rep_id="bo", team_id="emea", updated_at=clock.now(), member=False, moves=1,
                                     **waiting)  # type: ignore[arg-type]
        body = await (await client.get("/v1/reps/bo", headers=AUTH)).json()
        assert (body["team"], body["status"], body["in_team"]) == ("emea", "active", False)
        assert body["pending"]["team"] == "emea" and "moving_to" not in body and "capacity" not in body
    engine.reps["bo"] = RepEntry(rep_id="bo", team_id="emea", updated_at=clock.now(), member=False, profile=profile,
                                 moves=1, refused=Refusal(team_id="emea", reason="team emea has 500 reps",
                                                          at=clock.now()))
    body = await (await client.get("/v1/reps/bo", headers=AUTH)).json()
    assert body["in_team"] is False and "pending" not in body and "capacity" not in body
    assert body["refused"] == {"team": "emea", "reason": "team emea has 500 reps", "at": clock.now().isoformat()}
    # A refused change of a member: the profile the team holds, and the refusal.
    engine.reps["bo"] = replace(engine.reps["bo"], member=True)
    body = await (await client.get("/v1/reps/bo", headers=AUTH)).json()
    assert body["in_team"] is True and body["capacity"] == 4 and body["refused"]["team"] == "emea"
    # Retired (review s17-a A5): the profile they had in the team; none for a rep no team ever held.
    engine.reps["bo"] = replace(engine.reps["bo"], retired="api")
    body = await (await client.get("/v1/reps/bo", headers=AUTH)).json()
    assert (body["status"], body["in_team"], body["capacity"]) == ("retired", False, 4)
    engine.reps["bo"] = replace(engine.reps["bo"], member=False)
    body = await (await client.get("/v1/reps/bo", headers=AUTH)).json()
    assert (body["status"], body["in_team"]) == ("retired", False) and "capacity" not in body


# Any JSON value, and lead- and batch-shaped objects with arbitrary values in the real fields.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
_LEAD_SHAPED = st.fixed_dictionaries({}, optional={name: st.text(max_size=30) | _JSON for name in LEAD_FIELDS})
_BODIES = _JSON | _LEAD_SHAPED | st.builds(lambda leads: {"leads": leads}, st.lists(_LEAD_SHAPED | _JSON,
                                                                                     max_size=4))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES)
async def test_no_json_value_makes_capture_fail_with_a_5xx(client: Client, body: Any) -> None:
    # The client is shared by the examples on purpose: it is one server, and a fresh one per
    # example would make this slow without finding more.
    response = await client.post("/v1/leads", data=json.dumps(body).encode(),
                                 headers={**AUTH, "Content-Type": "application/json"})
    assert response.status < 500, await response.text()
    payload = await response.json()
    if response.status == 202:
        assert set(payload) in ({"lead_id", "status"}, {"accepted", "duplicate", "rejected", "results"})
    else:
        await error_of(response, response.status)


# --- idempotency and degraded Redis -----------------------------------------------------


async def test_an_idempotency_key_replays_the_first_response(client: Client, engine: FakeEngine) -> None:
    headers = {**AUTH, "Idempotency-Key": "order-17"}
    batch = {"leads": [{"email": "a@example.com"}, {"email": "bad"}]}
    first = await client.post("/v1/leads", json=batch, headers=headers)
    assert first.status == 202 and "Idempotent-Replayed" not in first.headers
    # A retry is the same request: the same JSON (key order and spacing aside) gets the first answer.
    retry = b'{ "leads" : [ {"email": "a@example.com"}, {"email": "bad"} ] }'
    second = await client.post("/v1/leads", data=retry, headers={**headers, "Content-Type": "application/json"})
    assert second.status == 202
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await second.read() == await first.read()
    assert len(engine.captured) == 1
    # The same key with another body is a client bug, not a retry: refused, nothing captured.
    reused = await client.post("/v1/leads", json={"email": "someone-else@example.com"}, headers=headers)
    error = await error_of(reused, 422, "idempotency_key_reused")
    assert "different request body" in error["message"]
    assert len(engine.captured) == 1

    # The key belongs to the caller, and another key is another request.
    other_caller = await client.post("/v1/leads", json=batch, headers={**PARTNER, "Idempotency-Key": "order-17"})
    assert "Idempotent-Replayed" not in other_caller.headers
    other_key = await client.post("/v1/leads", json=batch, headers={**AUTH, "Idempotency-Key": "order-18"})
    assert "Idempotent-Replayed" not in other_key.headers
    assert len(engine.captured) == 3


async def test_a_key_another_request_holds_is_409_for_the_same_body_and_422_for_another(
        make_client: ClientFactory, engine: FakeEngine) -> None:
    # Audit s16-dedup #7: requests sent at once with one key were each captured. The first claims
    # the key in Redis; here that first request is still being answered (its claim is in Redis).
    redis = FakeRedis()
    client = await make_client(redis=redis)
    body = {"email": "a@example.com"}
    fingerprint = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    claim = await CaptureStore(redis).claim("web-form", "order-9", fingerprint)  # type: ignore[arg-type]
    assert claim.token is not None
    headers = {**AUTH, "Idempotency-Key": "order-9"}
    same = await client.post("/v1/leads", json=body, headers=headers)
    error = await error_of(same, 409, "idempotency_key_in_use")
    assert same.headers["Retry-After"] == "1" and "being answered now" in error["message"]
    other = await client.post("/v1/leads", json={"email": "b@example.com"}, headers=headers)
    await error_of(other, 422, "idempotency_key_reused")
    assert engine.captured == []
    # Once the first is answered, its copy gets that answer.
    await CaptureStore(redis).remember("web-form", "order-9", 202, b'{"lead_id": "ld_1", "status": "accepted"}',  # type: ignore[arg-type]
                                       fingerprint, token=claim.token)
    again = await client.post("/v1/leads", json=body, headers=headers)
    assert (again.status, again.headers["Idempotent-Replayed"]) == (202, "true")
    assert await again.json() == {"lead_id": "ld_1", "status": "accepted"} and engine.captured == []


async def test_after_an_unconfirmed_capture_the_key_refuses_another_body_and_lets_the_same_retry(
        make_client: ClientFactory, engine: FakeEngine) -> None:
    # Review s16-b M4: Kafka did not confirm the capture (it may be stored), and the key was
    # released: another body under the key was 202, so both could be stored.
    client = await make_client()
    headers = {**AUTH, "Idempotency-Key": "k-unconfirmed"}
    engine.capture_error = Unconfirmed("Kafka did not acknowledge in time")
    await error_of(await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers), 503)
    engine.capture_error = None
    other = await client.post("/v1/leads", json={"email": "b@example.com"}, headers=headers)
    await error_of(other, 422, "idempotency_key_reused")
    assert engine.captured == []
    # The same body is the retry the 503 asks for: captured again, with the capture id the first
    # attempt had (so if that one was stored, the lead agent drops this one as a replay).
    retry = await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers)
    assert retry.status == 202 and "Idempotent-Replayed" not in retry.headers
    assert len(engine.captured) == 1
    again = await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers)
    assert (again.status, again.headers.get("Idempotent-Replayed")) == (202, "true")
    assert await again.json() == await retry.json() and len(engine.captured) == 1


async def test_a_retry_of_an_unconfirmed_capture_that_fails_again_keeps_the_key_in_doubt(
        make_client: ClientFactory, engine: FakeEngine) -> None:
    client = await make_client()
    headers = {**AUTH, "Idempotency-Key": "k-twice"}
    engine.capture_error = Unconfirmed("Kafka did not acknowledge in time")
    await error_of(await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers), 503)
    engine.capture_error = TransientError("Kafka is unavailable")  # this retry stored nothing; the first may have
    await error_of(await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers), 503)
    engine.capture_error = None
    await error_of(await client.post("/v1/leads", json={"email": "b@example.com"}, headers=headers), 422,
                   "idempotency_key_reused")


async def test_a_capture_refused_before_it_was_sent_frees_the_key(make_client: ClientFactory, engine: FakeEngine) -> None:
    client = await make_client()
    headers = {**AUTH, "Idempotency-Key": "k-refused"}
    engine.capture_error = TransientError("Kafka is unavailable")  # nothing stored
    await error_of(await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers), 503)
    engine.capture_error = None
    assert (await client.post("/v1/leads", json={"email": "b@example.com"}, headers=headers)).status == 202


async def test_a_request_whose_claim_lapsed_never_overwrites_the_next_ones_answer() -> None:
    # Review s16-b M4: request A outlived its 30 s claim; B (another body) claimed the key and was
    # answered; A's remember() then replaced B's answer, and B's own retry was told 422.
    redis = FakeRedis()
    store = CaptureStore(redis)  # type: ignore[arg-type]
    a = await store.claim("web-form", "k", "fp-A")
    redis.data.clear()  # A's claim lapses
    b = await store.claim("web-form", "k", "fp-B")
    assert a.token is not None and b.token is not None
    await store.remember("web-form", "k", 202, b'{"lead_id":"ld_B"}', "fp-B", token=b.token)
    await store.remember("web-form", "k", 202, b'{"lead_id":"ld_A"}', "fp-A", token=a.token)
    await store.release("web-form", "k", a.token, "fp-A", in_doubt=True)
    assert await store.replay("web-form", "k") == (202, b'{"lead_id":"ld_B"}', "fp-B")


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_an_idempotency_key_must_be_1_to_255_characters(client: Client, engine: FakeEngine, key: str) -> None:
    response = await client.post("/v1/leads", json={"email": "a@example.com"},
                                 headers={**AUTH, "Idempotency-Key": key})
    await error_of(response, 400, "invalid_idempotency_key")
    assert engine.captured == []


async def test_capture_goes_on_without_redis_and_counts_it(
        make_client: ClientFactory, engine: FakeEngine, metrics: Metrics) -> None:
    client = await make_client(redis=DownRedis())
    headers = {**AUTH, "Idempotency-Key": "retry-me"}
    for _ in range(2):
        response = await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers)
        # Without Redis nobody remembers the person or the key: each answer is a fresh "accepted".
        assert response.status == 202 and (await response.json())["status"] == "accepted"
        assert "Idempotent-Replayed" not in response.headers
    assert len(engine.captured) == 2
    # The idempotency key still makes the capture id deterministic, so the lead agent drops the replay.
    capture_ids = {orjson.loads(value)["_meta"]["capture_id"] for _, value in engine.captured}
    assert len(capture_ids) == 1
    for operation in ("idempotency_get", "idempotency_set", "seen"):
        assert sample(metrics, "leadflow_redis_degraded_total", operation=operation) == 2


def _as_the_lead_agent_sees_them(engine: FakeEngine) -> Any:
    """The lead state after the intake and the lead agent's pure rules took every captured record."""
    from datetime import datetime, timezone

    from connectors.lead_input import validate_lead
    from rules import lead
    from rules.commands import CaptureLead

    state = None
    at = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    for _, value in engine.captured:
        record = orjson.loads(value)
        meta = record.pop("_meta")
        valid = validate_lead(record, default_source=meta["default_source"], channel=meta["channel"])
        command = CaptureLead(lead_id=valid.lead_id, capture_id=meta["capture_id"], captured_at=at, lead=valid.lead)
        state = lead.apply(state, command, at, lead.LeadPolicy(default_team="inbound")).state
    return state


async def test_a_reused_key_with_another_body_is_never_silently_dropped_without_redis(
        make_client: ClientFactory, engine: FakeEngine) -> None:
    # Redis is down (or the key's entry expired): nobody can answer 422 idempotency_key_reused.
    client = await make_client(redis=DownRedis())
    headers = {**AUTH, "Idempotency-Key": "order-17"}
    first = {"email": "ana@example.com", "first_name": "Ana", "company": "Acme"}
    corrected = {"email": "ana@example.com", "first_name": "Ana", "company": "Acme Iberia"}
    for body in (first, {**first, "email": " ANA@example.com "}, corrected):  # the second says the same as the first
        response = await client.post("/v1/leads", json=body, headers=headers)
        assert response.status == 202, await response.text()
    ids = [orjson.loads(value)["_meta"]["capture_id"] for _, value in engine.captured]
    assert ids[0] == ids[1] and ids[2] != ids[0]
    state = _as_the_lead_agent_sees_them(engine)
    # The retry of the same lead was a replay; the other body is a touch whose data is kept.
    assert (state.touches, state.lead.company) == (2, "Acme Iberia")


async def test_kafka_unavailable_is_503_with_retry_after_and_nothing_remembered(
        client: Client, engine: FakeEngine) -> None:
    engine.capture_error = TransientError("Kafka refused the records (KafkaConnectionError)")
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    response = await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers)
    error = await error_of(response, 503, "unavailable")
    assert error["message"].startswith("not stored, retry shortly")
    assert response.headers["Retry-After"] == "5"

    # The retry is processed for real: not a replayed 503, and the person is not yet "seen".
    engine.capture_error = None
    retry = await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers)
    assert retry.status == 202 and "Idempotent-Replayed" not in retry.headers
    assert (await retry.json())["status"] == "accepted"


async def test_an_unacknowledged_capture_is_503_that_does_not_claim_nothing_was_stored(
        client: Client, engine: FakeEngine) -> None:
    # Kafka may store records whose acknowledgement timed out: the answer must not say "not stored".
    engine.capture_error = Unconfirmed("Kafka did not acknowledge in time")
    response = await client.post("/v1/leads", json={"email": "a@example.com"}, headers={**AUTH, "Idempotency-Key": "k-2"})
    error = await error_of(response, 503, "unavailable")
    assert error["message"].startswith("not confirmed") and "not stored" not in error["message"]
    assert "same Idempotency-Key" in error["message"] and "may still be stored" in error["message"]
    assert response.headers["Retry-After"] == "5"


async def test_an_unacknowledged_capture_without_a_key_promises_nothing_about_a_key_and_says_to_send_one(
        client: Client, engine: FakeEngine) -> None:
    # Without a key the capture ids are random: a retry is not deduplicated by them.
    engine.capture_error = Unconfirmed("Kafka did not acknowledge in time")
    for path, body in (("/v1/leads", {"email": "a@example.com"}), ("/v1/leads", {"leads": [{"email": "a@example.com"}]})):
        response = await client.post(path, json=body, headers=AUTH)
        message = (await error_of(response, 503, "unavailable"))["message"]
        assert message.startswith("not confirmed") and "may still be stored" in message
        assert "same Idempotency-Key" not in message and "never captures a lead twice" not in message
        assert "no Idempotency-Key: send one with the retry" in message
        assert response.headers["Retry-After"] == "5"


async def test_a_write_refused_before_it_was_sent_is_503_not_stored_with_the_gate_s_retry_after(
        client: Client, engine: FakeEngine) -> None:
    engine.capture_error = WritesPaused("Kafka did not take this worker's last write (1 s ago); nothing was sent",
                                        retry_after_s=2)
    response = await client.post("/v1/leads", json={"email": "a@example.com"}, headers=AUTH)
    message = (await error_of(response, 503, "unavailable"))["message"]
    assert message.startswith("not stored, retry shortly") and "Idempotency-Key" not in message
    assert response.headers["Retry-After"] == "2"


# --- reading a lead, disposition ---------------------------------------------------------


async def test_a_lead_is_read_with_its_timeline(client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    engine.leads[state.lead_id] = state
    response = await client.get(f"/v1/leads/{state.lead_id}", headers=AUTH)
    assert response.status == 200
    view = await response.json()
    assert view["lead_id"] == state.lead_id and view["routing"] == "assigned"
    assert view["assignment"]["rep_id"] == "rep-ana"
    assert view["assignment"]["decision"]["candidates"][1]["reasons"] == ["offline"]
    assert [entry["kind"] for entry in view["timeline"]] == ["captured", "assigned"]
    assert REP_SECRET not in await response.text()
    assert engine.forwarded == [("lead", state.lead_id)]
    error = await error_of(await client.get("/v1/leads/ld_000000000000000000000000", headers=AUTH), 404,
                           "not_found")
    # A read right after the capture's 202 may come before the lead agent applied it: say so.
    assert "may not be applied yet: retry" in error["message"]


async def test_disposition_of_an_open_lead_sends_the_command(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    state = lead_state("ana@example.com", clock.now(), assigned_to="rep-ana")
    engine.leads[state.lead_id] = state
    response = await client.post(f"/v1/leads/{state.lead_id}/disposition",
                                 json={"status": "disqualified", "reason": "student", "rep_id": "rep-ana"},
                                 headers=AUTH)
    assert response.status == 202
    assert await response.json() == {"lead_id": state.lead_id, "status": "accepted"}
    assert engine.lead_commands == [(state.lead_id, DispositionLead(
        lead_id=state.lead_id, status="disqualified", reason="student", rep_id="rep-ana", at=clock.now()))]


async def test_disposition_of_an_unknown_lead_is_404_and_of_a_closed_one_409(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    await error_of(await client.post("/v1/leads/ld_000000000000000000000000/disposition",
                                     json={"status": "nurture"}, headers=AUTH), 404, "not_found")
    closed = lead_state("bo@example.com", clock.now(), closed=True)
    engine.leads[closed.lead_id] = closed
    error = await error_of(await client.post(f"/v1/leads/{closed.lead_id}/disposition",
                                             json={"status": "nurture"}, headers=AUTH), 409, "conflict")
    assert "already closed" in error["message"]
    assert engine.lead_commands == []


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"status": "won"}, "status", "expected one of disqualified"),
    ({}, "status", "expected one of"),
    ({"status": ["nurture"]}, "status", "expected one of"),
    ({"status": "nurture", "reason": "x" * 501}, "reason", "at most 500"),
    ({"status": "nurture", "reason": 7}, "reason", "string"),
    ({"status": "nurture", "rep_id": ""}, "rep_id", "rep id"),
    ({"status": "nurture", "note": "x"}, "note", "unknown field"),
    (["nurture"], "(body)", "expected an object"),
])
async def test_a_bad_disposition_is_422(client: Client, engine: FakeEngine, clock: FakeClock,
                                        body: Any, field: str, reason: str) -> None:
    state = lead_state("ana@example.com", clock.now())
    engine.leads[state.lead_id] = state
    response = await client.post(f"/v1/leads/{state.lead_id}/disposition", json=body, headers=AUTH)
    error = await error_of(response, 422, "invalid")
    assert reason in fields_of(error)[field]
    assert engine.lead_commands == []


# --- reps and teams --------------------------------------------------------------------


async def test_a_new_rep_gets_a_generated_secret_once(client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    response = await client.put("/v1/reps/rep-ana", headers=AUTH, json={
        "team": "emea", "name": "Ana", "capacity": 3, "languages": ["es"], "timezone": "Europe/Madrid",
        "webhook_url": "https://hooks.example.com/ana"})
    assert response.status == 202
    body = await response.json()
    secret = body.pop("webhook_secret")
    assert body == {"rep_id": "rep-ana", "team": "emea", "status": "accepted", "created": True}
    validate_secret(secret)
    [(rep_id, command)] = engine.rep_commands
    assert rep_id == "rep-ana" and isinstance(command, PutRep) and command.at == clock.now()
    assert command.profile.webhook_secret == secret and command.profile.capacity == 3
    assert command.profile.languages == ("es",)


async def test_a_known_rep_keeps_their_secret_and_is_not_shown_one(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    engine.reps["rep-ana"] = RepEntry(rep_id="rep-ana", team_id="emea", updated_at=clock.now())
    response = await client.put("/v1/reps/rep-ana", json={"team": "emea", "capacity": 8}, headers=AUTH)
    assert await response.json() == {"rep_id": "rep-ana", "team": "emea", "status": "accepted", "created": False}
    [(_, command)] = engine.rep_commands
    assert isinstance(command, PutRep)
    assert command.profile.webhook_secret is None  # the team keeps the one it has
    assert command.profile.name == "rep-ana"


async def test_a_secret_the_caller_sends_is_not_echoed(client: Client, engine: FakeEngine) -> None:
    response = await client.put("/v1/reps/rep-ana", json={"team": "emea", "webhook_secret": REP_SECRET},
                                headers=AUTH)
    assert "webhook_secret" not in await response.json()
    assert REP_SECRET not in await response.text()
    [(_, command)] = engine.rep_commands
    assert isinstance(command, PutRep) and command.profile.webhook_secret == REP_SECRET


@pytest.mark.parametrize("url", ["http://10.0.0.5/hook", "http://localhost:8080/hook", "http://127.0.0.1/hook"])
async def test_a_private_webhook_url_is_refused_unless_allowed(make_client: ClientFactory, engine: FakeEngine,
                                                               url: str) -> None:
    strict = await make_client()
    error = await error_of(await strict.put("/v1/reps/rep-ana", json={"team": "emea", "webhook_url": url},
                                            headers=AUTH), 422, "invalid")
    assert "not allowed" in fields_of(error)["webhook_url"]
    assert engine.rep_commands == []
    relaxed = await make_client(webhook_allow_private=True)
    response = await relaxed.put("/v1/reps/rep-ana", json={"team": "emea", "webhook_url": url}, headers=AUTH)
    assert response.status == 202


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"team": "emea", "timezone": "Mars/Olympus_Mons"}, "timezone", "unknown time zone"),
    ({"team": "emea", "timezone": "America"}, "timezone", "unknown time zone"),  # a tzdata directory
    ({"team": "emea", "timezone": "A" * 300}, "timezone", "unknown time zone"),  # too long for a file name
    ({"team": "emea", "timezone": "../../etc/passwd"}, "timezone", "unknown time zone"),
    ({"team": "emea", "capacity": "5"}, "capacity", "valid integer"),
    ({"team": "emea", "capacity": 0}, "capacity", "greater than or equal to 1"),
    ({"team": "emea", "skills": "python"}, "skills", "valid list"),
    ({"team": "emea", "webhook_secret": "hunter2"}, "webhook_secret", "whsec_"),
    ({"team": "emea", "webhook_url": "ftp://example.com/x"}, "webhook_url", "scheme"),
    ({"team": "emea", "tem": "x"}, "tem", "unknown field"),
    ({"team": "-emea"}, "team", "pattern"),
    ({"name": "Ana"}, "team", "required"),
    ([], "(body)", "valid dictionary"),
])
async def test_a_bad_rep_is_422_naming_the_field(client: Client, engine: FakeEngine, body: Any, field: str,
                                                 reason: str) -> None:
    error = await error_of(await client.put("/v1/reps/rep-ana", json=body, headers=AUTH), 422, "invalid")
    assert reason in fields_of(error)[field]
    assert engine.rep_commands == []


async def test_rep_territories_are_checked_and_regions_expanded(make_client: ClientFactory,
                                                                  engine: FakeEngine) -> None:
    """As the YAML's (rules/territory.py): a region of the worker's routing.regions becomes its
    countries; anything not a region, an ISO country or an ISO 3166-2 state is a 422 naming it."""
    client = await make_client(regions={"EMEA": ("DE", "FR", "ES"), "NA": ("US", "CA")})
    response = await client.put("/v1/reps/rep-ana", headers=AUTH,
                                json={"team": "emea", "territories": ["EMEA", "US-CA", "gb", "FR"]})
    assert response.status == 202, await response.text()
    [(_, command)] = engine.rep_commands
    assert isinstance(command, PutRep)
    assert command.profile.territories == ("DE", "FR", "ES", "US-CA", "gb")  # FR once, first mention kept
    error = await error_of(await client.put("/v1/reps/rep-bo", headers=AUTH, json={
        "team": "emea", "territories": ["US", "Narnia", "XX-CA", "APAC"]}), 422, "invalid")
    fields = fields_of(error)
    assert set(fields) == {"territories[1]", "territories[2]", "territories[3]"}
    for reason in fields.values():
        assert "ISO 3166-1 country (US)" in reason and "ISO 3166-2 state (US-CA)" in reason
        assert "routing.regions (EMEA, NA)" in reason
    assert len(engine.rep_commands) == 1  # the refused rep was not sent


async def test_a_rep_territory_region_needs_the_workers_regions(client: Client, engine: FakeEngine) -> None:
    error = await error_of(await client.put("/v1/reps/rep-ana", headers=AUTH,
                                            json={"team": "emea", "territories": ["EMEA"]}), 422, "invalid")
    assert "unknown territory 'EMEA'" in fields_of(error)["territories[0]"]
    assert engine.rep_commands == []


async def test_a_bad_rep_id_is_422(client: Client) -> None:
    error = await error_of(await client.put("/v1/reps/ana%20ruiz", json={"team": "emea"}, headers=AUTH), 422)
    assert "rep_id" in fields_of(error)


async def test_presence_needs_a_known_rep(client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    await error_of(await client.post("/v1/reps/rep-ana/presence", json={"status": "busy"}, headers=AUTH), 404,
                   "not_found")
    engine.reps["rep-ana"] = RepEntry(rep_id="rep-ana", team_id="emea", updated_at=clock.now())
    response = await client.post("/v1/reps/rep-ana/presence", json={"status": "busy"}, headers=AUTH)
    assert response.status == 202
    assert await response.json() == {"rep_id": "rep-ana", "presence": "busy", "status": "accepted"}
    assert engine.rep_commands == [("rep-ana", ChangePresence(rep_id="rep-ana", status="busy", at=clock.now()))]
    error = await error_of(await client.post("/v1/reps/rep-ana/presence", json={"status": "away"}, headers=AUTH),
                           422, "invalid")
    assert "status" in fields_of(error)


async def test_delete_retires_a_known_rep_and_404s_an_unknown_one(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    error = await error_of(await client.delete("/v1/reps/rep-ana", headers=AUTH), 404, "not_found")
    assert "rep-ana" in error["message"] and engine.rep_commands == []
    engine.reps["rep-ana"] = RepEntry(rep_id="rep-ana", team_id="emea", updated_at=clock.now())
    response = await client.delete("/v1/reps/rep-ana", headers=AUTH)
    assert response.status == 202
    assert await response.json() == {"rep_id": "rep-ana", "status": "retired"}
    assert engine.rep_commands == [("rep-ana", RetireRep(rep_id="rep-ana", at=clock.now(),
                                                         reason="retired through the API"))]
    await error_of(await client.delete("/v1/reps/ana%20ruiz", headers=AUTH), 422, "invalid")


async def test_a_retired_rep_has_no_presence_until_a_put_brings_them_back(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    engine.reps["rep-ana"] = RepEntry(rep_id="rep-ana", team_id="emea", updated_at=clock.now(), retired="api")
    error = await error_of(await client.post("/v1/reps/rep-ana/presence", json={"status": "available"},
                                             headers=AUTH), 404, "not_found")
    assert "PUT /v1/reps/rep-ana" in error["message"]
    # Deleting again is no error: the directory keeps the entry, retired.
    assert (await client.delete("/v1/reps/rep-ana", headers=AUTH)).status == 202
    response = await client.put("/v1/reps/rep-ana", json={"team": "emea"}, headers=AUTH)
    assert response.status == 202 and (await response.json())["created"] is False
    assert isinstance(engine.rep_commands[-1][1], PutRep)


async def test_a_team_view_shows_load_and_never_a_webhook_secret(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    engine.teams["emea"] = team_state("emea", clock.now())
    response = await client.get("/v1/teams/emea", headers=AUTH)
    assert response.status == 200
    text = await response.text()
    assert REP_SECRET not in text and "whsec_" not in text and "secret" not in text
    view = await response.json()
    assert (view["open_leads"], view["capacity"], view["available_capacity"]) == (1, 8, 2)
    assert (view["reps_available"], view["queue_depth"], view["routed_total"]) == (1, 2, 9)
    ana, bo = view["reps"]
    assert (ana["rep_id"], ana["presence"], ana["webhook_configured"]) == ("rep-ana", "available", True)
    assert (bo["rep_id"], bo["presence"], bo["webhook_configured"]) == ("rep-bo", "offline", False)
    await error_of(await client.get("/v1/teams/apac", headers=AUTH), 404, "not_found")


async def test_a_team_view_shows_leads_held_elsewhere_and_departed_reps(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    """docs/routing.md, "Moving a rep to another team": what eligibility counts, and who is gone."""
    base = team_state("emea", clock.now())
    # cy joined from another team where she still holds 2 leads, and holds 1 here: 3 of 4 taken.
    cy = RepState(profile=RepProfile(rep_id="rep-cy", team_id="emea", name="Cy", capacity=4),
                  presence="available", load=1, held_elsewhere=2)
    # dee moved away holding 1 lead of this team: listed until it closes, never available here.
    dee = RepState(profile=RepProfile(rep_id="rep-dee", team_id="emea", name="Dee", capacity=5),
                   presence="available", load=1, departed=True, left_move=1)
    engine.teams["emea"] = replace(base, reps={**base.reps, "rep-cy": cy, "rep-dee": dee})
    view = await (await client.get("/v1/teams/emea", headers=AUTH)).json()
    reps = {r["rep_id"]: r for r in view["reps"]}
    def shown(rep_id: str) -> tuple[int, int, bool]:
        return reps[rep_id]["open_leads"], reps[rep_id]["held_elsewhere"], reps[rep_id]["departed"]

    assert (shown("rep-cy"), shown("rep-dee"), shown("rep-ana")) == ((3, 2, False), (1, 0, True), (1, 0, False))
    # The team's own open leads (ana 1, cy 1, dee 1), not cy's leads of the other team; dee's
    # capacity and presence belong to her new team: not in capacity, available capacity or reps available.
    assert view["open_leads"] == 3
    assert view["capacity"] == 3 + 5 + 4  # ana, bo, cy
    assert (view["reps_available"], view["available_capacity"]) == (2, (3 - 1) + (4 - 3))


async def test_a_bug_in_a_handler_is_a_plain_500(client: Client, engine: FakeEngine,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def broken(lead_id: str) -> None:
        raise RuntimeError("table exploded with ana@example.com")

    engine.lead = broken  # type: ignore[method-assign]
    response = await client.get("/v1/leads/ld_0", headers=AUTH)
    error = await error_of(response, 500, "internal")
    assert "exploded" not in error["message"]
    assert "unhandled error in GET /v1/leads/ld_0" in caplog.text


# --- operations ------------------------------------------------------------------------


async def test_healthz_needs_no_key(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_readyz_follows_the_engine(client: Client, engine: FakeEngine) -> None:
    response = await client.get("/readyz")
    assert response.status == 200 and (await response.json())["status"] == "ready"
    engine.ready = Readiness(False, "recovering tables")
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "not_ready", "detail": "recovering tables"}


async def test_a_worker_kafka_does_not_take_writes_from_is_unready_but_alive(client: Client, engine: FakeEngine) -> None:
    # Readiness tells the load balancer to stop sending captures; liveness must not get the worker
    # killed while it only waits for Kafka.
    detail = ("Kafka has not taken this worker's writes for 12 s (the last check of the broker: "
              "KafkaConnectionError): captures answer 503; ready again when Kafka answers")
    engine.ready = Readiness(False, detail)
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "not_ready", "detail": detail}
    response = await client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_metrics_are_prometheus_text(client: Client) -> None:
    await client.post("/v1/leads", json={"email": "a@example.com"}, headers=AUTH)
    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    text = await response.text()
    assert "# TYPE leadflow_leads_captured_total counter" in text
    assert 'leadflow_leads_captured_total{channel="api",source="web-form"} 1.0' in text


async def test_the_openapi_document_is_served(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == openapi_document()


async def test_an_update_keeps_what_it_leaves_out(client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    """PUT {"team", "capacity"} on a known rep changes the capacity, not their webhook or name."""
    engine.reps["rep-ana"] = RepEntry(rep_id="rep-ana", team_id="emea", updated_at=clock.now())
    await client.put("/v1/reps/rep-ana", json={"team": "emea", "capacity": 1}, headers=AUTH)
    await client.put("/v1/reps/rep-ana", json={"team": "emea", "webhook_url": None}, headers=AUTH)
    [(_, partial), (_, cleared)] = engine.rep_commands
    assert isinstance(partial, PutRep) and isinstance(cleared, PutRep)
    assert {"webhook_url", "webhook_secret", "name", "weight", "skills", "email"} <= set(partial.keep)
    assert "capacity" not in partial.keep and "team_id" not in partial.keep
    assert "webhook_url" not in cleared.keep and cleared.profile.webhook_url is None  # null clears it
    # A new rep has nothing to keep: what it leaves out takes the defaults.
    await client.put("/v1/reps/rep-new", json={"team": "emea"}, headers=AUTH)
    assert engine.rep_commands[-1][1].keep == ()

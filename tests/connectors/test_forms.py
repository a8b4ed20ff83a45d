"""HTML form posts: field mapping, the redirect back to the site, refusals, and no 5xx whatever the body."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.api.forms import redirect_problem
from leadflow.errors import TransientError
from ops.metrics import Metrics
from tests.connectors.conftest import AUTH, Client, ClientFactory, FakeEngine
from tests.connectors.test_api import error_of, fields_of, sample
from tests.connectors.test_openapi import _conforms

HOSTS = frozenset({"www.example.com", "landing.example.org"})
THANKS = "https://www.example.com/thanks?lang=es"

Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
def serve(make_client: ClientFactory) -> Serve:
    async def make(**options: Any) -> Client:
        return await make_client(**{"allowed_redirect_hosts": HOSTS, **options})
    return make


@pytest.fixture
async def client(serve: Serve) -> Client:
    return await serve()


def _location(response: aiohttp.ClientResponse) -> tuple[str, dict[str, list[str]]]:
    assert response.status == 303, response.status
    url = urlsplit(response.headers["Location"])
    return f"{url.scheme}://{url.netloc}{url.path}", parse_qs(url.query)


async def test_a_form_post_is_captured_with_its_extra_inputs_as_attributes(
        client: Client, engine: FakeEngine, metrics: Metrics) -> None:
    form = [("E-mail", "Ana.Garcia@Example.com"), ("First Name", "Ana"), ("Company Name", "Acme Iberia"),
            ("plan", "team"), ("interests", "routing"), ("interests", "sla"), ("phone", ""), ("_csrf", "tok")]
    response = await client.post("/v1/forms/pricing", data=form, headers=AUTH)
    assert response.status == 202
    body = await response.json()
    assert body["status"] == "accepted" and body["lead_id"].startswith("ld_")
    await _conforms(response, "/v1/forms/{form_id}", "post")

    [(key, value)] = engine.captured
    record = orjson.loads(value)
    assert key == body["lead_id"]
    assert record["email"] == "Ana.Garcia@Example.com" and record["first_name"] == "Ana"
    assert record["company"] == "Acme Iberia" and "phone" not in record  # a blank input is no value
    assert record["attributes"] == {"plan": "team", "interests": "routing, sla", "form_id": "pricing"}
    assert record["_meta"]["channel"] == "form" and record["_meta"]["default_source"] == "web-form"
    assert sample(metrics, "leadflow_leads_captured_total", source="web-form", channel="form") == 1

    again = await client.post("/v1/forms/pricing", data={"email": "ana.garcia@example.com"}, headers=AUTH)
    assert (await again.json())["status"] == "duplicate"


async def test_a_multipart_form_without_files_is_captured(client: Client, engine: FakeEngine) -> None:
    form = aiohttp.FormData()
    form.add_field("email", "li@example.org")
    form.add_field("name", "Li Wei Chen")
    form.add_field("message", "Call me after 5pm", content_type="text/plain; charset=utf-8")
    response = await client.post("/v1/forms/contact", data=form, headers=AUTH)
    assert response.status == 202, await response.text()
    record = orjson.loads(engine.captured[0][1])
    assert (record["first_name"], record["last_name"], record["message"]) == ("Li", "Wei Chen", "Call me after 5pm")


async def test_a_file_input_is_refused_naming_it(client: Client, engine: FakeEngine) -> None:
    form = aiohttp.FormData()
    form.add_field("email", "li@example.org")
    form.add_field("cv", b"%PDF-1.7", filename="cv.pdf", content_type="application/pdf")
    error = await error_of(await client.post("/v1/forms/contact", data=form, headers=AUTH), 422, "invalid")
    assert "file" in fields_of(error)["cv"]
    assert engine.captured == []


@pytest.mark.parametrize("where", ["query", "field"])
async def test_a_browser_is_sent_back_to_the_site(client: Client, engine: FakeEngine, where: str) -> None:
    data = {"email": "ana@example.com"}
    path = "/v1/forms/pricing"
    if where == "query":
        path += "?redirect=" + quote(THANKS, safe="")
    else:
        data["_redirect"] = THANKS
    response = await client.post(path, data=data, headers=AUTH, allow_redirects=False)
    target, query = _location(response)
    assert target == "https://www.example.com/thanks"
    assert query == {"lang": ["es"], "status": ["accepted"]}  # the site's own parameters are kept
    assert len(engine.captured) == 1
    assert (await response.json())["status"] == "accepted"
    await _conforms(response, "/v1/forms/{form_id}", "post")

    # A known person is not revealed to the browser: the redirect says accepted all the same.
    again = await client.post(path, data=data, headers=AUTH, allow_redirects=False)
    assert _location(again)[1]["status"] == ["accepted"]
    assert (await again.json())["status"] == "duplicate"


async def test_an_invalid_lead_goes_back_with_the_error_and_the_fields(
        client: Client, engine: FakeEngine, metrics: Metrics) -> None:
    response = await client.post("/v1/forms/pricing", headers=AUTH, allow_redirects=False,
                                 data={"email": "ana@", "phone": "12", "_redirect": THANKS})
    target, query = _location(response)
    assert target == "https://www.example.com/thanks"
    assert query["error"] == ["invalid_lead"] and query["fields"] == ["email,phone"]
    assert "status" not in query
    body = await response.json()
    assert {f["field"] for f in body["error"]["fields"]} == {"email", "phone"}
    assert engine.captured == []
    assert sample(metrics, "leadflow_leads_rejected_total", channel="form", reason="invalid") == 1
    await _conforms(response, "/v1/forms/{form_id}", "post")


async def test_kafka_down_goes_back_as_unavailable_and_is_503_without_redirect(
        client: Client, engine: FakeEngine) -> None:
    engine.capture_error = TransientError("no ack")
    response = await client.post("/v1/forms/pricing", data={"email": "a@example.com", "_redirect": THANKS},
                                 headers=AUTH, allow_redirects=False)
    assert _location(response)[1] == {"lang": ["es"], "error": ["unavailable"]}
    plain = await client.post("/v1/forms/pricing", data={"email": "a@example.com"}, headers=AUTH)
    await error_of(plain, 503, "unavailable")
    assert plain.headers["Retry-After"] == "5"


@pytest.mark.parametrize(("target", "reason"), [
    ("https://evil.example/steal", "evil.example is not an allowed redirect host"),
    ("https://www.example.com.evil.example/", "not an allowed redirect host"),
    ("https://www.example.com@evil.example/", "user name or password"),
    ("//evil.example/x", "absolute http or https"),
    ("/thanks", "absolute http or https"),
    ("javascript:alert(1)", "absolute http or https"),
    ("ftp://www.example.com/x", "absolute http or https"),
    ("https://www.example.com\\@evil.example/", "backslashes"),
    ("https://www.example.com/\r\nSet-Cookie: x=1", "control characters"),
    ("https://www.example.com/" + "x" * 2000, "longer than 2000"),
])
async def test_a_redirect_off_the_allowed_hosts_is_refused_and_nothing_captured(
        client: Client, engine: FakeEngine, target: str, reason: str) -> None:
    response = await client.post("/v1/forms/pricing", data={"email": "a@example.com", "_redirect": target},
                                 headers=AUTH, allow_redirects=False)
    error = await error_of(response, 422, "invalid_redirect")
    assert reason in fields_of(error)["_redirect"]
    assert "Location" not in response.headers
    assert engine.captured == []


async def test_no_redirect_is_allowed_until_hosts_are_configured(serve: Serve) -> None:
    client = await serve(allowed_redirect_hosts=frozenset())
    response = await client.post(f"/v1/forms/pricing?redirect={THANKS}", data={"email": "a@example.com"},
                                 headers=AUTH, allow_redirects=False)
    error = await error_of(response, 422, "invalid_redirect")
    assert "allowed_redirect_hosts" in fields_of(error)["redirect"]


@settings(max_examples=300, deadline=None)
@given(raw=st.text(max_size=60) | st.builds(lambda s: "https://" + s, st.text(max_size=40)))
def test_any_redirect_is_judged_without_raising_and_only_allowed_hosts_pass(raw: str) -> None:
    if redirect_problem(raw, HOSTS) is None:
        assert (urlsplit(raw).hostname or "").rstrip(".") in HOSTS


def test_allowed_hosts_match_whole_names_case_blind() -> None:
    assert redirect_problem("https://WWW.Example.COM./ok", HOSTS) is None
    assert redirect_problem("http://landing.example.org:8443/x#top", HOSTS) is None
    assert redirect_problem("https://example.com/", HOSTS) is not None


@pytest.mark.parametrize(("headers", "data", "status", "code"), [
    ({}, {"email": "a@example.com"}, 401, "unauthorized"),
    ({"Authorization": "Bearer nope"}, {"email": "a@example.com", "_redirect": THANKS}, 401, "unauthorized"),
    ({**AUTH, "Content-Type": "application/json"}, b'{"email": "a@example.com"}', 415, "unsupported_media_type"),
    ({**AUTH, "Content-Type": "application/x-www-form-urlencoded; charset=klingon"}, b"email=a%40example.com", 400,
     "malformed_form"),
    ({**AUTH, "Content-Type": "application/x-www-form-urlencoded"}, b"email=\xff\xfe@example.com", 400,
     "malformed_form"),
    ({**AUTH, "Content-Type": "multipart/form-data"}, b"--x\r\n", 400, "malformed_form"),
    (AUTH, {"email": "a@example.com", "Email": "b@example.com"}, 422, "invalid_lead"),
    (AUTH, {"first_name": "Ana"}, 422, "invalid_lead"),
    (AUTH, {"email": "a@example.com", **{f"q{n}": "x" for n in range(50)}}, 422, "invalid_lead"),
    (AUTH, {"email": "a@example.com", "essay": "x" * 201}, 422, "invalid_lead"),
])
async def test_a_bad_form_post_is_a_4xx(client: Client, engine: FakeEngine, headers: dict[str, str], data: Any,
                                        status: int, code: str) -> None:
    response = await client.post("/v1/forms/pricing", data=data, headers=headers, allow_redirects=False)
    await error_of(response, status, code)
    await _conforms(response, "/v1/forms/{form_id}", "post")
    assert engine.captured == []


async def test_a_bad_form_id_is_422(client: Client) -> None:
    error = await error_of(await client.post("/v1/forms/-x", data={"email": "a@example.com"}, headers=AUTH), 422)
    assert "form_id" in fields_of(error)


async def test_a_form_larger_than_the_server_takes_is_413(client: Client) -> None:
    response = await client.post("/v1/forms/pricing", data={"email": "a@example.com", "m": "x" * 70_000},
                                 headers=AUTH)
    await error_of(response, 413, "payload_too_large")


_NAMES = st.sampled_from(["email", "E-mail", "phone", "name", "first_name", "country", "attributes", "_redirect",
                          "source", "external_id", "message", "x", "", "a" * 120]) | st.text(max_size=20)
_VALUES = st.sampled_from(["a@example.com", "+34 612 345 678", "ES", "", THANKS, "https://evil.example",
                           "x" * 300]) | st.text(max_size=40)
_CTYPES = st.sampled_from(["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=latin-1",
                           "multipart/form-data; boundary=xyz", "multipart/form-data", "text/plain", ""])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(_NAMES, _VALUES), max_size=8), raw=st.binary(max_size=200), ctype=_CTYPES,
       use_raw=st.booleans(), redirect=st.none() | _VALUES)
async def test_no_form_body_makes_a_5xx(client: Client, pairs: list[tuple[str, str]], raw: bytes, ctype: str,
                                        use_raw: bool, redirect: str | None) -> None:
    # One server for all examples, like the JSON capture property test: fresh ones find nothing more.
    headers = {**AUTH, "Content-Type": ctype} if ctype else dict(AUTH)
    body = raw if use_raw else urlencode(pairs).encode() if pairs else b""
    if not use_raw and ctype.startswith("multipart/form-data; boundary=xyz"):
        parts = b"".join(b"--xyz\r\nContent-Disposition: form-data; name=\"" + n.encode("utf-8", "replace") +
                         b"\"\r\n\r\n" + v.encode("utf-8", "replace") + b"\r\n" for n, v in pairs)
        body = parts + b"--xyz--\r\n"
    path = "/v1/forms/f1" + (f"?redirect={quote(redirect, safe='')}" if redirect else "")
    response = await client.post(path, data=body, headers=headers, allow_redirects=False)
    assert response.status < 500, await response.text()
    if response.status == 303:
        assert urlsplit(response.headers["Location"]).hostname in HOSTS
    elif response.status >= 400:
        await error_of(response, response.status)

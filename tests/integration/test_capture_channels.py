"""Every capture channel against one real worker: HTML forms, CSV (API and ``leadflow import``), Facebook
Lead Ads (handshake, signature, Graph API read), Typeform, the Kafka feed; dedup across all of them;
and a bad-input matrix per channel (a clear 4xx naming the field, or a dead letter; never a 5xx).

One worker serves the whole module (a worker start costs 10-20 s); each test uses its own people,
so the tests do not depend on each other's leads.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connectors.providers.facebook import GRAPH_API_VERSION
from ops.stack import StackConfig
from rules.capture import derive_lead_id
from tests.integration.harness import API_KEY, REPO, Receiver, SECRET, Worker, WorkerSpec, eventually
from tests.integration.standins import GraphApiStandIn, GraphLead

pytestmark = pytest.mark.asyncio(loop_scope="module")

FB_APP_SECRET, FB_VERIFY, FB_PAGE_TOKEN = "cap-fb-app-secret-42", "cap-verify-token-42", "cap-page-token-42"
TF_SECRET = "cap-typeform-secret-42"
PAGE_ID, FORM_ID = "516540199134611", "551111744595541"
TF_FORM = "capTF1"
THANKS = "https://www.example.com/thanks?ref=pricing"

CONFIG = """
routing:
  default_team: sdr
teams:
  - id: sdr
    reps:
      - {{id: ana, capacity: 100, webhook_url: "{hooks}/ana", webhook_secret: "{secret}"}}
      - {{id: ben, capacity: 100, webhook_url: "{hooks}/ben", webhook_secret: "{secret}"}}
providers:
  facebook:
    app_secret_env: CAP_FB_APP_SECRET
    verify_token_env: CAP_FB_VERIFY_TOKEN
    access_token_env: CAP_FB_PAGE_TOKEN
    graph_api_url: "{graph}"
  typeform:
    secret_env: CAP_TF_SECRET
    forms:
      {form}: {{company_ref: company, role_ref: title, hidden.utm_campaign: campaign}}
"""


@dataclass
class _Spec(WorkerSpec):
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, port: int, data_dir: Path) -> dict[str, str]:
        return {**super().env(port, data_dir), **self.extra_env}


@dataclass
class Channels:
    worker: Worker
    receiver: Receiver
    graph: GraphApiStandIn
    spec: _Spec
    api: aiohttp.ClientSession  # with the API key
    raw: aiohttp.ClientSession  # without: provider webhooks carry signatures, not keys

    @property
    def url(self) -> str:
        return self.worker.url

    @property
    def inbound(self) -> str:
        return f"{self.spec.app_id}.leads.inbound"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ch(stack: StackConfig, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Channels]:
    receiver = Receiver()
    graph = GraphApiStandIn(access_token=FB_PAGE_TOKEN, app_secret=FB_APP_SECRET)
    await receiver.start()
    await graph.start()
    receiver.secrets.update({"ana": SECRET, "ben": SECRET})
    spec = _Spec(stack=stack, tmp=tmp_path_factory.mktemp("channels"), extra_env={
        "CAP_FB_APP_SECRET": FB_APP_SECRET, "CAP_FB_VERIFY_TOKEN": FB_VERIFY, "CAP_FB_PAGE_TOKEN": FB_PAGE_TOKEN,
        "CAP_TF_SECRET": TF_SECRET, "LEADFLOW_ALLOWED_REDIRECT_HOSTS": "www.example.com",
    })
    spec.config_yaml = CONFIG.format(hooks=f"{receiver.url}/hooks", secret=SECRET, graph=graph.url, form=TF_FORM)
    worker: Worker | None = None
    timeout = aiohttp.ClientTimeout(total=15)
    try:
        worker = Worker(spec)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=timeout) as api, \
                aiohttp.ClientSession(timeout=timeout) as raw:
            await worker.wait_ready()
            channels = Channels(worker, receiver, graph, spec, api, raw)

            async def roster() -> bool:
                status, body = await _get(channels, "/v1/teams/sdr")
                return status == 200 and body["reps_available"] == 2

            await eventually(roster, what="the configured reps")
            yield channels
    finally:
        if worker is not None:
            worker.stop()
        await graph.stop()
        await receiver.stop()


# --- helpers ---------------------------------------------------------------------------------


def lead_id_of(email: str) -> str:
    return derive_lead_id(email=email.strip().lower(), phone=None, source="", external_id=None)


async def _get(ch: Channels, path: str) -> tuple[int, Any]:
    """The answer to a GET, after the retries a client owes a ``503`` with ``Retry-After``: the
    owner answers so while it (re)loads its tables, e.g. in a rebalance just after it was ready."""
    deadline = time.monotonic() + 30
    while True:
        async with ch.api.get(f"{ch.url}{path}") as r:
            status, body = r.status, await r.json(content_type=None)
            retry_after = r.headers.get("Retry-After")
        if status != 503 or retry_after is None or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(float(retry_after))


async def lead(ch: Channels, lead_id: str) -> Any:
    status, body = await _get(ch, f"/v1/leads/{lead_id}")
    assert status in (200, 404), (status, body)
    return body if status == 200 else None


def webhooks(ch: Channels, lead_id: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in ch.receiver.for_lead(lead_id) if d["payload"]["type"] == kind]


async def assigned(ch: Channels, lead_id: str, what: str) -> Any:
    """Wait until ``lead_id`` is assigned and its rep has a verified ``lead.assigned`` webhook."""
    async def done() -> Any:
        got = await lead(ch, lead_id)
        return got if got and got["routing"] == "assigned" and webhooks(ch, lead_id, "lead.assigned") else None

    try:
        view = await eventually(done, what=f"{what} assigned and notified")
    except AssertionError as exc:
        got = await lead(ch, lead_id)
        state = got and (got["routing"], [e["kind"] for e in got["timeline"]])
        raise AssertionError(f"{exc}\nlead {lead_id}: {state}\nworker log:\n{ch.worker.log(30)}") from None
    [hook] = webhooks(ch, lead_id, "lead.assigned")
    assert hook["verified"], "the Standard Webhooks verifier must accept the signature"
    assert hook["rep_id"] == view["assignment"]["rep_id"]
    return view


async def touches(ch: Channels, lead_id: str, n: int) -> Any:
    async def done() -> Any:
        got = await lead(ch, lead_id)
        return got if got and got["touches"] == n else None

    return await eventually(done, what=f"{n} touches on the lead")


async def post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
               **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    async with session.post(url, data=body, headers=headers, allow_redirects=False, **kwargs) as r:
        return r.status, dict(r.headers), await r.read()


def assert_error(status: int, body: bytes, expected_status: int, code: str | None = None,
                 field: str | None = None, case: str = "") -> dict[str, Any]:
    assert status == expected_status, (case, status, body[:500])
    error = orjson.loads(body)["error"]
    if code is not None:
        assert error["code"] == code, (case, error)
    if field is not None:
        fields = [f["field"] for f in error.get("fields", [])]
        assert field in fields, (case, error)
        assert all(f["reason"] for f in error["fields"]), (case, error)
    return dict(error)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CSV = {"Content-Type": "text/csv"}


def form_body(pairs: Sequence[tuple[str, str]]) -> bytes:
    return urlencode(list(pairs)).encode()


def fb_headers(body: bytes, secret: str = FB_APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def fb_webhook(*leadgen_ids: str) -> bytes:
    """A Page ``leadgen`` webhook as Meta sends it: ids only, the answers are read from the Graph API."""
    now = int(time.time())  # signed with the body: a lead made days ago is refused as a replay
    changes = [{"field": "leadgen", "value": {"ad_id": "6045121234567", "form_id": FORM_ID, "leadgen_id": lid,
                                              "created_time": now - 2, "page_id": PAGE_ID,
                                              "adgroup_id": "6045121234567"}} for lid in leadgen_ids]
    return json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": now, "changes": changes}]}).encode()


def tf_headers(body: bytes, secret: str = TF_SECRET) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"Typeform-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), UTC).isoformat().replace("+00:00", "Z")


def tf_body(token: str, email: str, company: str = "Acme Iberia", *, answers: Any = None,
            **response: Any) -> bytes:
    """A ``form_response`` webhook as Typeform documents it."""
    return json.dumps({"event_id": f"ev-{token}", "event_type": "form_response", "form_response": {
        "form_id": TF_FORM, "token": token, "landed_at": _iso(time.time() - 120), "submitted_at": _iso(time.time()),
        "hidden": {"utm_campaign": "tf-spring"},
        "definition": {"id": TF_FORM, "title": "Get a demo", "fields": [
            {"id": "e1", "ref": "mail", "type": "email", "title": "Your work e-mail"},
            {"id": "c1", "ref": "company_ref", "type": "short_text", "title": "Company"},
            {"id": "r1", "ref": "role_ref", "type": "dropdown", "title": "Your role"},
            {"id": "s1", "ref": "seats_ref", "type": "number", "title": "How many seats?"}]},
        "answers": answers if answers is not None else [
            {"type": "email", "email": email, "field": {"id": "e1", "type": "email", "ref": "mail"}},
            {"type": "text", "text": company, "field": {"id": "c1", "type": "short_text", "ref": "company_ref"}},
            {"type": "choice", "choice": {"label": "CTO"}, "field": {"id": "r1", "type": "dropdown", "ref": "role_ref"}},
            {"type": "number", "number": 40, "field": {"id": "s1", "type": "number", "ref": "seats_ref"}}],
        **response}}).encode()


async def produce(ch: Channels, *records: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=ch.spec.stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(ch.inbound, record, key=b"partner-feed")
    finally:
        await producer.stop()


async def rejected_records(ch: Channels, wanted: Sequence[bytes]) -> list[tuple[bytes, dict[str, bytes]]]:
    """The records on ``leads.rejected`` whose value is one of ``wanted``: (original bytes, headers)."""
    consumer = AIOKafkaConsumer(f"{ch.spec.app_id}.leads.rejected", bootstrap_servers=ch.spec.stack.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        async def enough() -> bool:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out.extend((r.value, dict(r.headers)) for r in records if r.value in wanted)
            return len(out) >= len(wanted)

        await eventually(enough, what=f"{len(wanted)} record(s) on leads.rejected")
    finally:
        await consumer.stop()
    return out


async def leadflow_import(ch: Channels, path: Path, *args: str) -> tuple[int, str, str]:
    """Run the real ``leadflow import`` command against the worker (asynchronously: the receiver shares the loop)."""
    env = {**os.environ, "LEADFLOW_API_KEY": API_KEY}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "leadflow", "import", str(path), "--url", ch.url, *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def ndjson(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


# --- 1. HTML forms ---------------------------------------------------------------------------


async def test_html_form_posts_answer_json_or_redirect_and_reach_a_rep(ch: Channels) -> None:
    body = form_body([("E-mail", "Olga.Petrova@Fjord.example"), ("Name", "Olga Petrova"), ("Company", "Fjord AS"),
                      ("seats", "11-50"), ("interests", "routing"), ("interests", "sla"), ("_csrf", "t0k3n")])
    status, _, raw = await post(ch.api, f"{ch.url}/v1/forms/pricing", body, FORM)
    assert status == 202, raw
    answer = orjson.loads(raw)
    olga = lead_id_of("olga.petrova@fjord.example")
    assert answer == {"lead_id": olga, "status": "accepted"}

    # A browser form: 303 back to the (allow-listed) site, its own query kept.
    body = form_body([("email", "tomas.berg@fjord.example"), ("First Name", "Tomás"), ("_redirect", THANKS)])
    status, headers, _ = await post(ch.api, f"{ch.url}/v1/forms/pricing", body, FORM)
    assert status == 303 and headers["Location"] == THANKS + "&status=accepted", (status, headers)
    # The same with ?redirect= and a refused lead: back to the site with the fields to mark.
    status, headers, _ = await post(ch.api, f"{ch.url}/v1/forms/pricing", form_body([("email", "no-at-sign")]), FORM,
                                    params={"redirect": THANKS})
    assert status == 303 and headers["Location"] == THANKS + "&error=invalid_lead&fields=email", (status, headers)

    view = await assigned(ch, olga, "the form lead")
    assert view["lead"]["channel"] == "form"
    assert (view["lead"]["first_name"], view["lead"]["last_name"], view["lead"]["company"]) == (
        "Olga", "Petrova", "Fjord AS")
    assert view["lead"]["attributes"] == {"form_id": "pricing", "seats": "11-50", "interests": "routing, sla"}
    payload = webhooks(ch, olga, "lead.assigned")[0]["payload"]
    assert payload["data"]["lead"]["email"] == "olga.petrova@fjord.example"
    await assigned(ch, lead_id_of("tomas.berg@fjord.example"), "the redirected form lead")


# --- 2. CSV import: the API and `leadflow import` ----------------------------------------------


async def test_csv_import_over_the_api_and_the_cli(ch: Channels, tmp_path: Path) -> None:
    csv = ("\ufeffE-mail,First Name,Last Name,Company,Job Title,Country,Plan\r\n"
           'nadia.haddad@cedar.example,Nadia,Haddad,"Cedar, Ltd",Head of Sales,GB,team\r\n'
           "not-an-email,Bo,,Northwind,,,\r\n"
           "\r\n"
           "kenji.sato@cedar.example,Kenji,Sato,Cedar,CTO,Spain,\r\n"
           "li.wei@cedar.example,Li,Wei,Cedar,CTO,SG,\r\n").encode()
    status, headers, raw = await post(ch.api, f"{ch.url}/v1/leads/import", csv, CSV, params={"source": "expo-2026"})
    assert status == 202, raw
    assert headers["Content-Type"].startswith("application/x-ndjson")
    lines = ndjson(raw)
    assert lines[0] == {"columns": {"E-mail": "email", "First Name": "first_name", "Last Name": "last_name",
                                    "Company": "company", "Job Title": "title", "Country": "country",
                                    "Plan": "attributes.Plan"}}
    rows = {line["row"]: line for line in lines[1:-1]}
    nadia, li = lead_id_of("nadia.haddad@cedar.example"), lead_id_of("li.wei@cedar.example")
    assert rows[1] == {"row": 1, "lead_id": nadia, "status": "accepted"}
    assert rows[2]["status"] == "rejected" and rows[2]["errors"][0]["field"] == "email"
    assert rows[4]["status"] == "rejected" and rows[4]["errors"] == [
        {"field": "country", "reason": "expected an ISO 3166-1 alpha-2 country code such as US or DE"}]
    assert rows[5] == {"row": 5, "lead_id": li, "status": "accepted"}, "the blank row 3 is counted, not reported"
    assert lines[-1] == {"summary": {"rows": 4, "accepted": 2, "duplicate": 0, "rejected": 2}}
    view = await assigned(ch, nadia, "the first CSV row")
    assert (view["lead"]["channel"], view["lead"]["source"], view["lead"]["company"]) == ("csv", "expo-2026",
                                                                                         "Cedar, Ltd")
    assert view["lead"]["attributes"] == {"Plan": "team"}
    await assigned(ch, li, "the last CSV row")

    # The same through the command line, against the same worker.
    path = tmp_path / "trade-show.csv"
    path.write_text("email;name;company\nmarta.vidal@olive.example;Marta Vidal;Olive\nbroken@;X;Y\n"
                    "jon.ek@olive.example;Jon Ek;Olive\nnadia.haddad@cedar.example;Nadia Haddad;Cedar\n")
    code, out, err = await leadflow_import(ch, path, "--source", "fair-2026")
    assert code == 1, (code, out, err)  # some rows were rejected
    assert f"{path}: 4 rows" in out and "2 accepted, 1 duplicate, 1 rejected" in out, out
    assert "row 2: email:" in out, out
    assert "columns: email -> email, name -> first_name last_name, company -> company" in err, err
    marta = await assigned(ch, lead_id_of("marta.vidal@olive.example"), "the CLI's first row")
    assert (marta["lead"]["source"], marta["lead"]["last_name"]) == ("fair-2026", "Vidal")
    await assigned(ch, lead_id_of("jon.ek@olive.example"), "the CLI's third row")
    await touches(ch, nadia, 2)  # a known person in the file is a touch, not a second lead

    # A file the worker refuses: exit 2, and the reason is shown.
    bad = tmp_path / "no-identity.csv"
    bad.write_text("First Name,Company\nAna,Acme\n")
    code, out, err = await leadflow_import(ch, bad)
    assert code == 2 and "refused the file (422)" in err and "no column holds an e-mail" in err, (code, out, err)


# --- 3. Facebook Lead Ads --------------------------------------------------------------------


async def test_facebook_lead_ads_handshake_signature_and_graph_read(ch: Channels) -> None:
    url = f"{ch.url}/v1/providers/facebook"
    # Meta's subscription handshake.
    query = {"hub.mode": "subscribe", "hub.verify_token": FB_VERIFY, "hub.challenge": "1158201444"}
    async with ch.raw.get(url, params=query) as r:
        assert (r.status, await r.text()) == (200, "1158201444")
    async with ch.raw.get(url, params={**query, "hub.verify_token": "guess"}) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"

    # A lead: the webhook has its id only; the answers come from the Graph API.
    ch.graph.add(GraphLead("900000000000001", {
        "email": ["Sofia.Moreau@Lumen.example"], "full_name": ["Sofía Moreau"], "phone_number": ["+33612345678"],
        "company_name": ["Lumen SAS"], "job_title": ["VP Marketing"], "how_many_seats?": ["25"]}))
    body = fb_webhook("900000000000001")
    status, _, raw = await post(ch.raw, url, body, fb_headers(body))
    sofia = lead_id_of("sofia.moreau@lumen.example")
    assert status == 200, raw
    assert orjson.loads(raw) == {"accepted": 1, "duplicate": 0, "rejected": 0, "ignored": 0, "results": [
        {"leadgen_id": "900000000000001", "lead_id": sofia, "status": "accepted"}]}
    [read] = [r for r in ch.graph.requests if r.match_info["node"] == "900000000000001"]
    assert read.path == f"/{GRAPH_API_VERSION}/900000000000001" and read.query["fields"] == "field_data"
    view = await assigned(ch, sofia, "the Lead Ads lead")
    got = view["lead"]
    assert (got["channel"], got["source"], got["external_id"]) == ("facebook", "facebook-lead-ads", "900000000000001")
    assert (got["first_name"], got["last_name"], got["phone"], got["company"], got["title"]) == (
        "Sofía", "Moreau", "+33612345678", "Lumen SAS", "VP Marketing")
    assert got["attributes"]["how_many_seats?"] == "25" and got["attributes"]["facebook_form_id"] == FORM_ID

    # Meta redelivers: the same body gets the first answer, and nothing is captured again.
    first = raw
    status, headers, raw = await post(ch.raw, url, body, fb_headers(body))
    assert (status, headers.get("Idempotent-Replayed")) == (200, "true"), raw
    assert orjson.loads(raw) == orjson.loads(first)

    # A bad signature: 401 before anything is read or stored.
    ch.graph.add(GraphLead("900000000000002", {"email": ["forged@lumen.example"]}))
    forged = fb_webhook("900000000000002")
    for headers in (fb_headers(forged, "not-the-app-secret"), {"Content-Type": "application/json"},
                    {**fb_headers(forged), "X-Hub-Signature-256": "sha1=" + "0" * 40}):
        status, _, raw = await post(ch.raw, url, forged, headers)
        assert_error(status, raw, 401, "bad_signature")
    # A signature over other bytes (the body was changed on the way).
    status, _, raw = await post(ch.raw, url, forged, fb_headers(fb_webhook("900000000000001")))
    assert_error(status, raw, 401, "bad_signature")
    assert ch.graph.asked_for("900000000000002") == 0
    assert (await lead(ch, lead_id_of("forged@lumen.example"))) is None
    assert (await touches(ch, sofia, 1))["touches"] == 1


async def test_facebook_a_token_meta_refuses_is_503_until_renewed_and_no_lead_is_lost(ch: Channels) -> None:
    # Meta's "Handling Errors": code 190 means "get a new access token". That is our config to
    # fix while Meta redelivers (for up to 36 h), not a lead to reject inside a 200.
    url = f"{ch.url}/v1/providers/facebook"
    ch.graph.add(GraphLead("900000000000020", {"email": ["Token.Lapsed@Graph.example"]}))
    body = fb_webhook("900000000000020")
    ch.graph.access_token = "a-token-renewed-at-meta"  # the worker's token no longer works
    try:
        status, headers, raw = await post(ch.raw, url, body, fb_headers(body))
        assert_error(status, raw, 503, "unavailable", case="facebook: token refused")
        assert headers.get("Retry-After") == "60", headers
        assert "code 190" in raw.decode() and "access_token_env" in raw.decode(), raw
    finally:
        ch.graph.access_token = FB_PAGE_TOKEN  # renewed in the worker's config
    lapsed = lead_id_of("token.lapsed@graph.example")
    assert await lead(ch, lapsed) is None  # neither stored nor rejected: Meta sends it again
    status, headers, raw = await post(ch.raw, url, body, fb_headers(body))
    assert status == 200 and "Idempotent-Replayed" not in headers, raw  # a 503 is not remembered
    assert orjson.loads(raw)["results"] == [{"leadgen_id": "900000000000020", "lead_id": lapsed,
                                             "status": "accepted"}]
    await assigned(ch, lapsed, "the lead redelivered after the token was renewed")


# --- 4. Typeform -----------------------------------------------------------------------------


async def test_typeform_responses_signed_and_mapped(ch: Channels) -> None:
    url = f"{ch.url}/v1/providers/typeform"
    body = tf_body("tok-rui-0001", "Rui.Costa@Tejo.example", "Tejo Lda")
    status, _, raw = await post(ch.raw, url, body, tf_headers(body))
    rui = lead_id_of("rui.costa@tejo.example")
    assert (status, orjson.loads(raw)) == (200, {"lead_id": rui, "status": "accepted"}), raw
    view = await assigned(ch, rui, "the Typeform lead")
    got = view["lead"]
    assert (got["channel"], got["source"], got["company"], got["title"], got["campaign"], got["external_id"]) == (
        "typeform", "typeform", "Tejo Lda", "CTO", "tf-spring", "tok-rui-0001")
    assert got["attributes"]["How many seats?"] == "40" and got["attributes"]["typeform_form_id"] == TF_FORM

    forged = tf_body("tok-forged-01", "forged@tejo.example")
    hex_digest = hmac.new(TF_SECRET.encode(), forged, hashlib.sha256).hexdigest()
    for case, headers in (("wrong secret", tf_headers(forged, "not-the-secret")),
                          ("missing", {"Content-Type": "application/json"}),
                          ("hex, not base64", {"Typeform-Signature": f"sha256={hex_digest}"}),
                          ("other body", tf_headers(body))):
        status, _, raw = await post(ch.raw, url, forged, headers)
        assert_error(status, raw, 401, "bad_signature", case=case)
    assert (await lead(ch, lead_id_of("forged@tejo.example"))) is None


# --- 5. The Kafka feed -----------------------------------------------------------------------


async def test_the_kafka_feed_routes_valid_records_and_dead_letters_bad_ones(ch: Channels) -> None:
    bad = b'{"email": "partner-without-at-sign", "company": "Feed Co"}'
    good = {"email": "Ines.Alves@Feed.example", "company": "Feed Co", "source": "partner-portal",
            "external_id": "crm-1042", "attributes": {"tier": "gold"}}
    await produce(ch, bad, orjson.dumps(good))
    ines = lead_id_of("ines.alves@feed.example")
    view = await assigned(ch, ines, "the feed's valid record")
    assert (view["lead"]["channel"], view["lead"]["source"], view["lead"]["external_id"]) == (
        "kafka", "partner-portal", "crm-1042")
    # Audit s16-dedup #8: a person first met on the feed was `accepted` again by the HTTP API.
    async with ch.api.post(f"{ch.url}/v1/leads", json={"email": "ines.alves@feed.example", "source": "webinar"}) as r:
        assert (r.status, await r.json()) == (202, {"lead_id": ines, "status": "duplicate"})

    [(_, headers)] = await rejected_records(ch, [bad])
    assert headers["leadflow-reason"] == b"invalid_lead"
    assert orjson.loads(headers["leadflow-detail"])["fields"][0]["field"] == "email"
    assert headers["leadflow-origin"].decode().startswith(f"{ch.inbound}:")


async def test_a_producers_own_meta_is_ignored_and_drops_no_later_record(ch: Channels) -> None:
    # Audit s16-dedup #9: a producer that set _meta.capture_id itself had its next record of the
    # person dropped as a replay of the first, without a word. _meta is leadflow's (sealed).
    first = {"email": "kim.ortiz@feed.example", "source": "partner-portal",
             "_meta": {"capture_id": "partner-42", "channel": "form", "received_at": "2026-01-01T00:00:00+00:00"}}
    second = {**first, "company": "Ortiz Labs"}
    await produce(ch, orjson.dumps(first), orjson.dumps(second))
    kim = lead_id_of("kim.ortiz@feed.example")
    view = await touches(ch, kim, 2)
    # An unsealed _meta still names its channel (review s16-b M1: a rolling upgrade's older workers
    # write _meta unsealed), never the capture id or the capture time.
    assert view["lead"]["company"] == "Ortiz Labs" and view["lead"]["channel"] == "form"
    assert view["first_touch"]["capture_id"].startswith(f"kafka:{ch.inbound}:")
    assert not view["first_touch"]["at"].startswith("2026-01-01")
    assert "ignored _meta on" in ch.worker.log(200)


# --- 6. Dedup across channels ----------------------------------------------------------------


async def test_one_person_through_every_channel_is_one_lead_with_its_touches(ch: Channels, tmp_path: Path) -> None:
    dana = lead_id_of("dana.rivera@gmail.com")
    # 1. The website form (first touch).
    body = form_body([("E-mail", "Dana.Rivera@gmail.com"), ("Name", "Dana Rivera"), ("Lead Source", "website"),
                      ("utm_campaign", "spring-promo")])
    status, _, raw = await post(ch.api, f"{ch.url}/v1/forms/demo", body, FORM)
    assert (status, orjson.loads(raw)) == (202, {"lead_id": dana, "status": "accepted"})
    first = await assigned(ch, dana, "the person's first touch")
    owner = first["assignment"]["rep_id"]

    # 2. The JSON API, another spelling: Gmail ignores case, dots and +tags.
    async with ch.api.post(f"{ch.url}/v1/leads", json={"email": "DanaRivera+webinar@GMAIL.com", "source": "webinar",
                                                        "campaign": "q3-webinar"}) as r:
        assert (r.status, await r.json()) == (202, {"lead_id": dana, "status": "duplicate"})
    await touches(ch, dana, 2)

    # 3. A trade-show file through `leadflow import`.
    path = tmp_path / "expo.csv"
    path.write_text("Work Email,Company Name,Campaign\nDANA.RIVERA@gmail.com,Rivera Labs,expo-booth\n")
    code, out, err = await leadflow_import(ch, path, "--source", "expo-2026")
    assert code == 0 and "1 rows" in out and "0 accepted, 1 duplicate, 0 rejected" in out, (code, out, err)
    await touches(ch, dana, 3)

    # 4. Typeform.
    body = tf_body("tok-dana-0001", "dana.rivera@gmail.com", "Rivera Labs")
    status, _, raw = await post(ch.raw, f"{ch.url}/v1/providers/typeform", body, tf_headers(body))
    assert (status, orjson.loads(raw)) == (200, {"lead_id": dana, "status": "duplicate"})
    await touches(ch, dana, 4)

    # 5. The partner feed on Kafka (last touch).
    await produce(ch, orjson.dumps({"email": "dana.rivera@googlemail.com", "source": "partner-portal"}))
    view = await touches(ch, dana, 5)

    assert view["routing"] == "assigned" and view["assignment"]["rep_id"] == owner
    assert {k: view["first_touch"][k] for k in ("channel", "source", "campaign")} == {
        "channel": "form", "source": "website", "campaign": "spring-promo"}
    assert {k: view["last_touch"][k] for k in ("channel", "source")} == {"channel": "kafka", "source": "partner-portal"}
    assert view["lead"]["company"] == "Rivera Labs" and view["lead"]["title"] == "CTO"  # merged from later touches
    assert [e["detail"]["channel"] for e in view["timeline"] if e["kind"] == "touched"] == [
        "api", "csv", "typeform", "kafka"]

    touched = await eventually(lambda: len(webhooks(ch, dana, "lead.touched")) == 4 and webhooks(
        ch, dana, "lead.touched"), what="the owner told of each of the 4 new touches")
    assert all(d["verified"] and d["rep_id"] == owner for d in touched)
    assert [d["payload"]["data"]["touches"] for d in touched] == [2, 3, 4, 5]
    assert len({d["headers"]["webhook-id"] for d in touched}) == 4
    assert len(webhooks(ch, dana, "lead.assigned")) == 1, "one person, one assignment"


# --- 7. Bad input, channel by channel ----------------------------------------------------------


async def test_bad_input_matrix_never_a_5xx_and_valid_leads_still_flow(ch: Channels) -> None:
    forms = f"{ch.url}/v1/forms/contact"
    multipart_file = (b"--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nfile.sender@x.example\r\n"
                      b"--XyZ\r\nContent-Disposition: form-data; name=\"cv\"; filename=\"cv.pdf\"\r\n"
                      b"Content-Type: application/pdf\r\n\r\n%PDF-1.4\r\n--XyZ--\r\n")
    form_cases: list[tuple[str, str, bytes, dict[str, str], int, str, str | None]] = [
        ("no identity", forms, form_body([("Name", "Bo"), ("Company", "Acme")]), FORM, 422, "invalid_lead", "(body)"),
        ("bad e-mail", forms, form_body([("E-mail", "bo@")]), FORM, 422, "invalid_lead", "email"),
        ("country name", forms, form_body([("email", "bo@acme.example"), ("Country", "Spain")]), FORM, 422,
         "invalid_lead", "country"),
        ("e-mail twice", forms, form_body([("email", "a@acme.example"), ("Work Email", "b@acme.example")]), FORM,
         422, "invalid_lead", "Work Email"),
        ("file upload", forms, multipart_file, {"Content-Type": "multipart/form-data; boundary=XyZ"}, 422, "invalid",
         "cv"),
        ("foreign redirect", forms, form_body([("email", "c@acme.example"), ("_redirect", "https://evil.example/")]),
         FORM, 422, "invalid_redirect", "_redirect"),
        ("script redirect", forms, form_body([("email", "c@acme.example"), ("_redirect", "javascript:alert(1)")]),
         FORM, 422, "invalid_redirect", "_redirect"),
        ("json body", forms, b'{"email": "c@acme.example"}', {"Content-Type": "application/json"}, 415,
         "unsupported_media_type", None),
        ("bad form id", f"{ch.url}/v1/forms/-x", form_body([("email", "c@acme.example")]), FORM, 422, "invalid",
         "form_id"),
    ]
    for case, url, body, headers, status, code, where in form_cases:
        got, _, raw = await post(ch.api, url, body, headers)
        assert_error(got, raw, status, code, where, case=f"form: {case}")
    got, _, raw = await post(ch.raw, forms, form_body([("email", "c@acme.example")]), FORM)
    assert_error(got, raw, 401, case="form without a key")
    assert await lead(ch, lead_id_of("c@acme.example")) is None, "a refused redirect stores nothing"

    imports = f"{ch.url}/v1/leads/import"
    csv_cases: list[tuple[str, bytes, dict[str, str], dict[str, str], int, str, str | None]] = [
        ("no identity column", b"First Name,Company\nBo,Acme\n", CSV, {}, 422, "invalid_header", "columns"),
        ("two e-mail columns", b"email,E-mail\na@x.example,b@x.example\n", CSV, {}, 422, "invalid_header",
         "columns[1]"),
        ("empty file", b"", CSV, {}, 422, "invalid_header", "rows[0]"),
        ("quote never closed", b'email,company\na@x.example,"Acme\n', CSV, {}, 400, "malformed_csv", "rows[1]"),
        ("not utf-8", b"email,company\na@x.example,Caf\xe9\n", CSV, {}, 400, "bad_encoding", "rows[1]"),
        ("json body", b'{"email": "a@x.example"}', {"Content-Type": "application/json"}, {}, 415,
         "unsupported_media_type", None),
        ("bad source", b"email\na@x.example\n", CSV, {"source": "no spaces please"}, 422, "invalid", "source"),
        ("utf-16", "email\na@x.example\n".encode("utf-16"), {"Content-Type": "text/csv; charset=utf-16"}, {}, 415,
         "unsupported_media_type", None),
    ]
    for case, body, headers, params, status, code, where in csv_cases:
        got, _, raw = await post(ch.api, imports, body, headers, params=params)
        assert_error(got, raw, status, code, where, case=f"csv: {case}")
    # Row-level problems are reported per row, and the good rows of the same file go through.
    got, _, raw = await post(ch.api, imports, b"email,company\nrow.ok@after.example,Acme\nx@y.example,A,extra\n"
                                              b"no-at,Acme\n", CSV)
    assert got == 202, raw
    lines = ndjson(raw)
    assert [line.get("status") for line in lines[1:-1]] == ["accepted", "rejected", "rejected"]
    assert lines[2]["errors"][0]["field"] == "(row)" and "3 cells" in lines[2]["errors"][0]["reason"]
    assert lines[3]["errors"][0]["field"] == "email"

    fb = f"{ch.url}/v1/providers/facebook"
    ch.graph.add(GraphLead("900000000000010", {"email": ["late.lead@graph.example"]}))
    fb_payloads: list[tuple[str, bytes, int, str, str | None]] = [
        ("not json", b"{\"object\": ", 400, "malformed_json", None),
        ("not a page event", b'{"object": "user", "entry": []}', 422, "invalid_payload", "object"),
        ("no entry", b'{"object": "page"}', 422, "invalid_payload", "entry"),
        ("leadgen_id not numeric", json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "changes": [
            {"field": "leadgen", "value": {"leadgen_id": "abc"}}]}]}).encode(), 422, "invalid_payload",
         "entry[0].changes[0].value.leadgen_id"),
        ("no leadgen_id", json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "changes": [
            {"field": "leadgen", "value": {"page_id": PAGE_ID}}]}]}).encode(), 422, "invalid_payload",
         "entry[0].changes[0].value.leadgen_id"),
    ]
    for case, body, status, code, where in fb_payloads:
        got, _, raw = await post(ch.raw, fb, body, fb_headers(body))
        assert_error(got, raw, status, code, where, case=f"facebook: {case}")
    handshake = {"hub.mode": "subscribe", "hub.verify_token": FB_VERIFY, "hub.challenge": "1158201444"}
    for case, query, status in (
            ("wrong mode", {**handshake, "hub.mode": "unsubscribe"}, 400),
            ("no challenge", {k: v for k, v in handshake.items() if k != "hub.challenge"}, 400),
            ("odd challenge", {**handshake, "hub.challenge": "a b<script>"}, 400),
            ("no token", {k: v for k, v in handshake.items() if k != "hub.verify_token"}, 401)):
        async with ch.raw.get(fb, params=query) as r:
            assert r.status == status and (await r.json())["error"], (case, r.status)
    # A lead the Graph API will never give (code 100, no subcode): reported rejected, the other
    # lead of the delivery is captured.
    ch.graph.failures["900000000000098"] = (100, 400)
    body = fb_webhook("900000000000098", "900000000000010")
    got, _, raw = await post(ch.raw, fb, body, fb_headers(body))
    assert got == 200, raw
    answer = orjson.loads(raw)
    assert (answer["accepted"], answer["rejected"]) == (1, 1), answer
    assert answer["results"][0]["errors"][0]["field"] == "entry[0].changes[0].value.leadgen_id"
    assert "code 100" in answer["results"][0]["errors"][0]["reason"]
    # "Does not exist, cannot be loaded due to missing permissions" (100/33), for a lead Meta just
    # announced: a token without access to it, most likely. 503, and the readable lead of the
    # delivery is stored now; once the lead can be read, Meta's redelivery brings it in.
    ch.graph.add(GraphLead("900000000000012", {"email": ["readable.now@graph.example"]}))
    body = fb_webhook("900000000000013", "900000000000012")
    got, _, raw = await post(ch.raw, fb, body, fb_headers(body))
    assert_error(got, raw, 503, "unavailable", case="facebook: 100/33")
    assert "1 of 2 leads" in raw.decode() and "subcode 33" in raw.decode(), raw
    await assigned(ch, lead_id_of("readable.now@graph.example"), "the readable lead of a 503 delivery")
    ch.graph.add(GraphLead("900000000000013", {"email": ["granted.later@graph.example"]}))
    got, _, raw = await post(ch.raw, fb, body, fb_headers(body))
    assert got == 200, raw
    # The readable lead again is the same capture (the redelivery carries its id): accepted, as the
    # first answer would have said, not a duplicate of itself (7435467).
    assert [r["status"] for r in orjson.loads(raw)["results"]] == ["accepted", "accepted"], raw
    # The Graph API throttles us: 503 so that Meta redelivers; the redelivery is captured.
    ch.graph.add(GraphLead("900000000000011", {"email": ["throttled@graph.example"]}))
    ch.graph.failures["900000000000011"] = (17, 400)
    body = fb_webhook("900000000000011")
    got, headers, raw = await post(ch.raw, fb, body, fb_headers(body))
    assert_error(got, raw, 503, "unavailable", case="facebook: graph throttled")
    assert headers.get("Retry-After"), headers
    del ch.graph.failures["900000000000011"]
    got, _, raw = await post(ch.raw, fb, body, fb_headers(body))
    assert got == 200 and orjson.loads(raw)["accepted"] == 1, raw

    tf = f"{ch.url}/v1/providers/typeform"
    email_answer = {"type": "email", "email": "tf.bad@tejo.example", "field": {"id": "e1", "type": "email",
                                                                                 "ref": "mail"}}
    tf_payloads: list[tuple[str, bytes, int, str, str | None]] = [
        ("not json", b"[1, 2", 400, "malformed_json", None),
        ("no token", tf_body("", "tf.bad@tejo.example"), 422, "invalid_payload", "form_response.token"),
        ("answer without field", tf_body("tok-bad-01", "", answers=[
            email_answer, {"type": "text", "text": "Acme"}]), 422, "invalid_payload", "form_response.answers[1].field"),
        ("answer of the wrong type", tf_body("tok-bad-02", "", answers=[
            {"type": "number", "number": "forty", "field": {"id": "s1", "ref": "seats_ref"}}]), 422, "invalid_payload",
         "form_response.answers[0].number"),
        ("answers not a list", tf_body("tok-bad-03", "", answers={"mail": "tf.bad@tejo.example"}),
         422, "invalid_payload", "form_response.answers"),
        ("no event type", b'{"form_response": {}}', 422, "invalid_payload", "event_type"),
    ]
    for case, body, status, code, where in tf_payloads:
        got, _, raw = await post(ch.raw, tf, body, tf_headers(body))
        assert_error(got, raw, status, code, where, case=f"typeform: {case}")
    other_event = b'{"event_id": "x1", "event_type": "form_partial_response", "form_response": {}}'
    got, _, raw = await post(ch.raw, tf, other_event, tf_headers(other_event))
    assert (got, orjson.loads(raw)) == (200, {"status": "ignored"})
    assert await lead(ch, lead_id_of("tf.bad@tejo.example")) is None

    poison = [b"\x00\xff not json", b'"just a string"', b'{"email": ["list@feed.example"]}',
              b'{"company": "no identity"}']
    await produce(ch, *poison)

    # After all that, a valid lead through every channel is still captured and assigned.
    after = {name: lead_id_of(f"after.{name}@valid.example") for name in ("form", "csv", "typeform", "kafka")}
    got, _, raw = await post(ch.api, forms, form_body([("email", "after.form@valid.example")]), FORM)
    assert got == 202, raw
    got, _, raw = await post(ch.api, imports, b"email\nafter.csv@valid.example\n", CSV)
    assert got == 202 and ndjson(raw)[-1]["summary"]["accepted"] == 1, raw
    body = tf_body("tok-after-01", "after.typeform@valid.example")
    got, _, raw = await post(ch.raw, tf, body, tf_headers(body))
    assert got == 200, raw
    await produce(ch, orjson.dumps({"email": "after.kafka@valid.example"}))
    for name, lead_id in after.items():
        await assigned(ch, lead_id, f"the valid {name} lead after bad input")
    for name, email in (("row ok", "row.ok@after.example"), ("facebook", "late.lead@graph.example"),
                        ("facebook redelivered", "throttled@graph.example"),
                        ("facebook once readable", "granted.later@graph.example")):
        await assigned(ch, lead_id_of(email), f"the {name} lead")

    rejected = await rejected_records(ch, poison)
    assert sorted(v for v, _ in rejected) == sorted(poison), "each bad record dead-lettered with its bytes"
    assert sorted(h["leadflow-reason"].decode() for _, h in rejected) == [
        "invalid_lead", "invalid_lead", "not_an_object", "not_utf8"]


# --- 8. A full Meta batch (last: its 1000 leads fill the reps' queues) ------------------------


async def test_facebook_a_delivery_of_1000_leads_is_read_and_captured_whole(ch: Channels) -> None:
    # Meta batches up to 1000 updates in one notification and retries that same batch for 36 h.
    # Every lead is read from the Graph API stand-in; the time it takes is what Meta waits.
    ids = [str(910000000000000 + i) for i in range(1000)]
    for i, leadgen_id in enumerate(ids):
        ch.graph.add(GraphLead(leadgen_id, {"email": [f"batch{i:04d}@meta-batch.example"]}))
    body = fb_webhook(*ids)
    started = time.monotonic()
    status, _, raw = await post(ch.raw, f"{ch.url}/v1/providers/facebook", body, fb_headers(body))
    took = time.monotonic() - started
    assert status == 200, raw
    answer = orjson.loads(raw)
    assert (answer["accepted"], answer["rejected"], len(answer["results"])) == (1000, 0, 1000), answer
    assert all(ch.graph.asked_for(leadgen_id) == 1 for leadgen_id in ids)
    print(f"1000 leads read from the Graph stand-in and captured in {took:.2f} s")
    assert took < 15, f"{took:.1f} s for 1000 leads"
    await assigned(ch, lead_id_of("batch0000@meta-batch.example"), "the first lead of the batch")

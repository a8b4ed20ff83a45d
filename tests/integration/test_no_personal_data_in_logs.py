"""No lead's e-mail, phone or name, and no secret, in a worker's log, even at debug level.

A worker logs at ``debug`` here (Faust's, aiokafka's and aiohttp's debug lines too: the most any
operator can turn on) while it meets the paths where a lead or a secret is most likely to leak
into a log line: capture over HTTP, a lead the API refuses, poison and invalid records on the
Kafka feed, a webhook that fails (retries, circuit) to a URL with a token in its query, a rep
whose webhook works, and a disposition. Then the whole log is searched for every piece of
personal data and every secret it saw, a vanity e-mail domain included: the account agent's
messages are keyed by the lead's company domain, and ``jane-doe-homepage.net`` names a person.
"""
from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.harness import API_KEY, SECRET, Receiver, Worker, WorkerSpec, eventually, free_port

_RUN = uuid.uuid4().hex[:8]
_TOKEN = f"tok{uuid.uuid4().hex}"  # a secret in a webhook URL's query
_DIGITS = str.maketrans("abcdef", "123456")


def _lead(n: int, **extra: Any) -> dict[str, Any]:
    return {"email": f"zelda.pii{n}.{_RUN}@northwind.example", "phone": f"+34 612 3{n}4 {_RUN[:3].translate(_DIGITS)}",
            "first_name": f"Zelda{_RUN}", "last_name": f"Quixote{n}{_RUN}", "company": "Northwind",
            "country": "ES", **extra}


def _phone_pattern(phone: str) -> re.Pattern[str]:
    """The national number's 9 digits, with or without separators between them (as typed, E.164)."""
    digits = re.sub(r"\D", "", phone)[2:]
    return re.compile(r"\D?".join(digits))


async def _raw_request(url: str, text: str) -> bytes:
    """Send ``text`` as is (a client library would refuse to) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(text.encode("latin-1"))
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()


async def _failed_webhooks(api: aiohttp.ClientSession, worker: Worker) -> bool:
    async with api.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    return bool(re.search(r'^leadflow_webhook_deliveries_total\{[^}]*outcome="failed"[^}]*\} [1-9]', text, re.M))


@pytest.mark.timeout(180)
async def test_a_debug_log_holds_no_personal_data_and_no_secret(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_LOG_LEVEL", "debug")
    receiver.secrets["ana"] = SECRET
    dead = f"http://127.0.0.1:{free_port()}/hooks/ben?token={_TOKEN}"  # nothing listens there
    # ana takes one lead (the one closed below), ben the rest: his webhooks fail.
    spec.config_yaml = f"""
routing: {{default_team: sdr}}
teams:
  - id: sdr
    reps:
      - {{id: ana, capacity: 1, webhook_url: "{receiver.hook_url('ana')}", webhook_secret: "{SECRET}"}}
      - {{id: ben, capacity: 10, webhook_url: "{dead}", webhook_secret: "{SECRET}"}}
"""
    vanity_domain = f"zelda-{_RUN}-homepage.net"  # corporate to leadflow: routed through the account agent
    leads = [_lead(n) for n in range(4)] + [_lead(6, email=f"hello@{vanity_domain}")]
    refused = _lead(7, email=f"not-an-address.{_RUN}@")
    poison = [_lead(8, country=12), _lead(9, phone=["x"])]  # wrong types: dead-lettered
    unreadable = b'{"email": "zelda.pii5.' + _RUN.encode() + b'@northwind.example", \xff}'
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        ids = []
        for lead in [*leads[:3], leads[4]]:
            async with api.post(f"{worker.url}/v1/leads", json=lead) as r:
                assert r.status == 202, await r.text()
                ids.append((await r.json())["lead_id"])
        async with api.post(f"{worker.url}/v1/leads", json=refused) as r:
            assert r.status == 422, await r.text()
        # Malformed requests: aiohttp's parser quoted the bad header line, key and all, at ERROR.
        for header in (f"Authorization: Bearer {API_KEY}\x01", f"X-Note: zelda.pii5.{_RUN}@northwind.example\x7f"):
            await _raw_request(worker.url, "POST /v1/leads HTTP/1.1\r\nHost: x\r\n" + header
                               + "\r\nContent-Length: 2\r\n\r\n{}")
        producer = AIOKafkaProducer(bootstrap_servers=spec.stack.kafka_bootstrap)
        await producer.start()
        try:
            inbound = f"{spec.app_id}.leads.inbound"
            for record in poison:
                await producer.send_and_wait(inbound, orjson.dumps(record), key=b"p")
            await producer.send_and_wait(inbound, unreadable, key=b"u")
            await producer.send_and_wait(inbound, orjson.dumps(leads[3]), key=leads[3]["email"].encode())
        finally:
            await producer.stop()

        async def routed() -> int:
            count = 0
            for lead_id in ids:
                async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
                    count += r.status == 200 and (await r.json())["routing"] == "assigned"
            return count == len(ids)

        await eventually(routed, timeout=60, what=f"the leads assigned\n{worker.log(40)}")
        await eventually(lambda: len(receiver.deliveries) >= 1, timeout=30, what="ana's webhook")
        # ben's webhook fails: wait until a failure was handled (and logged) before reading the log.
        await eventually(lambda: _failed_webhooks(api, worker), timeout=30, what="a failed webhook to ben")
        lead_id = next(d["payload"]["data"]["lead_id"] for d in receiver.deliveries)
        async with api.post(f"{worker.url}/v1/leads/{lead_id}/disposition", json={"status": "nurture", "reason": f"Zelda{_RUN} asked to be called back"}) as r:
            assert r.status in (200, 202), await r.text()
    finally:
        worker.stop()

    log = worker.log_path.read_text(errors="replace")
    assert len(log.splitlines()) > 200, "a debug log this short cannot show much"
    assert re.search(r"\bDEBUG\b|\[DEBUG\]", log), "the worker did not log at debug level"
    # The libraries' lines about produced messages are there, their contents redacted
    # (streams/log_redaction.py): the search below is not passing for want of them.
    assert "send: topic=" in log and "bytes redacted>" in log
    assert "Malformed HTTP request from" in log  # the lines are there, without the request's bytes
    lower = log.lower()
    found = []
    for lead in [*leads, refused, *poison]:
        for value in (lead["email"], lead["first_name"], lead["last_name"]):
            if isinstance(value, str) and value.lower() in lower:
                found.append(value)
        if isinstance(lead["phone"], str) and _phone_pattern(lead["phone"]).search(log):
            found.append(lead["phone"])
    for secret in (f"zelda.pii5.{_RUN}", vanity_domain, API_KEY, SECRET, SECRET.removeprefix("whsec_"), _TOKEN):
        if secret.lower() in lower:
            found.append(secret)
    assert not found, f"personal data or secrets in the worker's log: {found}"

"""``Idempotency-Key`` under concurrency, against the real Redis and Kafka: one request holds the key.

Audit s16-dedup #7: the same key sent at once with four different bodies had all four accepted
(the contract says 422), and concurrent copies of one request were each captured and answered
anew. The key is now claimed atomically in Redis (``SET NX``) before anything is captured.

"At once" is made sure of, not hoped for (``HeldBodies``): each request goes on its own
connection with a body that stops after its first byte, so the worker has every request and can
answer none (it reads the body before the key is looked at) until the test lets all the bodies
finish together. Requests that merely ran one after another would pass without the claim: the
first one's stored answer alone refuses the others.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from connectors.capture_store import CaptureStore

from rules.capture import derive_lead_id
from tests.integration.harness import Receiver, Worker, WorkerSpec, eventually, get_lead, one_rep_config, ready_worker

#: Requests sent at once with one key; rounds of them, each with its own key.
AT_ONCE = 6
ROUNDS = 5


@pytest.fixture
async def worker(spec: WorkerSpec, receiver: Receiver) -> AsyncIterator[Worker]:
    spec.config_yaml = one_rep_config(receiver, capacity=50)
    async with ready_worker(spec) as started:
        yield started


Answer = tuple[int, Any, dict[str, str]]


async def _post(api: aiohttp.ClientSession, worker: Worker, body: dict[str, Any], key: str) -> Answer:
    async with api.post(f"{worker.url}/v1/leads", json=body, headers={"Idempotency-Key": key}) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


class HeldBodies:
    """Request bodies that each send their first byte, then wait until every one has, and the test lets go.

    aiohttp asks a streamed body for its next chunk only once it has written the previous one, so
    ``all_sent`` set means every request's headers and first byte are on its own connection.
    """

    def __init__(self, count: int) -> None:
        self.count, self.sent = count, 0
        self.all_sent, self.go = asyncio.Event(), asyncio.Event()

    async def body(self, payload: bytes) -> AsyncIterator[bytes]:
        yield payload[:1]
        self.sent += 1
        if self.sent == self.count:
            self.all_sent.set()
        await self.go.wait()
        yield payload[1:]


async def _post_at_once(api: aiohttp.ClientSession, worker: Worker, bodies: list[dict[str, Any]], key: str
                        ) -> list[Answer]:
    """``bodies`` sent with one ``Idempotency-Key``, all of them at the worker before any can be answered."""
    held = HeldBodies(len(bodies))

    async def post(session: aiohttp.ClientSession, body: dict[str, Any]) -> Answer:
        async with session.post(f"{worker.url}/v1/leads", data=held.body(orjson.dumps(body)),
                                headers={"Idempotency-Key": key, "Content-Type": "application/json"}) as r:
            return r.status, await r.json(content_type=None), dict(r.headers)

    # A connection each (none waits for another's to be free), the API key as the shared session has it.
    async with aiohttp.ClientSession(headers=api.headers, timeout=aiohttp.ClientTimeout(total=15),
                                     connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
        posts = [asyncio.ensure_future(post(session, body)) for body in bodies]
        try:
            await asyncio.wait_for(held.all_sent.wait(), 10)
            # Every request is at the worker, and none can have been answered: no body is complete.
            assert not any(p.done() for p in posts), [p.result() for p in posts if p.done()]
            held.go.set()
            return list(await asyncio.gather(*posts))
        finally:
            for p in posts:
                p.cancel()


def _lead_id(email: str) -> str:
    return derive_lead_id(email=email, phone=None, source="", external_id=None)


@pytest.mark.timeout(180)
async def test_one_key_sent_at_once_with_different_bodies_captures_one_of_them(
        worker: Worker, api: aiohttp.ClientSession) -> None:
    for round_ in range(ROUNDS):
        emails = [f"idem.{round_}.{i}@concurrent.example" for i in range(AT_ONCE)]
        answers = await _post_at_once(api, worker, [{"email": e} for e in emails], f"diff-{round_}")
        statuses = sorted(status for status, _, _ in answers)
        assert statuses == [202] + [422] * (AT_ONCE - 1), answers
        assert all(body["error"]["code"] == "idempotency_key_reused" for status, body, _ in answers if status == 422)
        (winner,) = [emails[i] for i, (status, _, _) in enumerate(answers) if status == 202]
        await eventually(lambda: get_lead(api, worker, _lead_id(winner)), what="the one captured lead")
        for email in emails:
            if email != winner:
                assert await get_lead(api, worker, _lead_id(email)) is None, "a refused body was captured"


@pytest.mark.timeout(180)
async def test_copies_of_one_request_sent_at_once_are_answered_once(worker: Worker, api: aiohttp.ClientSession) -> None:
    in_use = 0
    for round_ in range(ROUNDS):
        body, key = {"email": f"same.{round_}@concurrent.example"}, f"same-{round_}"
        answers = await _post_at_once(api, worker, [body] * AT_ONCE, key)
        fresh = [b for status, b, h in answers if status == 202 and "Idempotent-Replayed" not in h]
        replayed = [b for status, b, h in answers if status == 202 and "Idempotent-Replayed" in h]
        busy = [(b, h) for status, b, h in answers if status == 409]
        assert len(fresh) == 1 and len(fresh) + len(replayed) + len(busy) == AT_ONCE, answers
        assert all(b == fresh[0] for b in replayed)
        for error, headers in busy:
            assert error["error"]["code"] == "idempotency_key_in_use" and headers["Retry-After"] == "1"
        in_use += len(busy)
        # The retry the 409 asks for gets the first answer.
        status, again, headers = await _post(api, worker, body, key)
        assert (status, again, headers.get("Idempotent-Replayed")) == (202, fresh[0], "true")
        lead = await eventually(lambda: get_lead(api, worker, fresh[0]["lead_id"]), what="the lead")
        assert lead["touches"] == 1
    # The held bodies made them overlap: copies that found the first in flight were told so.
    assert in_use > 0


async def test_the_claims_scripts_compare_the_token_in_redis(stack: Any) -> None:
    """Review s16-b M4, on the real Redis (the Lua scripts): a request that outlived its claim
    never overwrites the next request's answer, and an unconfirmed capture keeps its fingerprint."""
    client = aioredis.Redis.from_url(stack.redis_url)
    try:
        store = CaptureStore(client, prefix="leadflow-test-m4:", claim_ttl_s=1)
        await client.delete(store._idem_key("web-form", "lapsed"), store._idem_key("web-form", "doubt"))
        a = await store.claim("web-form", "lapsed", "fp-A")
        assert a.token is not None
        await asyncio.sleep(1.5)  # A's claim lapses in Redis (claim_ttl_s=1)
        b = await store.claim("web-form", "lapsed", "fp-B")
        assert b.token is not None
        await store.remember("web-form", "lapsed", 202, b'{"lead_id":"ld_B"}', "fp-B", token=b.token)
        await store.remember("web-form", "lapsed", 202, b'{"lead_id":"ld_A"}', "fp-A", token=a.token)
        await store.release("web-form", "lapsed", a.token, "fp-A", in_doubt=True)
        assert await store.replay("web-form", "lapsed") == (202, b'{"lead_id":"ld_B"}', "fp-B")

        c = await store.claim("web-form", "doubt", "fp-C")
        assert c.token is not None
        await store.release("web-form", "doubt", c.token, "fp-C", in_doubt=True)
        assert await client.ttl(store._idem_key("web-form", "doubt")) > 3600  # kept, not a 1 s claim
        assert (await store.claim("web-form", "doubt", "fp-D")).in_doubt == "fp-C"
        retry = await store.claim("web-form", "doubt", "fp-C")
        assert retry.token is not None and await store.replay("web-form", "doubt") is None
        await store.release("web-form", "doubt", retry.token, "fp-C")  # stored nothing; the first may have
        assert (await store.claim("web-form", "doubt", "fp-D")).in_doubt == "fp-C"
        again = await store.claim("web-form", "doubt", "fp-C")
        assert again.token is not None
        await store.remember("web-form", "doubt", 202, b'{"lead_id":"ld_C"}', "fp-C", token=again.token)
        assert await store.replay("web-form", "doubt") == (202, b'{"lead_id":"ld_C"}', "fp-C")
    finally:
        await client.aclose()

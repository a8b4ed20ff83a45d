"""Redis-backed capture helpers: idempotency keys and the "seen this person" hint.

Redis is an accelerator, never the source of truth: when it is down every method degrades
(no replayed response, "not seen"), reports it, and capture goes on; dedup still happens
in the lead table.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from connectors.redis_guard import RedisGuard, RedisUnavailable, guard_for

__all__ = ["CaptureStore", "Claim"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What a request with an ``Idempotency-Key`` finds when it claims the key (``CaptureStore.claim``).

    Exactly one of: ``answer`` (the key's request was answered: status, body, its fingerprint),
    ``in_flight`` (another request holds the key now: its fingerprint), ``in_doubt`` (a request
    with another body was not confirmed, and may be stored: its fingerprint), ``token`` (this
    request holds it: answer it, then ``remember`` or ``release`` with the token); all ``None``
    when Redis could not be asked, and the request goes on without the key's protection.
    """

    answer: tuple[int, bytes, str | None] | None = None
    in_flight: str | None = None
    in_doubt: str | None = None
    token: str | None = None


# The key's value is JSON, one of: a claim {"pending": token, "fingerprint"} (plus "unconfirmed"
# when it took over an in-doubt record), an answer {"status", "body", "fingerprint"}, or an
# in-doubt record {"unconfirmed": true, "fingerprint"} (a capture Kafka did not confirm: it may
# be stored). Each script reads and writes the key in one step, so a request whose claim lapsed
# (it outlived ``claim_ttl_s``) never overwrites another request's claim or answer.

#: KEYS[1]; ARGV: claim, claim over an in-doubt record, fingerprint, claim TTL. Nil when this
#: request holds the key now, else the value that stands.
_CLAIM = """
local raw = redis.call('GET', KEYS[1])
local claim = ARGV[1]
if raw then
  local ok, cur = pcall(cjson.decode, raw)
  if not (ok and type(cur) == 'table' and cur['unconfirmed'] == true and cur['pending'] == nil
          and cur['fingerprint'] == ARGV[3]) then
    return raw
  end
  claim = ARGV[2]
end
redis.call('SET', KEYS[1], claim, 'EX', ARGV[4])
return false
"""

#: KEYS[1]; ARGV: token, answer, TTL. Writes only over this request's claim, or over nothing (the
#: claim lapsed and no one took the key since).
_REMEMBER = """
local raw = redis.call('GET', KEYS[1])
if raw then
  local ok, cur = pcall(cjson.decode, raw)
  if not (ok and type(cur) == 'table' and cur['pending'] == ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

#: KEYS[1]; ARGV: token, in-doubt record, TTL, "1" if this request's capture is in doubt. Over
#: this request's claim (or nothing, if in doubt): the in-doubt record when this or an earlier
#: capture under the key may be stored, else the key is deleted.
_RELEASE = """
local raw = redis.call('GET', KEYS[1])
if not raw then
  if ARGV[4] == '1' then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  end
  return 0
end
local ok, cur = pcall(cjson.decode, raw)
if not (ok and type(cur) == 'table' and cur['pending'] == ARGV[1]) then
  return 0
end
if ARGV[4] == '1' or cur['unconfirmed'] == true then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


class CaptureStore:
    """Idempotency responses and seen-lead markers, each with a TTL."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "leadflow:",
        idempotency_ttl_s: int = 24 * 3600,
        claim_ttl_s: int = 30,
        seen_ttl_s: int = 30 * 24 * 3600,
        timeout_s: float = 0.25,
        on_degraded: Callable[[str], None] = lambda op: None,
        guard: RedisGuard | None = None,
    ) -> None:
        self._redis = client
        #: Shared with every other user of ``client`` (rate limits, the enrichment cache): one
        #: memory of Redis's health and one time budget per request (connectors/redis_guard.py).
        self.guard = guard or guard_for(client)
        self._prefix = prefix
        self._idem_ttl = idempotency_ttl_s
        self._claim_ttl = claim_ttl_s
        self._seen_ttl = seen_ttl_s
        self._timeout = timeout_s
        self._on_degraded = on_degraded
        self._claim_script = client.register_script(_CLAIM)
        self._remember_script = client.register_script(_REMEMBER)
        self._release_script = client.register_script(_RELEASE)

    def _idem_key(self, caller: str, key: str) -> str:
        digest = hashlib.sha256(f"{caller}\x00{key}".encode()).hexdigest()
        return f"{self._prefix}idem:{digest}"

    async def replay(self, caller: str, key: str) -> tuple[int, bytes, str | None] | None:
        """The stored response for this caller's idempotency key, if any, with the request's fingerprint."""
        try:
            raw = await self._call("idempotency_get", lambda: self._redis.get(self._idem_key(caller, key)))
        except RedisUnavailable:
            return None
        if raw is None:
            return None
        stored = orjson.loads(raw)
        if "status" not in stored:
            return None  # claimed by a request being answered now, or in doubt: no answer yet
        return int(stored["status"]), stored["body"].encode(), stored.get("fingerprint")

    async def claim(self, caller: str, key: str, fingerprint: str) -> Claim:
        """Reserve this caller's ``key`` for one request (``claim_ttl_s``), or say who has it.

        Atomic in Redis (one script), so of requests sent at once with one key exactly one holds
        it; the others learn whether it carries the same body (``in_flight``) and wait for its
        answer. The reservation expires on its own if the worker holding it dies: ``claim_ttl_s``
        is far above the longest a capture takes (Kafka's acknowledgement is awaited at most 5 s).
        An in-doubt record (``release(..., in_doubt=True)``) is claimed by the same body only: its
        capture ids are those of the first attempt, so if that one was stored, this one is a
        replay the lead agent ignores.
        """
        token = uuid.uuid4().hex
        pending = orjson.dumps({"pending": token, "fingerprint": fingerprint})
        over_doubt = orjson.dumps({"pending": token, "fingerprint": fingerprint, "unconfirmed": True})
        try:
            raw = await self._call("idempotency_get", lambda: self._claim_script(
                keys=[self._idem_key(caller, key)], args=[pending, over_doubt, fingerprint, self._claim_ttl]))
        except RedisUnavailable:
            return Claim()
        if raw is None:
            return Claim(token=token)
        stored = orjson.loads(raw)
        if "pending" in stored:
            return Claim(in_flight=str(stored.get("fingerprint") or ""))
        if "status" not in stored:
            return Claim(in_doubt=str(stored.get("fingerprint") or ""))
        return Claim(answer=(int(stored["status"]), stored["body"].encode(), stored.get("fingerprint")))

    async def release(self, caller: str, key: str, token: str, fingerprint: str | None = None,
                      *, in_doubt: bool = False) -> None:
        """Give a claimed key up without an answer to keep.

        ``in_doubt``: the capture may be stored (Kafka did not confirm it): the key keeps the
        request's fingerprint for ``idempotency_ttl_s``, so another body is refused and the same
        body may try again. Else nothing was stored: a retry may go at once (unless the claim took
        over an in-doubt record, which stays). Only this request's claim is touched.
        """
        record = orjson.dumps({"unconfirmed": True, "fingerprint": fingerprint})
        try:
            await self._call("idempotency_set", lambda: self._release_script(
                keys=[self._idem_key(caller, key)], args=[token, record, self._idem_ttl, "1" if in_doubt else "0"]))
        except RedisUnavailable:
            pass

    async def remember(self, caller: str, key: str, status: int, body: bytes, fingerprint: str | None = None,
                       token: str | None = None) -> None:
        """Keep the response (and what the request was) so a retry with the same key gets the same answer.

        With the ``token`` of this request's claim, the answer replaces that claim (or a key left
        empty when the claim lapsed), never another request's claim or answer; without one, it is
        kept only if the key has no value yet.
        """
        value = orjson.dumps({"status": status, "body": body.decode(), "fingerprint": fingerprint})
        name = self._idem_key(caller, key)
        try:
            if token is None:
                await self._call("idempotency_set", lambda: self._redis.set(name, value, ex=self._idem_ttl, nx=True))
            else:
                await self._call("idempotency_set",
                                 lambda: self._remember_script(keys=[name], args=[token, value, self._idem_ttl]))
        except RedisUnavailable:
            pass

    async def mark_seen(self, lead_ids: list[str], capture_ids: list[str] | None = None) -> list[bool]:
        """Mark leads as seen; return for each whether it had been seen before (False when unknown).

        With ``capture_ids`` (one per lead), the marker keeps the capture that set it, and a lead
        marked by this same capture counts as not seen before: a retry of a request (the same
        Idempotency-Key, so the same capture ids) whose stored answer Redis lost (evicted, flushed,
        or the client gave up while Redis stalled and the first marker landed later) is answered
        ``accepted`` again, as the first time, not ``duplicate`` (review s18-redis, finding 4).
        """
        if not lead_ids:
            return []
        values = capture_ids if capture_ids is not None else ["1"] * len(lead_ids)

        async def mark() -> Any:
            async with self._redis.pipeline(transaction=False) as pipe:
                for lead_id, value in zip(lead_ids, values):
                    key = f"{self._prefix}seen:{lead_id}"
                    pipe.set(key, value.encode(), ex=self._seen_ttl, nx=True)
                    pipe.get(key)  # whose marker it is (SET NX GET needs Redis 7; this works on any)
                return await pipe.execute()

        try:
            answers = await self._call("seen", mark)
        except RedisUnavailable:
            return [False] * len(lead_ids)
        seen = []
        for index, value in enumerate(values):
            created, holder = answers[2 * index], answers[2 * index + 1]
            seen.append(not created and (capture_ids is None or holder != value.encode()))
        return seen

    async def probe(self) -> bool:
        """Whether Redis takes a write now (a short-lived key; a PING answers even when Redis is full),
        through the guard: ``False`` while the guard goes without Redis, unless this is its probe."""
        try:
            return bool(await self.guard.call("probe", lambda: self._redis.set(f"{self._prefix}probe", b"1", ex=60),
                                              self._timeout, budgeted=False))
        except RedisUnavailable:
            return False

    async def _call(self, operation: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """``make()`` through the guard; when it went without Redis, counted (``on_degraded``) and raised.
        The guard logs what failed, once per outage or 10 s, not once per operation."""
        try:
            return await self.guard.call(operation, make, self._timeout)
        except RedisUnavailable:
            self._on_degraded(operation)
            raise

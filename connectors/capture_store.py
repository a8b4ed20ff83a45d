"""Redis-backed capture helpers: idempotency keys and the "seen this person" hint.

Redis is an accelerator, never the source of truth: when it is down every method degrades
(no replayed response, "not seen"), reports it, and capture goes on; dedup still happens
in the lead table.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["CaptureStore", "Claim"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    """What a request with an ``Idempotency-Key`` finds when it claims the key (``CaptureStore.claim``).

    Exactly one of: ``answer`` (the key's request was answered: status, body, its fingerprint),
    ``in_flight`` (another request holds the key now: its fingerprint), ``token`` (this request
    holds it: answer it, then ``remember`` or ``release`` with the token); all ``None`` when Redis
    could not be asked, and the request goes on without the key's protection.
    """

    answer: tuple[int, bytes, str | None] | None = None
    in_flight: str | None = None
    token: str | None = None


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
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._idem_ttl = idempotency_ttl_s
        self._claim_ttl = claim_ttl_s
        self._seen_ttl = seen_ttl_s
        self._timeout = timeout_s
        self._on_degraded = on_degraded

    def _idem_key(self, caller: str, key: str) -> str:
        digest = hashlib.sha256(f"{caller}\x00{key}".encode()).hexdigest()
        return f"{self._prefix}idem:{digest}"

    async def replay(self, caller: str, key: str) -> tuple[int, bytes, str | None] | None:
        """The stored response for this caller's idempotency key, if any, with the request's fingerprint."""
        try:
            raw = await asyncio.wait_for(self._redis.get(self._idem_key(caller, key)), self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._degraded("idempotency_get", exc)
            return None
        if raw is None:
            return None
        stored = orjson.loads(raw)
        if "pending" in stored:
            return None  # claimed by a request being answered now: no answer yet
        return int(stored["status"]), stored["body"].encode(), stored.get("fingerprint")

    async def claim(self, caller: str, key: str, fingerprint: str) -> Claim:
        """Reserve this caller's ``key`` for one request (``SET NX``, ``claim_ttl_s``), or say who has it.

        Atomic in Redis, so of requests sent at once with one key exactly one holds it; the others
        learn whether it carries the same body (``in_flight``) and wait for its answer. The
        reservation expires on its own if the worker holding it dies: ``claim_ttl_s`` is far above
        the longest a capture takes (Kafka's acknowledgement is awaited at most 5 s).
        """
        name = self._idem_key(caller, key)
        token = uuid.uuid4().hex
        pending = orjson.dumps({"pending": token, "fingerprint": fingerprint})
        for _ in range(2):
            try:
                if await asyncio.wait_for(self._redis.set(name, pending, ex=self._claim_ttl, nx=True), self._timeout):
                    return Claim(token=token)
                raw = await asyncio.wait_for(self._redis.get(name), self._timeout)
            except (RedisError, OSError, TimeoutError) as exc:
                self._degraded("idempotency_get", exc)
                return Claim()
            if raw is None:
                continue  # answered and expired, or a claim that lapsed, between the two calls
            stored = orjson.loads(raw)
            if "pending" in stored:
                return Claim(in_flight=str(stored.get("fingerprint") or ""))
            return Claim(answer=(int(stored["status"]), stored["body"].encode(), stored.get("fingerprint")))
        return Claim()

    async def release(self, caller: str, key: str, token: str) -> None:
        """Give a claimed key up without an answer to keep (nothing was stored): a retry may go at once."""
        name = self._idem_key(caller, key)
        try:
            raw = await asyncio.wait_for(self._redis.get(name), self._timeout)
            if raw is not None and orjson.loads(raw).get("pending") == token:
                await asyncio.wait_for(self._redis.delete(name), self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._degraded("idempotency_set", exc)

    async def remember(self, caller: str, key: str, status: int, body: bytes, fingerprint: str | None = None,
                       token: str | None = None) -> None:
        """Keep the response (and what the request was) so a retry with the same key gets the same answer.

        With the ``token`` of this request's claim, the answer replaces the claim; without one, it
        is kept only if the key has no value yet.
        """
        value = orjson.dumps({"status": status, "body": body.decode(), "fingerprint": fingerprint})
        try:
            await asyncio.wait_for(
                self._redis.set(self._idem_key(caller, key), value, ex=self._idem_ttl, nx=token is None),
                self._timeout,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._degraded("idempotency_set", exc)

    async def mark_seen(self, lead_ids: list[str]) -> list[bool]:
        """Mark leads as seen; return for each whether it had been seen before (False when unknown)."""
        if not lead_ids:
            return []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for lead_id in lead_ids:
                    pipe.set(f"{self._prefix}seen:{lead_id}", b"1", ex=self._seen_ttl, nx=True)
                created = await asyncio.wait_for(pipe.execute(), self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._degraded("seen", exc)
            return [False] * len(lead_ids)
        return [not bool(c) for c in created]

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), self._timeout))
        except (RedisError, OSError, TimeoutError):
            return False

    def _degraded(self, op: str, exc: BaseException) -> None:
        log.warning("redis unavailable for %s, continuing without it: %s", op, type(exc).__name__)
        self._on_degraded(op)

"""Redis-backed capture helpers: idempotency keys and the "seen this person" hint.

Redis is an accelerator, never the source of truth: when it is down every method degrades
(no replayed response, "not seen"), reports it, and capture goes on; dedup still happens
in the lead table.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["CaptureStore"]

log = logging.getLogger(__name__)


class CaptureStore:
    """Idempotency responses and seen-lead markers, each with a TTL."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "leadflow:",
        idempotency_ttl_s: int = 24 * 3600,
        seen_ttl_s: int = 30 * 24 * 3600,
        timeout_s: float = 0.25,
        on_degraded: Callable[[str], None] = lambda op: None,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._idem_ttl = idempotency_ttl_s
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
        return int(stored["status"]), stored["body"].encode(), stored.get("fingerprint")

    async def remember(self, caller: str, key: str, status: int, body: bytes, fingerprint: str | None = None) -> None:
        """Keep the response (and what the request was) so a retry with the same key gets the same answer."""
        value = orjson.dumps({"status": status, "body": body.decode(), "fingerprint": fingerprint})
        try:
            await asyncio.wait_for(
                self._redis.set(self._idem_key(caller, key), value, ex=self._idem_ttl, nx=True), self._timeout
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

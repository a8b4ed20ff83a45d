"""The enrichment cache in Redis: one key per (provider, lookup key), with a TTL.

Keys hold a SHA-256 of the lookup key, never the e-mail or domain itself. Redis is an
accelerator: any Redis failure raises ``CacheUnavailable`` to the enricher, which then asks the
providers directly (degraded mode) and reports it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from connectors.enrichment.provider import Answer
from connectors.redis_guard import RedisGuard, RedisUnavailable, guard_for

__all__ = ["EnrichmentCache", "CacheUnavailable"]


class CacheUnavailable(Exception):
    """Redis did not answer in time or failed, or the worker's ``RedisGuard`` goes without it now
    (the message says what failed and where: ``redis at host:port: timeout``)."""


class EnrichmentCache:
    """Answers by ``(provider, key)``: found ones for ``ttl_s``, "no record" for ``negative_ttl_s``."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "leadflow:", ttl_s: float = 7 * 86400,
                 negative_ttl_s: float = 86400, timeout_s: float = 0.1, guard: RedisGuard | None = None) -> None:
        self._redis = client
        self.guard = guard or guard_for(client)  # shared with the capture store and the rate limits
        self._prefix = prefix
        self._ttl = max(1, int(ttl_s))
        self._negative_ttl = max(1, int(negative_ttl_s))
        self.timeout_s = timeout_s

    def key(self, provider: str, key: str) -> str:
        digest = hashlib.sha256(key.strip().lower().encode()).hexdigest()[:40]
        return f"{self._prefix}enrich:{provider}:{digest}"

    async def get_many(self, wanted: Sequence[tuple[str, str]], timeout_s: float) -> dict[tuple[str, str], Answer]:
        """The cached answers among ``(provider, key)`` pairs, in one round trip."""
        if not wanted:
            return {}
        try:
            raws = await self.guard.call("enrichment_cache_get",
                                         lambda: self._redis.mget([self.key(p, k) for p, k in wanted]),
                                         max(0.001, min(timeout_s, self.timeout_s)), budgeted=False)
        except RedisUnavailable as exc:
            raise CacheUnavailable(self._why(exc)) from None
        found: dict[tuple[str, str], Answer] = {}
        for pair, raw in zip(wanted, raws):
            if raw is None:
                continue
            try:
                stored = orjson.loads(raw)
                fields = {str(k): str(v) for k, v in dict(stored.get("f") or {}).items()}
                found[pair] = Answer(found=bool(stored["found"]), fields=fields)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                continue  # an unreadable entry is a miss; the fresh answer overwrites it
        return found

    async def put_many(self, answers: Mapping[tuple[str, str], Answer]) -> None:
        """Remember answers, each with its TTL, in one round trip."""
        if not answers:
            return
        async def put() -> Any:
            async with self._redis.pipeline(transaction=False) as pipe:
                for (provider, key), answer in answers.items():
                    value = orjson.dumps({"found": answer.found, "f": answer.fields})
                    pipe.set(self.key(provider, key), value, ex=self._ttl if answer.found else self._negative_ttl)
                return await pipe.execute()

        try:
            await self.guard.call("enrichment_cache_put", put, self.timeout_s, budgeted=False)
        except RedisUnavailable as exc:
            raise CacheUnavailable(self._why(exc)) from None

    def _why(self, exc: RedisUnavailable) -> str:
        return f"redis at {self.guard.address}: {exc.kind}{' (not asked)' if exc.skipped else ''}"

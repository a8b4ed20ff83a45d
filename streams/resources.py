"""Per-process outside resources: one aiohttp session, one Redis client; opened lazily, closed once."""
from __future__ import annotations

import logging

import aiohttp
import redis.asyncio as aioredis

from connectors.capture_store import CaptureStore
from connectors.netguard import GuardedResolver
from connectors.redis_guard import guard_for
from connectors.webhooks import WebhookSender
from ops.metrics import Metrics
from streams.log_rate_limit import RepeatLimit
from streams.settings import Settings

__all__ = ["REDIS_LOGGERS", "Resources"]

#: The loggers that write when Redis fails: at most one line per template and 10 s each (a Redis
#: that fails fails every operation of every request: 2-3.5 lines a request before).
REDIS_LOGGERS = ("connectors.redis_guard", "connectors.enrichment.enricher")


#: Connections to Redis per worker: a call beyond them waits for one (up to 1 s), not fails.
REDIS_CONNECTIONS = 100


def redis_client(url: str) -> aioredis.Redis:
    """The worker's Redis client. redis-py connects lazily, so building it does no I/O.

    A blocking pool: with more calls in flight than connections (a burst of 300 requests), a call
    waits for a free connection instead of failing at once with "Too many connections": that
    failure made 27 of 300 requests on a healthy Redis keep no idempotency record (review s18-d).
    A wait past 1 s fails like a full pool ("No connection available."): no pause of the guard."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=REDIS_CONNECTIONS, timeout=1.0,
                                                    socket_connect_timeout=1.0, socket_timeout=1.0)
    return aioredis.Redis(connection_pool=pool)


class Resources:
    """Created with the app; the session is made on first use (it needs the running loop)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._relay_session: aiohttp.ClientSession | None = None
        self._sender: WebhookSender | None = None
        self.redis = redis_client(settings.redis_url)
        # One guard for every user of this client (the store, the API's rate limits, the enrichment
        # cache): after a failure the worker goes without Redis for 5 s, one probe at a time, and a
        # request loses at most 1 s in all to calls that failed or timed out (connectors/redis_guard.py).
        self.redis_guard = guard_for(self.redis, timeout_s=1.0, request_budget_s=1.0, pause_s=5.0)
        for name in REDIS_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, RepeatLimit) for f in logger.filters):
                logger.addFilter(RepeatLimit())
        self.store = CaptureStore(
            # Keys are namespaced by app id: deployments sharing a Redis never see each other's.
            # 1 s: a busy 2-core box can take a few hundred ms for a first connection.
            self.redis, prefix=f"{settings.app_id}:", timeout_s=1.0, on_degraded=lambda op: metrics.redis_degraded.labels(op).inc()
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.webhook_timeout_s + 5),
                # The resolver re-checks addresses at connect time (DNS rebinding), not only up front.
                connector=aiohttp.TCPConnector(
                    limit=100, limit_per_host=10,
                    resolver=GuardedResolver(allow_private=self._settings.webhook_allow_private),
                ),
                trust_env=False,
            )
        return self._session

    @property
    def relay_session(self) -> aiohttp.ClientSession:
        """For requests relayed to the worker that owns a key: our own workers, at the web addresses
        they advertise to the consumer group. Not through the webhook guard: in a VPC or a Kubernetes
        cluster those resolve to private addresses, and every relayed request was refused (a 500)."""
        if self._relay_session is None:
            self._relay_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100), trust_env=False)
        return self._relay_session

    @property
    def sender(self) -> WebhookSender:
        if self._sender is None:
            self._sender = WebhookSender(
                self.session, allow_private=self._settings.webhook_allow_private,
                timeout_s=self._settings.webhook_timeout_s,
            )
        return self._sender

    async def close(self) -> None:
        for session in (self._session, self._relay_session):
            if session is not None:
                await session.close()
        self._session = self._relay_session = None
        await self.redis.aclose()

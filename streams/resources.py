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


class Resources:
    """Created with the app; the session is made on first use (it needs the running loop)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._relay_session: aiohttp.ClientSession | None = None
        self._sender: WebhookSender | None = None
        # redis-py connects lazily, so building the client here does no I/O.
        self.redis = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=1.0, socket_timeout=1.0)
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

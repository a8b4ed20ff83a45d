"""One guard in front of a worker's Redis, shared by every user of it: after Redis failed to answer,
go without it for a while; and one bounded time in Redis per request.

Redis is an accelerator (idempotency, rate limits, the failed-auth count, the "seen" hint, the
enrichment cache): every user already goes on without it. What the guard adds is memory. Without
it, a hung Redis cost each call its own timeout, and a capture makes up to five calls in a row:
up to 4 s a capture for as long as Redis hung (review s18-redis, finding 1). With it:

* **Going without Redis.** After a call could not reach Redis (a connection refused or lost, a
  wrong password, a timeout), every call fails at once (:class:`RedisUnavailable`, ``skipped``)
  for ``pause_s``. Then one call at a time is let through to find Redis back; the others still
  go without it until that probe answers. A call Redis answered with an error (``OOM``, a
  read-only replica) cost no time: it is reported but opens nothing (a read may still work).
* **One budget per request.** The calls of one asyncio task (aiohttp runs each request in its own
  task) share ``request_budget_s`` of time spent waiting on Redis; past it, they go without Redis.
  A long-lived task (an agent) gets a new budget every :data:`BUDGET_WINDOW_S`.
* **What Redis said.** :meth:`RedisGuard.degraded` is true while the guard goes without Redis or
  a call failed in the last ``recent_s``, whatever failed: the ``leadflow_redis_degraded_mode``
  gauge reads it, so an ``OOM`` shows, not only a failed PING. Transitions are logged once, with
  Redis's host:port (never the URL, which may hold the password) and what failed.

A small class, not a circuit-breaker package: the ones on PyPI (pybreaker, circuitbreaker,
purgatory, aiobreaker) count failures per decorated function and have no per-request budget nor a
way to tell a timeout from an error reply; this is the few lines we need.
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["BUDGET_WINDOW_S", "RedisGuard", "RedisUnavailable", "describe", "guard_for"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a task's Redis budget lasts before it is renewed: far above a request's life (Kafka's
#: acknowledgement is awaited at most 5 s), so a request never gets two.
BUDGET_WINDOW_S = 30.0


class RedisUnavailable(RedisError):
    """A call went without Redis: ``kind`` says why (``timeout``, ``OOM``, ``NOAUTH`` …), ``skipped``
    when Redis was not asked at all (the guard goes without it, or the request's budget is spent).
    A ``RedisError``, so code that handled Redis's own errors handles it the same way."""

    def __init__(self, operation: str, kind: str, *, skipped: bool = False) -> None:
        super().__init__(f"{operation}: {kind}{' (not asked)' if skipped else ''}")
        self.operation = operation
        self.kind = kind
        self.skipped = skipped


def describe(exc: BaseException) -> tuple[str, bool]:
    """What failed, in a word an operator knows, and whether it means Redis cannot be reached in
    time (go without it for a while) rather than an error reply that cost nothing."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, RedisTimeoutError)):
        return "timeout", True
    if isinstance(exc, AuthenticationError):
        return "NOAUTH (wrong or missing password)", True
    if isinstance(exc, BusyLoadingError):
        return "LOADING (Redis is loading its data)", True
    if isinstance(exc, RedisConnectionError):
        return "connection failed", True
    if isinstance(exc, OutOfMemoryError):
        return "OOM (maxmemory reached)", False
    if isinstance(exc, ReadOnlyError):
        return "READONLY (a replica)", False
    if isinstance(exc, NoPermissionError):
        return "NOPERM (the user may not run it)", False
    if isinstance(exc, OSError):
        return "connection failed", True
    return type(exc).__name__, False


class RedisGuard:
    """Run each Redis call through :meth:`call`; see the module's docstring."""

    def __init__(self, *, address: str = "redis", timeout_s: float = 1.0, request_budget_s: float = 1.0,
                 pause_s: float = 5.0, recent_s: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.request_budget_s = request_budget_s
        self.pause_s = pause_s
        self.recent_s = recent_s
        self._clock = clock
        self._down_since: float | None = None  # going without Redis since (None: Redis answers)
        self._retry_at = 0.0  # while down: the next probe may go from then
        self._probing = False
        self._without = 0  # operations that went without Redis since it went down
        self._last_failure: float | None = None
        self.last_kind: str | None = None
        self._spent: weakref.WeakKeyDictionary[asyncio.Task[Any], list[float]] = weakref.WeakKeyDictionary()

    @property
    def down(self) -> bool:
        """Going without Redis now (its last call could not reach it)."""
        return self._down_since is not None

    def degraded(self) -> bool:
        """Going without Redis, or a call failed within ``recent_s``: for the degraded-mode gauge."""
        recent = self._last_failure is not None and self._clock() - self._last_failure < self.recent_s
        return self.down or recent

    async def call(self, operation: str, make: Callable[[], Awaitable[T]], timeout_s: float | None = None, *,
                   budgeted: bool = True) -> T:
        """``await make()`` within ``timeout_s`` (the guard's own by default) and what is left of this
        task's budget; raise :class:`RedisUnavailable` when it failed or Redis was not asked.

        ``budgeted=False`` for a caller with its own bound in a long-lived task (the enrichment
        cache in the intake agent, bounded by the enrichment budget): it neither spends nor heeds
        the task's budget, which a busy agent's thousands of quick calls would spend."""
        now = self._clock()
        probe = False
        if self._down_since is not None:
            if self._probing or now < self._retry_at:
                self._skip(operation)
            probe = self._probing = True
        try:
            spent = self._budget(now) if budgeted else [now, 0.0]
            wanted = self.timeout_s if timeout_s is None else timeout_s
            limit = min(wanted, self.request_budget_s - spent[1])
            if limit <= 0:
                self._without += 1
                raise RedisUnavailable(operation, "request's Redis budget spent", skipped=True)
            try:
                result = await asyncio.wait_for(make(), limit)
            except (RedisError, OSError, TimeoutError) as exc:
                spent[1] += self._clock() - now
                kind, unreachable = describe(exc)
                # A timeout says Redis hangs only after the guard's own timeout: not one cut short by
                # the request's budget, nor a caller's shorter one (the enrichment cache's 100 ms).
                if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
                    unreachable = limit >= self.timeout_s
                self._failed(operation, kind, unreachable)
                raise RedisUnavailable(operation, kind) from None
            spent[1] += self._clock() - now
        finally:
            if probe:
                self._probing = False
        if self._down_since is not None:
            log.warning("redis at %s answers again after %.0f s; %d operations went without it",
                        self.address, self._clock() - self._down_since, self._without)
            self._down_since = None
        return result

    def _skip(self, operation: str) -> None:
        self._without += 1
        raise RedisUnavailable(operation, self.last_kind or "unavailable", skipped=True)

    def _budget(self, now: float) -> list[float]:
        """This task's ``[since, seconds spent]``, renewed every :data:`BUDGET_WINDOW_S`."""
        task = asyncio.current_task()
        if task is None:
            return [now, 0.0]
        spent = self._spent.get(task)
        if spent is None or now - spent[0] > BUDGET_WINDOW_S:
            spent = self._spent[task] = [now, 0.0]
        return spent

    def _failed(self, operation: str, kind: str, unreachable: bool) -> None:
        now = self._clock()
        self._last_failure = now
        self.last_kind = kind
        self._without += 1
        if not unreachable:
            log.warning("redis at %s refused %s: %s; going on without it", self.address, operation, kind)
            return
        self._retry_at = now + self.pause_s
        if self._down_since is None:
            self._down_since = now
            self._without = 1
            log.warning("redis at %s failed for %s: %s; going on without it, next try in %.0f s",
                        self.address, operation, kind, self.pause_s)


def _address(client: Any) -> str:
    """``host:port`` (or the socket path) of a redis-py client; never its URL or password."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return "redis"
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


_GUARDS: weakref.WeakKeyDictionary[Any, RedisGuard] = weakref.WeakKeyDictionary()


def guard_for(client: Any, **options: Any) -> RedisGuard:
    """The one guard of ``client`` (made on first ask, with ``options``): every user of a client
    shares it, so a worker with one client has one guard."""
    guard = _GUARDS.get(client)
    if guard is None:
        guard = _GUARDS[client] = RedisGuard(address=_address(client), **options)
    return guard

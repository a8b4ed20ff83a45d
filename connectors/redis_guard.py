"""One guard in front of a worker's Redis, shared by every user of it: after Redis failed to answer,
go without it for a while; and a bound on the time one request loses to it.

Redis is an accelerator (idempotency, rate limits, the failed-auth count, the "seen" hint, the
enrichment cache): every user already goes on without it. What the guard adds is memory. Without
it, a hung Redis cost each call its own timeout, and a capture makes up to five calls in a row:
up to 4 s a capture for as long as Redis hung (review s18-redis, finding 1). With it:

* **Going without Redis.** After a call could not reach Redis (a connection refused or lost, a
  wrong password, a timeout), every call fails at once (:class:`RedisUnavailable`, ``skipped``)
  for ``pause_s``. Then one call at a time is let through to find Redis back; the others still
  go without it until that probe gets an answer, any answer: an error reply (``OOM``) shows Redis
  is there, so reads go to it again (review s18-a, finding 5). A probe that times out, whatever
  its own timeout (the enrichment cache's 100 ms), pauses again for ``pause_s``: a hung Redis
  sees one connection per pause, not one per lookup (finding 4). Only a call that started after
  Redis went away can end the outage: an older one answering late says nothing about now.
  A call Redis answered with an error (``OOM``, a read-only replica) cost no time: it is
  reported but opens nothing (a read may still work).
* **One budget per request, for time lost to Redis.** The calls of one asyncio task (aiohttp runs
  each request in its own task) may lose ``request_budget_s`` in all to calls that failed or
  timed out, and to the time answers took beyond :data:`SLOW_CALL_S` each; past it, they go
  without Redis. A healthy call costs the budget nothing: a CSV import's 500 round trips to a
  healthy Redis, or a busy event loop that resumes a request late, must not make it skip
  ``mark_seen`` or ``remember`` (review s18-a, findings 1 and 2); a Redis answering in 0.8 s must
  not make every capture wait 4 s (review s18-d). An answer slower than half the timeout shows
  as degraded. A long-lived task gets a new budget every :data:`BUDGET_WINDOW_S`.
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
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["BUDGET_WINDOW_S", "SLOW_CALL_S", "RedisGuard", "RedisUnavailable", "describe", "guard_for"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a healthy Redis call may take (a late event loop included) before the rest of its time
#: counts against the request's budget.
SLOW_CALL_S = 0.25
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
    if isinstance(exc, RedisError) and str(exc) in ("Too many connections", "No connection available."):
        # redis-py 8 raises MaxConnectionsError, 5.x-7.x a plain ConnectionError, both with this text
        # (redis/redis-py#3237): the message is what they share. A blocking pool (the worker's,
        # streams/resources.py) that waited its timeout for a connection says the second.
        # The worker's own pool (redis-py's 100 connections) is in use by other calls: Redis was not
        # asked and says nothing about it (300 requests at once on a healthy Redis paused it 5 s).
        return "the worker's Redis connection pool is full", False
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
        the task's budget."""
        started = self._clock()
        probe = False
        if self._down_since is not None:
            if self._probing or started < self._retry_at:
                self._skip(operation)
            probe = self._probing = True
        try:
            lost = self._budget(started) if budgeted else [started, 0.0]
            wanted = self.timeout_s if timeout_s is None else timeout_s
            limit = min(wanted, self.request_budget_s - lost[1])
            if limit <= 0:
                self._without += 1
                raise RedisUnavailable(operation, "request's Redis budget spent", skipped=True)
            try:
                result = await asyncio.wait_for(make(), limit)
            except (RedisError, OSError, TimeoutError) as exc:
                lost[1] += self._clock() - started  # only time lost to Redis counts against the budget
                kind, unreachable = describe(exc)
                if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
                    # A timeout says Redis hangs after the guard's own timeout, not one cut short by the
                    # request's budget nor a caller's shorter one (the enrichment cache's 100 ms): except
                    # for the probe, which asks a Redis known to have hung, and must not end its pause.
                    unreachable = probe or limit >= self.timeout_s
                self._failed(operation, kind, unreachable, started, answered=isinstance(exc, ResponseError))
                raise RedisUnavailable(operation, kind) from None
        finally:
            if probe:
                self._probing = False
        took = self._clock() - started
        if took > SLOW_CALL_S and budgeted:
            # A Redis that answers, slowly, costs a request too: what each answer took beyond a
            # healthy call's time counts against the budget (review s18-d: at 0.8 s an answer, every
            # capture waited 4 s and nothing showed it). A healthy call, or a late loop, stays below.
            lost[1] += took - SLOW_CALL_S
        if took > self.timeout_s / 2:
            self._slow(operation, took)
        self._answered(started, None)
        return result

    def _slow(self, operation: str, took: float) -> None:
        """An answer slower than half the timeout: shown as degraded (the gauge, one log line per
        ``recent_s``), with no pause: Redis is there."""
        now = self._clock()
        if self._last_failure is None or now - self._last_failure >= self.recent_s:
            log.warning("redis at %s slow for %s: answered in %.2f s", self.address, operation, took)
        self._last_failure = now
        self.last_kind = f"slow ({took:.2f} s)"

    def _skip(self, operation: str) -> None:
        self._without += 1
        raise RedisUnavailable(operation, self.last_kind or "unavailable", skipped=True)

    def _budget(self, now: float) -> list[float]:
        """This task's ``[since, seconds lost to Redis]``, renewed every :data:`BUDGET_WINDOW_S`."""
        task = asyncio.current_task()
        if task is None:
            return [now, 0.0]
        spent = self._spent.get(task)
        if spent is None or now - spent[0] > BUDGET_WINDOW_S:
            spent = self._spent[task] = [now, 0.0]
        return spent

    def _answered(self, started: float, error: str | None) -> None:
        """Redis answered a call that started at ``started`` (``error``: with that error reply): the
        outage is over if the call started after it began. One that started before, still in flight
        when another call gave up, says nothing about now (review s18-a, finding 2)."""
        if self._down_since is None or started < self._down_since:
            return
        log.warning("redis at %s answers again after %.0f s%s; %d operations went without it",
                    self.address, self._clock() - self._down_since, f" (with {error})" if error else "",
                    self._without)
        self._down_since = None

    def _failed(self, operation: str, kind: str, unreachable: bool, started: float, *, answered: bool) -> None:
        now = self._clock()
        self._last_failure = now
        self.last_kind = kind
        self._without += 1
        if answered:
            # An error reply: Redis is there. Reads go to it again; the failure still shows (degraded).
            self._answered(started, kind)
        if not unreachable:
            log.warning("redis at %s %s %s: %s; going on without it", self.address,
                        "refused" if answered else "failed for", operation, kind)
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

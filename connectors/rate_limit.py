"""Per-caller rate limits in Redis: GCRA, one atomic Lua call per request, per worker when Redis is down.

GCRA (the generic cell rate algorithm) keeps one number per caller, the *theoretical arrival
time* (TAT): each request pushes it forward by the emission interval ``60 s / limit``, and a
request is refused while the TAT is further ahead of now than the burst allows. A limit of
``N`` per minute therefore means: up to ``N`` requests at once, then one every ``60/N`` seconds
on average. Unlike a fixed window there is no double burst at a window edge, and unlike a
sliding log it stores O(1) per caller.

Redis is an accelerator, never the source of truth: when it is slow or down (or the worker's
``RedisGuard`` goes without it, connectors/redis_guard.py) the limit is counted in the worker's
memory instead (``LocalLimiter``, the same GCRA): the same limit per worker, never an unlimited
caller. The worker's count knows nothing of what was spent in Redis: it starts full when Redis
goes away, and Redis's count is as it was left when Redis comes back. So within one minute a key
may pass up to N + 1 times its limit with N workers (what it spent in Redis before the failure,
then a full allowance in each worker), and a full allowance more each time Redis goes away again
(review s18-a, finding 7). The degradation is reported (``on_degraded``, the ``redis_degraded``
metric) and capture goes on.

``FailedAuthLimit`` holds failed authentications by client address to the same GCRA: counted in
Redis so that all workers share one allowance and one block, and in the worker's memory while
Redis cannot answer (per worker then, never open: it guards the keys, not the capture path).
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import NoScriptError

from connectors.redis_guard import RedisGuard, RedisUnavailable, guard_for

__all__ = ["FailedAuthLimit", "LocalLimiter", "RateDecision", "RateLimiter", "gcra", "GCRA_LUA"]

_MINUTE_US = 60_000_000

#: The limiter's one Redis round trip. Times are integer microseconds (exact in a Lua double
#: up to 2^53, i.e. for the next 250 years); ``%.0f`` keeps them integral when stored, since
#: Lua's ``tostring`` would switch to exponent notation and lose digits.
#: KEYS[1] the caller's key; ARGV: now_us, interval_us, burst. Returns {allowed, wait_us, remaining}.
GCRA_LUA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = interval * (tonumber(ARGV[3]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then
  return {0, wait, 0}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0, math.floor((tolerance + interval - (new_tat - now)) / interval)}
"""
_GCRA_SHA = hashlib.sha1(GCRA_LUA.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    #: Whole seconds to wait before the next request can pass (0 when allowed).
    retry_after_s: int
    #: Requests that could still pass right now (0 when refused).
    remaining: int
    #: True when Redis could not be asked and the worker's own count decided (``LocalLimiter``).
    degraded: bool = False


def gcra(tat_us: int | None, now_us: int, interval_us: int, burst: int) -> tuple[bool, int | None, int, int]:
    """The Lua script's decision in Python: ``(allowed, new_tat_us, wait_us, remaining)``.

    ``new_tat_us`` is ``None`` when refused (nothing is stored). Tests hold the script to it.
    """
    tolerance = interval_us * (burst - 1)
    tat = max(tat_us or 0, now_us)
    wait = tat - tolerance - now_us
    if wait > 0:
        return False, None, wait, 0
    new_tat = tat + interval_us
    return True, new_tat, 0, (tolerance + interval_us - (new_tat - now_us)) // interval_us


def _decision(allowed: bool, wait_us: int, remaining: int) -> RateDecision:
    if allowed:
        return RateDecision(True, 0, remaining)
    return RateDecision(False, max(1, math.ceil(wait_us / 1_000_000)), 0)


def _micros(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("rate limiting needs a timezone-aware time")
    return int(at.timestamp() * 1_000_000)


class RateLimiter:
    """``acquire(subject, per_minute, now)`` for any subject: an API key name, ``provider:typeform``, …"""

    def __init__(self, client: Any, *, prefix: str = "leadflow:", timeout_s: float = 0.25,
                 on_degraded: Callable[[str], None] = lambda op: None, guard: RedisGuard | None = None,
                 max_local_subjects: int = 10_000) -> None:
        # ``client`` is a redis.asyncio.Redis; typed loosely because redis-py's eval signatures
        # are overloaded for the sync and async clients alike.
        self._redis = client
        self._prefix = prefix
        self._timeout = timeout_s
        self._on_degraded = on_degraded
        self.guard = guard or guard_for(client)  # shared with the client's other users
        #: The count while Redis cannot answer: per worker, from a full allowance. API keys and
        #: ``provider:*`` only (a set the config bounds); ``FailedAuthLimit`` keeps its addresses in its
        #: own, so that wrong keys from many addresses cannot push a key's count out (finding 6).
        self._local = LocalLimiter(max_local_subjects)

    async def acquire(self, subject: str, per_minute: int, now: datetime, *,
                      local: LocalLimiter | None = None) -> RateDecision:
        """Take one request from ``subject``'s allowance of ``per_minute`` (burst = ``per_minute``);
        counted in ``local`` (the limiter's own by default) while Redis cannot answer."""
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        interval = max(1, _MINUTE_US // per_minute)
        args = (_micros(now), interval, per_minute)
        key = f"{self._prefix}rate:{subject}"
        try:
            reply = await self.guard.call("rate_limit", lambda: self._eval(key, args), self._timeout)
            allowed, wait_us, remaining = (int(x) for x in reply)
        except RedisUnavailable:
            self._on_degraded("rate_limit")
            decided = (self._local if local is None else local).acquire(subject, per_minute, now)
            return RateDecision(decided.allowed, decided.retry_after_s, decided.remaining, degraded=True)
        return _decision(bool(allowed), wait_us, remaining)

    async def peek(self, subject: str, per_minute: int, now: datetime, *, operation: str) -> RateDecision | None:
        """Whether ``acquire`` would let one more through now, taking nothing; ``None`` when Redis
        cannot answer (reported as ``operation`` to ``on_degraded``). One GET of ``subject``'s state."""
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        key = f"{self._prefix}rate:{subject}"
        try:
            stored = await self.guard.call(operation, lambda: self._redis.get(key), self._timeout)
            tat = int(stored) if stored is not None else None
        except (RedisUnavailable, ValueError):
            self._on_degraded(operation)
            return None
        allowed, _, wait_us, remaining = gcra(tat, _micros(now), max(1, _MINUTE_US // per_minute), per_minute)
        return _decision(allowed, wait_us, remaining)

    async def _eval(self, key: str, args: tuple[int, int, int]) -> Any:
        try:
            return await self._redis.evalsha(_GCRA_SHA, 1, key, *args)
        except NoScriptError:
            # First use on this server (or after SCRIPT FLUSH): EVAL loads it for next time.
            return await self._redis.eval(GCRA_LUA, 1, key, *args)


class LocalLimiter:
    """``RateLimiter.acquire`` in this process's memory, over the same ``gcra``: for a limit that must
    hold while Redis is down. Tracks at most ``max_subjects``: past that, the one used least recently
    goes (it gets a full allowance if it comes back), in O(1): an ``OrderedDict`` in order of use."""

    def __init__(self, max_subjects: int = 10_000) -> None:
        if max_subjects < 1:
            raise ValueError("max_subjects must be at least 1")
        self._tats: OrderedDict[str, int] = OrderedDict()
        self._max = max_subjects

    def __len__(self) -> int:
        return len(self._tats)

    def acquire(self, subject: str, per_minute: int, now: datetime) -> RateDecision:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        tat = self._tats.get(subject)
        if tat is not None:
            self._tats.move_to_end(subject)  # used now, refused or not: the last to go
        allowed, new_tat, wait_us, remaining = gcra(tat, _micros(now), max(1, _MINUTE_US // per_minute), per_minute)
        if not allowed:
            return _decision(False, wait_us, 0)
        assert new_tat is not None
        self._tats[subject] = new_tat
        if len(self._tats) > self._max:
            self._tats.popitem(last=False)
        return RateDecision(True, 0, remaining)


class FailedAuthLimit:
    """At most ``per_minute`` failed authentications per client address (a burst of as many).

    ``failed`` counts one (in Redis through ``limiter``, shared by every worker; in this process
    when there is no limiter or Redis cannot answer). Once an address is over, its requests that
    carry a key, right or wrong, are refused until the ``Retry-After`` it was given: answering a
    right key while refusing wrong ones would tell a guesser which one was right.

    The block is the count's own state in Redis, so every worker sees it the moment the allowance
    is spent, and it ends with the count's TTL: ``shared_block`` asks Redis (one GET) for a request
    with a right key; a wrong one needs no question, its ``failed`` is refused by the same count.
    Each worker also remembers the addresses it found over (``blocked_for``, no Redis call), and
    is all there is while Redis cannot answer: then the limit holds per worker (the limiter's own
    ``LocalLimiter``), and the worker's ``RedisGuard`` stops asking Redis for a while after a failed
    question, so a hung Redis slows one request in that span, not every one.
    """

    def __init__(self, per_minute: int = 30, *, max_addresses: int = 10_000) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        #: The count while Redis cannot answer (or without a limiter): addresses only, never the
        #: limiter's API keys, which a flood of addresses would otherwise push out (finding 6).
        self._local = LocalLimiter(max_addresses)
        self._blocked: OrderedDict[str, int] = OrderedDict()  # address -> until, in microseconds, oldest first
        self._max = max_addresses

    def blocked_for(self, address: str, now: datetime) -> int | None:
        """Whole seconds ``address`` is still refused as this worker knows, or ``None`` (no Redis call)."""
        until = self._blocked.get(address)
        if until is None:
            return None
        left = until - _micros(now)
        if left <= 0:
            del self._blocked[address]
            return None
        return max(1, math.ceil(left / 1_000_000))

    async def shared_block(self, address: str, now: datetime, limiter: RateLimiter | None) -> int | None:
        """Whole seconds ``address`` is refused because its failures, counted in Redis by any worker,
        are over the limit; ``None`` when they are not, or when Redis cannot say (this worker's own
        ``blocked_for`` still holds then)."""
        if limiter is None:
            return None
        decision = await limiter.peek(self._subject(address), self.per_minute, now, operation="failed_auth_block")
        if decision is None or decision.allowed:
            return None
        self._block(address, _micros(now), decision.retry_after_s)
        return decision.retry_after_s

    async def failed(self, address: str, now: datetime, limiter: RateLimiter | None) -> RateDecision:
        """Count one failed authentication from ``address``; refused: it is blocked for ``retry_after_s``."""
        subject = self._subject(address)
        if limiter is not None:  # in this worker's memory while Redis cannot answer (this limit's own)
            decision = await limiter.acquire(subject, self.per_minute, now, local=self._local)
        else:
            decision = self._local.acquire(subject, self.per_minute, now)
        if not decision.allowed:
            self._block(address, _micros(now), decision.retry_after_s)
        return decision

    @staticmethod
    def _subject(address: str) -> str:
        return f"auth-failures:{address}"

    def _block(self, address: str, now_us: int, seconds: int) -> None:
        self._blocked.pop(address, None)  # re-inserted last: the order is that of the blocks
        self._blocked[address] = now_us + seconds * 1_000_000
        if len(self._blocked) > self._max:
            self._blocked.popitem(last=False)  # the oldest block, the first to end

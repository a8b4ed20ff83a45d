"""Deliver signed Standard Webhooks to reps' endpoints: one attempt per call by default.

The retry schedule is durable and lives outside (``rules/delivery.py``, the notifier's
backlog table); ``retry_delays`` allows quick in-process retries for callers without one.
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Final

import aiohttp
from yarl import URL

from connectors.netguard import (
    DestinationRefused,
    DestinationUnresolved,
    Resolver,
    check_destination,
    system_resolve,
)
from connectors.webhook_signing import (
    generate_secret,
    sign,
    signed_headers,
    validate_msg_id,
    validate_secret,
)

__all__ = [
    "DeliveryResult",
    "OutboundWebhook",
    "WebhookSender",
    # Re-exported so callers need one import for everything webhook-shaped.
    "generate_secret",
    "sign",
    "signed_headers",
    "validate_secret",
]

logger = logging.getLogger(__name__)

# Enough of a response body to let a small answer return its connection to the pool; anything
# longer is cut off (the connection is closed) rather than buffered: we never use the body.
_DRAIN_LIMIT: Final = 64 * 1024
_DELTA_SECONDS: Final = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True, slots=True)
class OutboundWebhook:
    """One message to one endpoint; ``webhook_id`` is deterministic, so a replay is the same message."""

    webhook_id: str
    event_type: str
    # Hidden from repr: the URL's query may carry a token, the secret and body must never be logged.
    url: str = field(repr=False)
    secret: str = field(repr=False)
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How a delivery ended; ``deliver`` returns this instead of raising.

    ``gave_up_reason`` is set when retrying can never help (410, other 4xx, refused destination,
    invalid message): dead-letter it. A failure without it is transient: the caller schedules
    a durable retry (see ``retryable``).

    ``our_fault``: the delivery failed on our side before the receiver had a say (a message we
    built wrong; the caller sets it for an exception in its own code). It tells nothing about the
    endpoint, so the endpoint's circuit breaker must not count it, as a failure or as a success:
    a bug of ours would otherwise open the circuit of a healthy rep. It is retried or
    dead-lettered like any other failure.
    """

    webhook_id: str
    delivered: bool
    attempts: int  # HTTP requests sent
    status: int | None  # of the last attempt; None when it got no response
    error: str | None  # the last attempt's failure, safe to log (no URL query, body or secret)
    duration_s: float
    gave_up_reason: str | None
    our_fault: bool = False

    @property
    def retryable(self) -> bool:
        """Failed, but a later attempt may succeed."""
        return not self.delivered and self.gave_up_reason is None


@dataclass(frozen=True, slots=True)
class _Attempt:
    status: int | None = None
    error: str | None = None
    gave_up_reason: str | None = None
    retry_after_s: float | None = None


class WebhookSender:
    """Sends ``OutboundWebhook`` messages through the process's one ``ClientSession``.

    Worst case, one ``deliver`` takes ``(len(retry_delays) + 1) * timeout_s + sum(retry_delays)``
    (``timeout_s`` with the default of no in-process retries): size batches for it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        allow_private: bool,
        timeout_s: float = 10.0,
        retry_delays: tuple[float, ...] = (),
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        resolver: Resolver = system_resolve,
    ) -> None:
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number of seconds, not {timeout_s!r}")
        if not all(delay >= 0 and math.isfinite(delay) for delay in retry_delays):
            raise ValueError(f"retry_delays must be non-negative seconds, not {retry_delays!r}")
        self._session = session
        self._allow_private = allow_private
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retry_delays = retry_delays
        self._max_delay = max(retry_delays, default=0.0)
        self._sleep = sleep
        self._clock = clock  # unix seconds: stamps each attempt and dates Retry-After
        self._resolver = resolver

    async def deliver(self, msg: OutboundWebhook) -> DeliveryResult:
        """Deliver ``msg``, retrying transient failures on ``retry_delays``; never raises for a failure."""
        started = time.monotonic()
        host = _host_for_logs(msg.url)

        def result(attempts: int, last: _Attempt, *, delivered: bool = False,
                   our_fault: bool = False) -> DeliveryResult:
            return DeliveryResult(
                webhook_id=msg.webhook_id,
                delivered=delivered,
                attempts=attempts,
                status=last.status,
                error=last.error,
                duration_s=time.monotonic() - started,
                gave_up_reason=last.gave_up_reason,
                our_fault=our_fault,
            )

        try:
            validate_msg_id(msg.webhook_id)
            validate_secret(msg.secret)
            try:
                # Parsed once, so the URL that was checked is the URL requested.
                url = URL(msg.url)
            except (ValueError, TypeError):
                # Not the parser's message: it may quote the URL, query string and all.
                raise ValueError("URL is not valid") from None
            await check_destination(url, allow_private=self._allow_private, resolver=self._resolver)
        except (ValueError, DestinationRefused) as exc:
            # Nothing was sent; the message or its endpoint must be fixed, not retried.
            reason = str(exc) if isinstance(exc, DestinationRefused) else f"invalid message: {exc}"
            self._log_end(msg, host, 0, None, reason, gave_up=True)
            # A refused destination is the endpoint's own address; a message we built wrong is ours.
            return result(0, _Attempt(error=reason, gave_up_reason=reason),
                          our_fault=not isinstance(exc, DestinationRefused))
        except DestinationUnresolved as exc:
            # DNS trouble rarely clears within the quick-retry window; leave it to the durable one.
            self._log_end(msg, host, 0, None, str(exc), gave_up=False)
            return result(0, _Attempt(error=str(exc)))

        attempts = 0
        for delay in (*self._retry_delays, None):
            attempts += 1
            last = await self._attempt(msg, url, host, attempts)
            if last.status is not None and 200 <= last.status < 300:
                logger.info(
                    "webhook delivered webhook_id=%s event_type=%s host=%s status=%s attempt=%s",
                    msg.webhook_id, msg.event_type, host, last.status, attempts,
                )
                return result(attempts, last, delivered=True)
            if last.gave_up_reason is not None or delay is None:
                break
            if last.retry_after_s is not None:
                # Wait at least as long as asked, but never stall the batch past our own schedule.
                delay = max(delay, min(last.retry_after_s, self._max_delay))
            await self._sleep(delay)
        self._log_end(msg, host, attempts, last.status, last.error, gave_up=last.gave_up_reason is not None)
        return result(attempts, last)

    async def _attempt(self, msg: OutboundWebhook, url: URL, host: str, attempt: int) -> _Attempt:
        # Same webhook-id on every attempt (receivers de-duplicate on it), fresh timestamp and
        # signature each time (receivers reject stale timestamps).
        headers = signed_headers(msg.secret, msg.webhook_id, int(self._clock()), msg.body)
        try:
            async with self._session.post(
                url, data=msg.body, headers=headers, allow_redirects=False, timeout=self._timeout
            ) as response:
                await _drain(response)
                status = response.status
                retry_after = _retry_after_s(response.headers.get("Retry-After"), self._clock())
        except DestinationRefused as exc:  # from a GuardedResolver on the session (DNS rebinding)
            return _Attempt(error=str(exc), gave_up_reason=str(exc))
        except TimeoutError:
            outcome = _Attempt(error=f"timeout after {self._timeout_s}s")
        except aiohttp.InvalidURL:
            return _Attempt(error="invalid URL", gave_up_reason="invalid URL")
        except aiohttp.ClientConnectorError as exc:
            outcome = _Attempt(error=f"connection failed: {exc.os_error.strerror or exc.os_error}")
        except (aiohttp.ClientError, OSError) as exc:
            # Only the type: some aiohttp errors quote the full URL, query string included.
            outcome = _Attempt(error=f"request failed: {type(exc).__name__}")
        else:
            outcome = _judge(status, retry_after)
        if outcome.error is not None:
            logger.warning(
                "webhook attempt failed webhook_id=%s event_type=%s host=%s status=%s attempt=%s error=%s",
                msg.webhook_id, msg.event_type, host, outcome.status, attempt, outcome.error,
            )
        return outcome

    def _log_end(
        self, msg: OutboundWebhook, host: str, attempts: int, status: int | None,
        error: str | None, *, gave_up: bool,
    ) -> None:
        logger.warning(
            "webhook not delivered (%s) webhook_id=%s event_type=%s host=%s status=%s attempts=%s error=%s",
            "permanent" if gave_up else "will retry later",
            msg.webhook_id, msg.event_type, host, status, attempts, error,
        )


def _judge(status: int, retry_after_s: float | None) -> _Attempt:
    """Standard Webhooks semantics for a response status."""
    if 200 <= status < 300:
        return _Attempt(status=status)
    if status == 410:
        # The receiver's documented way of saying "unsubscribe me".
        return _Attempt(status=status, error="HTTP 410", gave_up_reason="endpoint gone (410)")
    if 400 <= status < 500 and status not in (408, 429):
        reason = f"rejected by endpoint ({status})"
        return _Attempt(status=status, error=f"HTTP {status}", gave_up_reason=reason)
    # 408, 429, 5xx, and 3xx: redirects are not followed (they could lead anywhere, including
    # past the SSRF guard), so a redirect is a failure the endpoint's owner must fix.
    error = f"HTTP {status} (redirects are not followed)" if 300 <= status < 400 else f"HTTP {status}"
    return _Attempt(status=status, error=error, retry_after_s=retry_after_s)


def _retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait per a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110: HTTP-dates are always GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


async def _drain(response: aiohttp.ClientResponse) -> None:
    remaining = _DRAIN_LIMIT
    while remaining > 0 and (chunk := await response.content.read(remaining)):
        remaining -= len(chunk)


def _host_for_logs(url: str) -> str:
    try:
        return URL(url).host or "-"
    except (ValueError, TypeError, UnicodeError):
        return "-"

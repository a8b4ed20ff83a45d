"""Refuse writes at once while Kafka is known not to take them; let one probe write find out when it does.

Without it every request of a Kafka outage waited out the whole acknowledgement bound before its
``503``: clients and the server's connections were tied up for nothing. The gate is a circuit
breaker fed by the API's own writes, not a guess about the producer's connections (an idle
connection is closed after a while, which says nothing about the broker):

* **closed** (Kafka took the last write): every write goes.
* **open** (the last write failed or timed out, less than ``cooldown_s`` ago): refused at once,
  nothing sent, so the answer can truthfully say *not stored*.
* **half open** (``cooldown_s`` after the failure): one write goes, the probe; the others are
  still refused until it is answered. Its success closes the gate, its failure opens it again.

A refusal never follows a ``202``: the gate only ever answers *no* before anything is sent.

A worker that writes nothing through the API (a quiet night) would never learn of an outage
this way: the engine then checks the broker itself when nothing was acknowledged for a while
(``last_ok``), and a failed check opens the gate as a failed write does (``check_failed``).

The gate also decides readiness (``unready_for``): from a write Kafka did not take until Kafka is
seen answering again, the worker is not ready, so a load balancer stops sending it captures it
could only refuse. Once not ready it gets no writes to probe with, so something else must find
Kafka back: the engine's check of the broker (``answered``) makes it ready again, and the next
write, the gate's probe, then closes the gate. A check that began before the last failed write
proves nothing about it (``failures`` tells them apart).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from leadflow.errors import TransientError

__all__ = ["WriteGate", "WritesPaused", "Ticket"]


class WritesPaused(TransientError):
    """Not sent: Kafka did not take this worker's last write. ``retry_after_s``: when to try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class Ticket:
    """One admitted write; report its outcome exactly once (``ok``, ``failed`` or ``abandoned``)."""

    probe: bool


class WriteGate:
    def __init__(self, cooldown_s: float, now: Callable[[], float] = time.monotonic) -> None:
        #: Seconds after a failed write before the next write is let through to probe Kafka.
        self.cooldown_s = cooldown_s
        self._now = now
        self._failed_at: float | None = None  # the last failure; None: closed
        self._down_since: float | None = None  # the first failure since Kafka last took a write
        self._probing = False
        #: Writes Kafka did not take, ever: a check of the broker stamps the count it began at.
        self.failures = 0
        self._answered = False  # a check begun after the last failure found Kafka answering
        #: When Kafka last took a write or answered an idle check (``None``: not yet).
        self.last_ok: float | None = None

    def admit(self) -> Ticket:
        """A ticket for one write, or ``WritesPaused`` (nothing may be sent)."""
        if self._failed_at is None:
            return Ticket(probe=False)
        wait = self._failed_at + self.cooldown_s - self._now()
        if wait <= 0 and not self._probing:
            self._probing = True
            return Ticket(probe=True)
        since = self._now() - self._failed_at
        raise WritesPaused(f"Kafka did not take this worker's last write ({since:.0f} s ago); "
                           f"nothing was sent", retry_after_s=max(1, math.ceil(wait)))

    def ok(self, ticket: Ticket) -> None:
        """Kafka acknowledged the write: it takes writes again, whatever the other writes saw."""
        self.last_ok = self._now()
        self._failed_at = self._down_since = None
        self._answered = False
        self._release(ticket)

    def failed(self, ticket: Ticket) -> None:
        """Kafka refused the write or did not acknowledge it within the bound."""
        self._failed_at = self._now()
        if self._down_since is None:
            self._down_since = self._failed_at
        self.failures += 1
        self._answered = False
        self._release(ticket)

    def quiet_for(self) -> float | None:
        """Seconds since Kafka last took a write or answered a check (``None``: never yet)."""
        return None if self.last_ok is None else self._now() - self.last_ok

    def heard(self) -> None:
        """A check of the broker found Kafka answering (no write went: the gate stays as it is)."""
        self.last_ok = self._now()

    def check_failed(self) -> None:
        """A check of the broker, made while no write had failed (an idle worker: nights, weekends,
        only timers writing), found Kafka not answering: not ready, as after a failed write."""
        self._failed_at = self._now()
        if self._down_since is None:
            self._down_since = self._failed_at
        self.failures += 1
        self._answered = False

    def abandoned(self, ticket: Ticket) -> None:
        """The write was cancelled before its outcome was known: no news about Kafka."""
        self._release(ticket)

    def _release(self, ticket: Ticket) -> None:
        if ticket.probe:
            self._probing = False

    def failing_for(self) -> float | None:
        """Seconds since the first failed write of this outage; ``None`` while Kafka takes writes."""
        return None if self._down_since is None else self._now() - self._down_since

    def answered(self, failures_before: int) -> None:
        """A check of the broker, begun when ``failures`` was ``failures_before``, found Kafka answering.

        Ready again, unless a write failed since the check began. Writes still wait for their
        probe: only a write Kafka acknowledged closes the gate.
        """
        if self._failed_at is not None and failures_before == self.failures:
            self._answered = True

    def unready_for(self) -> float | None:
        """Seconds since the first failed write of this outage while Kafka has not been seen taking
        writes or answering since the last one (readiness fails); ``None``: ready."""
        if self._answered or self._down_since is None:
            return None
        return self._now() - self._down_since

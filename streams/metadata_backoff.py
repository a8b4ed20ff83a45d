"""A failed metadata refresh is retried after a backoff, not at once.

aiokafka refreshes a client's cluster metadata in one background task; whoever needs fresh
metadata calls ``force_metadata_update()`` and awaits the answer. Several of its loops do that
in a cycle with nothing else in between: the producer's sender while a batch waits for a
partition without a leader, the fetcher while an assigned partition has none, the group
coordinator. With Kafka stopped, a refresh fails at once (connection refused, in ~0.2 ms), so
such a loop spins: two ERROR lines per turn ("Unable connect to node with id 1", "Unable to
update metadata from [1]") and a core of CPU.

It takes one metadata answer without leaders. Kafka stopping cleanly moves each partition's
leadership away from itself; with one broker there is nowhere to go and its last answers name
leader -1. A produce that gets NotLeaderForPartition in that window refreshes, learns "no
leader", and its batch waits for one: 4,500 refreshes a second until Kafka was back, 333,441 log
lines and a busy core in a 37 s outage (session 15's audit; a plain aiokafka producer does the
same, with or without ``streams/fetch_sessions.py``).

Kafka's Java client backs off between metadata attempts (``retry.backoff.ms``, growing to
``retry.backoff.max.ms`` since KIP-580). Here a client's refresh that fails waits before the
next attempt: the client's ``retry_backoff_ms`` (100 ms) after the first failure, doubling to
:data:`BACKOFF_MAX_S`, ±20% jitter; a refresh that succeeds resets it. The loops above keep
their logic; they just await a refresh that now takes its backoff. A refresh that succeeds is
not held back, so a worker learns of new topics, leaders and members as quickly as before, and
Kafka coming back is noticed within a second.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from aiokafka.client import AIOKafkaClient

__all__ = ["BACKOFF_MAX_S", "JITTER", "MetadataPace", "install", "paced_metadata_update"]

#: The longest wait between two failed refreshes of one client (Java's ``retry.backoff.max.ms``).
BACKOFF_MAX_S = 1.0
#: The wait is drawn from ±this share of the backoff, so clients do not refresh in step.
JITTER = 0.2

_unpaced = AIOKafkaClient._metadata_update


class MetadataPace:
    """When a client may next ask for metadata: at once, or a backoff after a failed refresh."""

    def __init__(self, backoff_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff_s = max(backoff_s, 0.001)
        self.clock = clock
        self.failures = 0
        self.next_at = 0.0

    def delay(self) -> float:
        """Seconds to wait before the next refresh (0 unless the last one failed)."""
        return max(0.0, self.next_at - self.clock())

    def done(self, updated: bool) -> None:
        if updated:
            self.failures, self.next_at = 0, 0.0
            return
        self.failures += 1
        backoff = min(self.backoff_s * 2 ** min(self.failures - 1, 30), BACKOFF_MAX_S)
        self.next_at = self.clock() + backoff * random.uniform(1 - JITTER, 1 + JITTER)


async def paced_metadata_update(self: Any, cluster_metadata: Any, topics: Any) -> bool:
    """``AIOKafkaClient._metadata_update``, waiting out the backoff of a failed one first."""
    pace = self.__dict__.get("_leadflow_md_pace")
    if pace is None:
        pace = self._leadflow_md_pace = MetadataPace(self._retry_backoff)
    delay = pace.delay()
    if delay:
        await asyncio.sleep(delay)
    updated = bool(await _unpaced(self, cluster_metadata, topics))
    pace.done(updated)
    return updated


def install() -> None:
    """Pace the metadata refreshes of every aiokafka client in this process (idempotent)."""
    AIOKafkaClient._metadata_update = paced_metadata_update

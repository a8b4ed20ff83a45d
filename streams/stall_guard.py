"""A worker whose event loop stalled longer than its Kafka session exits before it writes anything.

aiokafka's heartbeats run on the worker's event loop (``streams/inline_consumer.py``). A stall
of the whole process longer than ``broker_session_timeout`` (10 s, ``streams/app.py``) — SIGSTOP,
a VM or container freeze, swapping — means the broker has expired the session for certain:
another worker owns this worker's partitions and may already have written their tables. The
frozen worker does not know it yet. On waking it would finish the batch it was in, send its
messages and write its tables' changelogs after the new owner's records (a *zombie write*): the
deploy audit of session 16 saw exactly that (docs/RELIABILITY.md, "Paused workers"). Kafka
fences a zombie's offset commits (old generation) but not its produce requests, and without
transactions nothing else fences them.

So the worker checks, and exits at once (``os._exit(EXIT_STALLED)``, no cleanup, nothing sent)
when it finds that its loop was stalled longer than the session:

* a tick task notes the time every ``TICK_S``;
* every produce request is checked in ``AIOKafkaConnection.send``, the last Python code before
  its bytes reach the socket: records that agents, tables and the API handed to the producer
  before the freeze, still in its buffers, are never sent after it either;
* every table write and delete is checked before it touches the store: Faust's
  ``Table.__setitem__``/``__delitem__`` (``ManagedUserDict``) first sends the changelog record
  (``on_key_set`` -> ``Collection.send_changelog``, which only buffers it) and then writes the
  local store, so a check at the top of ``Collection.send_changelog`` (every table: ours,
  Faust's plain and windowed ones) stops a woken agent's batch before its first local write. A
  RocksDB write whose changelog record never leaves would outlive the restart as a phantom the
  new owner never decided;
* the notifier checks before each webhook it delivers (``streams/agents/notifier.py``): a POST
  is a write to the outside world that no recovery takes back;
* the tick task itself and ``take_ready`` (before an agent gets a batch) check too, so an idle
  worker also exits and no agent starts a batch on stale state.

Not covered (a woken worker reaches them before its next check, within one tick or its current
batch): Redis writes, API reads answered from its tables, and bytes already in asyncio's or the
kernel's socket buffers (a SIGSTOP lets the kernel send them while stopped; a frozen VM sends
them after waking).

Exiting is a ``kill -9`` (the crash tests prove that path safe: offsets are committed only after
their writes, changelogs recover, ``streams/changelog_offsets.py`` keeps a gap readable); the
supervisor (systemd, Kubernetes, ``leadflow run``) starts the worker again and it rejoins.
Rejoining without exiting would need every agent's in-flight batch, Faust's producer buffer and
aiokafka's accumulator emptied without sending and without acking: internals of three libraries,
for a path that is rare and that a restart covers in seconds.

A stall counts only when it is certainly longer than the session: the tick was due ``TICK_S``
after the last one, so the loop was frozen at least ``gap - TICK_S``; a stall shorter than the
session changes nothing. The clock is ``CLOCK_BOOTTIME`` where there is one (it keeps counting
while the host is suspended; the broker's clock does too).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.conn import AIOKafkaConnection
from faust.tables.base import Collection

from streams.exit_status import EXIT_STALLED

__all__ = ["EXIT_STALLED", "TICK_S", "StallWatch", "arm", "check", "disarm", "install", "watch_loop"]

log = logging.getLogger(__name__)

#: How often the tick task notes that the loop runs.
TICK_S = 0.25
#: Kafka's produce request (API key 0): the requests a zombie must not send.
_PRODUCE = 0


def _clock() -> float:
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


@dataclass
class StallWatch:
    """When the loop last ran, and whether it has since stalled longer than the session."""

    session_s: float
    tick_s: float = TICK_S
    last: float | None = None

    def tick(self, now: float) -> None:
        self.last = now

    def stalled_for(self, now: float) -> float | None:
        """How long the loop was frozen for certain, when that is longer than the session; else ``None``."""
        if self.last is None:
            return None
        frozen = now - self.last - self.tick_s
        return frozen if frozen > self.session_s else None


_watch: StallWatch | None = None
_installed = False


def _exit(frozen: float, session_s: float) -> None:
    log.critical("this worker was paused %.1f s, longer than its %.0f s Kafka session: another worker owns its "
                 "partitions now; exiting without writing anything (status %d), restart it",
                 frozen, session_s, EXIT_STALLED)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # the exit must happen whatever a handler does
            pass
    os._exit(EXIT_STALLED)


def check(clock: Callable[[], float] = _clock, exit_: Callable[[float, float], None] | None = None) -> None:
    """Exit the process if the loop stalled longer than the session (nothing to do until ``arm``)."""
    watch = _watch
    if watch is None:
        return
    frozen = watch.stalled_for(clock())
    if frozen is not None:
        (exit_ or _exit)(frozen, watch.session_s)


def arm(session_s: float, tick_s: float = TICK_S, clock: Callable[[], float] = _clock) -> StallWatch:
    """Start watching (the tick task calls this); returns the watch."""
    global _watch
    _watch = StallWatch(session_s=session_s, tick_s=tick_s)
    _watch.tick(clock())
    return _watch


def disarm() -> None:
    """Stop watching (a stopping worker, and tests)."""
    global _watch
    _watch = None


async def watch_loop(session_s: float, tick_s: float = TICK_S) -> None:
    """The tick task: note every ``tick_s`` that the loop runs, checking first whether it stalled."""
    watch = arm(session_s, tick_s)
    try:
        while True:
            await asyncio.sleep(tick_s)
            check()
            watch.tick(_clock())
    finally:
        disarm()


def install() -> None:
    """Check before every produce request leaves for the broker, and before every table write or
    delete reaches the store (once per process)."""
    global _installed
    if _installed:
        return
    original = AIOKafkaConnection.send
    original_send_changelog = Collection.send_changelog

    def send(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        if getattr(request, "API_KEY", None) == _PRODUCE:
            check()
        return original(self, request, expect_response)

    def send_changelog(self: Any, *args: Any, **kwargs: Any) -> Any:
        check()  # Faust sends the changelog record first, then writes the store: neither happens
        return original_send_changelog(self, *args, **kwargs)

    AIOKafkaConnection.send = send
    Collection.send_changelog = send_changelog  # type: ignore[method-assign]
    _installed = True

"""A worker's stop that cannot finish ends the process at once: the ``kill -9`` path, taken on purpose.

Faust's stop waits for every agent's current batch ("Wait for streams..."), and an agent's batch
waits until Kafka has acknowledged its messages (``streams.topics.publish``, which must not give up
while the worker runs: a stalled partition is better than a lost assignment). A SIGTERM during a
Kafka outage therefore never finished, and mode ignores every signal after the first: only
SIGKILL ended the worker (the s16 review measured 75 s and three ignored signals).

Two ways out, both here:

* ``publish`` gives up when the worker is stopping and Kafka has not acknowledged its messages
  within ``STOPPING_GRACE_S``, and ends the process (``exit_now``). Nothing of that batch is acked,
  so its offsets are never committed and the commands are read again after a restart; the
  agent's table was not written either (agents publish first, then write). Raising instead would
  not do: ``take_ready`` gives a batch whose body raised to the restarted agent again (one event
  at a time, after a wait), so the stop would wait for a Kafka that does not answer, and Faust's
  stop would still wait for the unacked records of the other agents.
* Faust's last stop step, "Flush producer buffer..." (``App._producer_flush``), waits without a
  bound for the producer's records still unacknowledged: with no agent publishing at that moment
  (their batches done before Kafka went), nothing else ended the stop, which then hung until some
  timer happened to publish (a CI rehearsal, session 17: 11.4 s). ``within_grace`` bounds it by
  ``FLUSH_GRACE_S`` and exits the same way. Those records were a crash's: a commit waits for the
  changelog records sent before it, and agents wait for their messages' acks before writing.
* a signal after the stop began (``streams/worker.py``) ends the process at once.

Exiting this way is what a crash does, and the crash tests prove that path safe: offsets are
committed only after their writes, changelogs recover, RocksDB keeps its write-ahead log.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable
from typing import Any, NoReturn

__all__ = ["EXIT_FAILED", "STOPPING_GRACE_S", "exit_now", "exit_status", "signal_name", "stop_began"]

log = logging.getLogger(__name__)

#: The exit status of a stop that no signal began (a crash) and that could not finish.
EXIT_FAILED = 1
#: Once the worker is stopping, how long a send still waits for Kafka's acks. Kafka answers in
#: milliseconds when it is there; a stop should never wait long for one that is not.
STOPPING_GRACE_S = 1.0
#: How long the stop's last flush of the producer may take (longer than a send's: it is the whole
#: buffer, and a stop with Kafka there must still end cleanly).
FLUSH_GRACE_S = 5.0

#: The signal that began this process's stop (one process, one stop), for the exit status.
_signal: int | None = None


def stop_began(signum: int) -> None:
    """Note the signal that began the stop (the first one counts)."""
    global _signal
    if _signal is None:
        _signal = int(signum)


def exit_status() -> int:
    """128 + the signal that began the stop, as a shell reports a process that signal ended; else 1."""
    return EXIT_FAILED if _signal is None else 128 + _signal


def exit_now(reason: str, status: int | None = None) -> NoReturn:
    """Log ``reason`` (one line), flush the log and end the process without any cleanup."""
    code = exit_status() if status is None else status
    log.warning("%s; exiting now (status %d) without committing anything: what was not committed is read "
                "again after a restart", reason, code)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # the exit must happen whatever a handler does
            pass
    os._exit(code)


async def within_grace(step: Awaitable[Any], what: str, grace_s: float | None = None) -> None:
    """Await a stop ``step``; when it has not ended ``grace_s`` (``FLUSH_GRACE_S``) later, ``exit_now``
    (it is not cancelled: the process ends). Its own error is raised as usual."""
    grace = FLUSH_GRACE_S if grace_s is None else grace_s
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        exit_now(f"{what} had not ended {grace:g} s after it began (Kafka does not acknowledge)")
    task.result()


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on (the number itself for a signal Python does not name)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)

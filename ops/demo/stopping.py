"""SIGTERM and SIGHUP stop ``leadflow run`` the way Ctrl-C does: through its cleanup, never around it.

Python's default for SIGTERM and SIGHUP ends the process on the spot: no ``finally`` runs, so the
worker (in its own session, out of reach of the terminal's signals) and the stack the demo
started would outlive it. While ``StopSignals`` is active they instead

* cancel the demo's main task when it runs under ``asyncio.run`` (through ``run``), so every
  piece of the demo stops in order, as on Ctrl-C;
* otherwise (the stack starting, the worker warming up) raise ``StopRequested``, a
  ``KeyboardInterrupt``, so the same ``except`` and ``finally`` blocks as Ctrl-C's run.

``deferred()`` holds a stop signal, Ctrl-C included, while a process is being started (the stack,
the worker) and raises it once the block is done: a signal between fork and the caller holding
the new pid would otherwise leave a process nobody knows to stop. ``holding()`` keeps any further signal (a second Ctrl-C, a supervisor's repeated SIGTERM)
from cutting that cleanup short; the cleanup itself is bounded (``stop_process`` escalates to
SIGKILL).
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType, TracebackType
from typing import Any, TypeVar

__all__ = ["STOP_SIGNALS", "StopRequested", "StopSignals"]

T = TypeVar("T")

#: The signals that stop the demo like Ctrl-C: `kill <pid>`, a supervisor, the terminal closing.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)

_Handler = Callable[[int, FrameType | None], Any] | int | None


class StopRequested(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: stop like on Ctrl-C. ``signame`` is ``"SIGTERM"`` or ``"SIGHUP"``."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


class StopSignals:
    """Install the stop handlers for SIGTERM and SIGHUP (main thread only) for a ``with`` block."""

    def __init__(self, on_repeat: Callable[[str], None] = lambda signame: None,
                 on_deferred: Callable[[str], None] = lambda signame: None) -> None:
        #: The first stop signal's name, once one arrived (``None`` for Ctrl-C outside ``deferred``).
        self.received: str | None = None
        self._on_repeat, self._on_deferred = on_repeat, on_deferred
        self._deferring = self._pending = False
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, _Handler] = {}

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work`` in the main task; a stop signal cancels that task (``CancelledError``)."""
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            return await work
        finally:
            self._loop = self._task = None

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done, then raise ``StopRequested``."""
        previous_int = signal.signal(signal.SIGINT, self._handle)
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            signal.signal(signal.SIGINT, previous_int)
        if self._pending:
            self._pending = False
            raise StopRequested(self.received or "Ctrl-C")

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """While stopping: Ctrl-C, SIGTERM and SIGHUP only call ``on_repeat``; restored afterwards."""
        sigs = (signal.SIGINT, *STOP_SIGNALS)
        previous = {sig: signal.signal(sig, self._repeated) for sig in sigs}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _repeated(self, signum: int, frame: FrameType | None) -> None:
        self._on_repeat(signal.Signals(signum).name)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self._deferring:
            if self.received is None:
                self.received, self._pending = name, True
                self._on_deferred(name)
            return
        if self.received is not None:
            self._on_repeat(name)  # already stopping: the first signal's cleanup is under way
            return
        self.received = name
        if self._task is not None and self._loop is not None:
            # Between two bytecodes of the loop's thread: schedule the cancel, raise nothing, so
            # no coroutine is interrupted half-way (run_demo's finally blocks stop each piece).
            self._loop.call_soon_threadsafe(self._task.cancel)
            return
        raise StopRequested(name)

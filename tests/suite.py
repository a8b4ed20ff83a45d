"""The whole test suite as ``make test`` runs it: two pytest runs side by side.

The integration tests (``-m integration``: the real Kafka and Redis, in order, one at a time)
spend most of their time waiting on Kafka, workers and timers, and leave a core idle; the unit and
property tests (``-m "not integration"``) are CPU-bound. So the unit run goes beside the
integration run instead of before it, its output into a log file that is printed whole once both
have ended (live, the two would interleave). The suite fails when either run fails.

Usage: ``python -m tests.suite [pytest options...]`` (passed to both runs, e.g. ``-x`` or
``-k team``). A signal (Ctrl-C, a CI timeout's SIGTERM) is passed on to both runs, by their own
process ids; a run that has not ended 30 s later is killed. The integration run's own SIGTERM
handler stops the workers it started and the stack (tests/integration/conftest.py).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: Where the unit run writes, printed at the end.
UNIT_LOG = REPO / ".state" / "test-logs" / "unit.log"
#: pytest's exit status when no test was selected.
NO_TESTS_COLLECTED = 5
#: How long a run may take to end after the signal was passed on, before it is killed.
STOP_GRACE_S = 30.0


def _pytest(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args]


#: How much lower the unit run's CPU priority is (``nice``).
UNIT_NICENESS = 10
#: How often the runner looks whether the runs have ended.
POLL_S = 0.2


class Runs:
    """Child processes run side by side until each has ended; a signal is passed on to them.

    The signal handler only notes the signal and sends SIGTERM to the runs not yet reaped (by
    pid); waiting happens in ``wait``, outside the handler: a handler that waited would block on
    the lock that the interrupted ``Popen.wait`` holds, for ever.
    """

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.signalled: int | None = None

    def start(self, *args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(*args, **kwargs)
        self.procs.append(proc)
        if self.signalled is not None:  # a signal came while it was starting
            self._terminate(proc)
        return proc

    def passed_on(self, signum: int, frame: FrameType | None) -> None:
        # SIGTERM to every run, also for Ctrl-C: the integration run's SIGTERM handler stops its
        # workers and the stack for sure, where a second SIGINT could cut its teardown short.
        if self.signalled is None:
            self.signalled = signum
        for proc in self.procs:
            self._terminate(proc)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes]) -> None:
        if proc.returncode is None:  # not reaped yet, so its pid is still its own
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wait(self, ended: dict[int, float] | None = None) -> list[int]:
        """Wait until every run has ended (killing those still running ``STOP_GRACE_S`` after a
        signal); their statuses, a run ended by signal N as ``128 + N``. ``ended`` gets each run's
        end time by pid."""
        deadline: float | None = None
        while True:
            running = [proc for proc in self.procs if proc.poll() is None]
            for proc in self.procs:
                if proc.returncode is not None and ended is not None:
                    ended.setdefault(proc.pid, time.monotonic())
            if not running:
                break
            if self.signalled is not None:
                deadline = deadline or time.monotonic() + STOP_GRACE_S
                if time.monotonic() > deadline:
                    for proc in running:
                        proc.kill()
            time.sleep(POLL_S)
        return [_status(proc.returncode) for proc in self.procs]


def _lower_priority() -> None:
    os.nice(UNIT_NICENESS)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str]) -> int:
    UNIT_LOG.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs = Runs()
    signal.signal(signal.SIGTERM, runs.passed_on)
    signal.signal(signal.SIGINT, runs.passed_on)
    with UNIT_LOG.open("wb") as log:
        # The unit run leaves .pytest_cache to the integration run: two writers would race on it.
        # At a lower CPU priority: the integration tests wait on timers and workers, and are the longer
        # run; the unit run takes what they leave.
        unit = runs.start(_pytest("-m", "not integration", "-p", "no:cacheprovider", "--durations=10", *argv),
                          cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          preexec_fn=_lower_priority)
    print(f"unit and property tests: running beside the integration tests (pid {unit.pid}), "
          f"output in {UNIT_LOG.relative_to(REPO)}, shown when both have ended", flush=True)
    integration = runs.start(_pytest("-m", "integration", "--durations=25", *argv), cwd=REPO)
    ended: dict[int, float] = {}
    unit_status, integration_status = runs.wait(ended)
    integration_s = ended.get(integration.pid, time.monotonic()) - started
    print(f"\n{'=' * 30} unit and property tests ({UNIT_LOG.relative_to(REPO)}) {'=' * 30}", flush=True)
    sys.stdout.buffer.write(UNIT_LOG.read_bytes())
    sys.stdout.buffer.flush()
    total_s = time.monotonic() - started
    status = 128 + runs.signalled if runs.signalled is not None else _overall(integration_status, unit_status)
    print(f"\nsuite {'passed' if status == 0 else 'FAILED'}: integration run exit {integration_status} "
          f"({integration_s / 60:.1f} min), unit run exit {unit_status}; {total_s / 60:.1f} min in all"
          + (f"; stopped by signal {runs.signalled}" if runs.signalled is not None else ""), flush=True)
    return status


def _overall(*statuses: int) -> int:
    """The suite's status: a run that selected no test (pytest's 5, e.g. ``-k`` matching only
    unit tests) is no failure as long as the other run ran some."""
    ran = [status for status in statuses if status != NO_TESTS_COLLECTED]
    if not ran:
        return NO_TESTS_COLLECTED
    return next((status for status in ran if status != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

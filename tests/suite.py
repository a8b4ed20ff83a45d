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

REPO = Path(__file__).resolve().parents[1]
#: Where the unit run writes, printed at the end.
UNIT_LOG = REPO / ".state" / "test-logs" / "unit.log"
#: pytest's exit status when no test was selected.
NO_TESTS_COLLECTED = 5
#: How long a run may take to end after the signal was passed on, before it is killed.
STOP_GRACE_S = 30.0


def _pytest(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args]


def _stop(runs: list[subprocess.Popen[bytes]], signum: int) -> None:
    for run in runs:
        if run.poll() is None:
            run.send_signal(signum)
    deadline = time.monotonic() + STOP_GRACE_S
    for run in runs:
        try:
            run.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()


def main(argv: list[str]) -> int:
    UNIT_LOG.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with UNIT_LOG.open("wb") as log:
        # The unit run leaves .pytest_cache to the integration run: two writers would race on it.
        unit = subprocess.Popen(_pytest("-m", "not integration", "-p", "no:cacheprovider", "--durations=10", *argv),
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    print(f"unit and property tests: running beside the integration tests (pid {unit.pid}), "
          f"output in {UNIT_LOG.relative_to(REPO)}, shown when both have ended", flush=True)
    integration = subprocess.Popen(_pytest("-m", "integration", "--durations=25", *argv), cwd=REPO)
    runs = [integration, unit]

    def passed_on(signum: int, frame: FrameType | None) -> None:
        # SIGTERM to both, also for Ctrl-C: the integration run's SIGTERM handler stops its
        # workers and the stack for sure, where a second SIGINT could cut its teardown short.
        _stop(runs, signal.SIGTERM)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, passed_on)
    signal.signal(signal.SIGINT, passed_on)
    integration_status = integration.wait()
    integration_s = time.monotonic() - started
    unit_status = unit.wait()
    print(f"\n{'=' * 30} unit and property tests ({UNIT_LOG.relative_to(REPO)}) {'=' * 30}", flush=True)
    sys.stdout.flush()
    sys.stdout.buffer.write(UNIT_LOG.read_bytes())
    sys.stdout.buffer.flush()
    total_s = time.monotonic() - started
    status = _overall(integration_status, unit_status)
    print(f"\nsuite {'passed' if status == 0 else 'FAILED'}: integration run exit {integration_status} "
          f"({integration_s / 60:.1f} min), unit run exit {unit_status}; {total_s / 60:.1f} min in all")
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

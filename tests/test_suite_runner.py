"""``make test``'s runner (tests/suite.py): how the two runs' statuses make the suite's."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.suite import NO_TESTS_COLLECTED, REPO, _overall


@pytest.mark.parametrize(("integration", "unit", "suite"), [
    (0, 0, 0),
    (1, 0, 1),
    (0, 1, 1),
    (2, 1, 2),  # an interrupted integration run says so first
    (NO_TESTS_COLLECTED, 0, 0),  # `-k` matched unit tests only
    (0, NO_TESTS_COLLECTED, 0),
    (NO_TESTS_COLLECTED, 1, 1),
    (NO_TESTS_COLLECTED, NO_TESTS_COLLECTED, NO_TESTS_COLLECTED),  # nothing ran: not a pass
])
def test_the_suite_fails_when_either_run_fails_and_passes_only_when_some_test_ran(
        integration: int, unit: int, suite: int) -> None:
    assert _overall(integration, unit) == suite


_CHILD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), sys.exit(3)))  # a teardown, then its own status
print("ready", flush=True)
time.sleep(60)
"""

_PARENT = """
import signal, subprocess, sys
from tests.suite import Runs
runs = Runs()
signal.signal(signal.SIGTERM, runs.passed_on)
signal.signal(signal.SIGINT, runs.passed_on)
children = [runs.start([sys.executable, "-c", CHILD], stdout=subprocess.PIPE) for _ in range(2)]
for child in children:
    child.stdout.readline()
print(" ".join(str(c.pid) for c in children), flush=True)
statuses = runs.wait()
print(statuses, runs.signalled, flush=True)
sys.exit(128 + runs.signalled if runs.signalled else 0)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_reaches_both_runs_and_the_runner_ends_with_their_statuses(signum: int) -> None:
    # The first version waited inside the signal handler, on the lock the interrupted wait held: it hung for ever.
    parent = subprocess.Popen([sys.executable, "-c", f"CHILD = {_CHILD!r}\n{_PARENT}"], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        sent = time.monotonic()
        parent.send_signal(signum)
        out, _ = parent.communicate(timeout=10)
        assert time.monotonic() - sent < 5
        assert parent.returncode == 128 + signum
        assert out.strip() == f"[3, 3] {int(signum)}"  # each run got SIGTERM and ended its own way
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        parent.kill()
        parent.wait()

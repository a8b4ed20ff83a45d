"""The whole test suite as ``make test`` runs it: several pytest runs side by side.

The integration tests (``-m integration``: the real Kafka and Redis, one test at a time) spend most
of their time waiting on Kafka, workers and timers, and leave the cores mostly idle; the unit and
property tests (``-m "not integration"``) are CPU-bound. So the integration files are split into
``LEADFLOW_TEST_SHARDS`` shards (default 2) of about equal length (tests/shards.py), each a pytest
run with its own stack (Kafka and Redis on ports 100 apart, its own state dir), and the unit run
goes beside them at a lower CPU priority. The first shard prints live; the others' output and the
unit run's go to log files that are printed whole once every run has ended (live, they would
interleave). The suite fails when any run fails.

Usage: ``python -m tests.suite [pytest options...]`` (passed to every run, e.g. ``-x`` or
``-k team``). A signal (Ctrl-C, a CI timeout's SIGTERM) is passed on to every run, by their own
process ids; a run that has not ended 30 s later is killed. Each integration run's own SIGTERM
handler stops the workers it started and its stack (tests/integration/conftest.py).
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

from tests import shards

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
#: The first integration shard's stack ports (tests/integration/conftest.py's defaults); shard i's
#: are ``PORT_STEP * i`` above them.
DEFAULT_KAFKA_PORT, DEFAULT_REDIS_PORT, PORT_STEP = "29092", "26379", 100


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


def shard_env(index: int, count: int, environ: dict[str, str]) -> dict[str, str]:
    """The environment of integration shard ``index``: its own stack, on ports ``PORT_STEP * index``
    above the configured ones (29092 and 26379 by default), in its own state dir."""
    kafka = int(environ.get("LEADFLOW_TEST_KAFKA_PORT", DEFAULT_KAFKA_PORT))
    redis = int(environ.get("LEADFLOW_TEST_REDIS_PORT", DEFAULT_REDIS_PORT))
    state = environ.get("LEADFLOW_TEST_STATE_DIR") or str(REPO / ".state" / "test-stack")  # empty: unset
    state = str(Path(state))  # "…/mine/" would make shard 1's dir "…/mine/-1", inside shard 0's
    return environ | {
        shards.ENV: f"{index}/{count}",
        "LEADFLOW_TEST_KAFKA_PORT": str(kafka + PORT_STEP * index),
        "LEADFLOW_TEST_REDIS_PORT": str(redis + PORT_STEP * index),
        "LEADFLOW_TEST_STATE_DIR": state if index == 0 else f"{state}-{index}",
    }


def port_clash(count: int, environ: dict[str, str]) -> str | None:
    """Why the shards' stacks would share a port (Kafka, its controller at Kafka + 1, Redis), or None."""
    owners: dict[int, str] = {}
    for index in range(count):
        env = shard_env(index, count, environ)
        kafka, redis = int(env["LEADFLOW_TEST_KAFKA_PORT"]), int(env["LEADFLOW_TEST_REDIS_PORT"])
        for port, what in ((kafka, "Kafka"), (kafka + 1, "Kafka's controller"), (redis, "Redis")):
            name = f"shard {index}'s {what}"
            if port in owners:
                return (f"{name} and {owners[port]} would both use port {port} (shard i's ports are "
                        f"{PORT_STEP}×i above LEADFLOW_TEST_KAFKA_PORT and LEADFLOW_TEST_REDIS_PORT): move one")
            owners[port] = name
    return None


def main(argv: list[str]) -> int:
    UNIT_LOG.parent.mkdir(parents=True, exist_ok=True)
    count = int(os.environ.get("LEADFLOW_TEST_SHARDS", "2"))
    if count < 1:
        print(f"LEADFLOW_TEST_SHARDS={count}: must be at least 1", file=sys.stderr)
        return 2
    if clash := port_clash(count, dict(os.environ)):
        print(clash, file=sys.stderr)
        return 2
    started = time.monotonic()
    runs = Runs()
    signal.signal(signal.SIGTERM, runs.passed_on)
    signal.signal(signal.SIGINT, runs.passed_on)
    with UNIT_LOG.open("wb") as log:
        # The unit run leaves .pytest_cache to the first integration shard: two writers would race on it.
        # At a lower CPU priority: the integration tests wait on timers and workers, and are the longer
        # run; the unit run takes what they leave.
        unit = runs.start(_pytest("-m", "not integration", "-p", "no:cacheprovider", "--durations=10", *argv),
                          cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          preexec_fn=_lower_priority)
    print(f"unit and property tests: running beside the integration tests (pid {unit.pid}), "
          f"output in {_shown(UNIT_LOG)}, shown when all runs have ended", flush=True)
    integration = []
    for index in range(count):
        env = shard_env(index, count, dict(os.environ))
        if index == 0:  # live on the terminal
            integration.append(runs.start(_pytest("-m", "integration", "--durations=25", *argv), cwd=REPO, env=env))
            continue
        with shard_log(index).open("wb") as log:
            integration.append(runs.start(
                _pytest("-m", "integration", "-p", "no:cacheprovider", "--durations=25", *argv),
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        print(f"integration shard {index}/{count}: running beside it (pid {integration[-1].pid}, Kafka on "
              f"{env['LEADFLOW_TEST_KAFKA_PORT']}), output in {_shown(shard_log(index))}", flush=True)
    ended: dict[int, float] = {}
    unit_status, *integration_status = runs.wait(ended)
    for index in range(1, count):
        _show(f"integration shard {index}/{count}", shard_log(index))
    _show("unit and property tests", UNIT_LOG)
    total_s = time.monotonic() - started
    status = 128 + runs.signalled if runs.signalled is not None else _overall(*integration_status, unit_status)
    took = ", ".join(f"{(ended.get(proc.pid, time.monotonic()) - started) / 60:.1f}" for proc in integration)
    print(f"\nsuite {'passed' if status == 0 else 'FAILED'}: integration shard{'s' if count > 1 else ''} "
          f"exit {', '.join(map(str, integration_status))} ({took} min), unit run exit {unit_status}; "
          f"{total_s / 60:.1f} min in all"
          + (f"; stopped by signal {runs.signalled}" if runs.signalled is not None else ""), flush=True)
    return status


def shard_log(index: int) -> Path:
    return UNIT_LOG.parent / f"integration-{index}.log"


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def _show(title: str, log: Path) -> None:
    print(f"\n{'=' * 30} {title} ({_shown(log)}) {'=' * 30}", flush=True)
    sys.stdout.buffer.write(log.read_bytes())
    sys.stdout.buffer.flush()


def _overall(*statuses: int) -> int:
    """The suite's status: a run that selected no test (pytest's 5, e.g. ``-k`` matching only
    unit tests, or no file of one shard) is no failure as long as another run ran some."""
    ran = [status for status in statuses if status != NO_TESTS_COLLECTED]
    if not ran:
        return NO_TESTS_COLLECTED
    return next((status for status in ran if status != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

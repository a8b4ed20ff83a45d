"""``leadflow run`` stopped by SIGTERM or SIGHUP ends its worker and its receiver, as Ctrl-C does.

The demo runs as a real subprocess on the test stack (already running, so the demo must leave it
running). Its worker is found as the launcher's child in /proc, not only from what the launcher
prints, so the test also tells on a launcher that dies without cleaning up.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ops.stack import StackConfig, stack_status
from ops.stack.process import is_running, port_in_use, stop_process
from tests.integration.harness import LiveProcess, free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


class _Output:
    """The launcher's stdout+stderr, read line by line in a thread so the test can wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                left = deadline - time.monotonic()
                assert left > 0, f"no line matching {pattern!r} in {timeout:.0f} s:\n" + "\n".join(self.lines[-40:])
                self._changed.wait(left)

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "\n".join(self.lines)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def _the_worker(launcher: subprocess.Popen[str], timeout: float) -> int:
    """The launcher's one child: the worker (the stack is already up, so nothing else is started)."""
    deadline = time.monotonic() + timeout
    while not (children := _children(launcher.pid)):
        assert launcher.poll() is None, f"`leadflow run` exited with {launcher.returncode}"
        assert time.monotonic() < deadline, f"`leadflow run` started no worker in {timeout:.0f} s"
        time.sleep(0.05)
    assert len(children) == 1, children
    return children.pop()


@pytest.mark.parametrize(("sig", "when"), [
    (signal.SIGTERM, "running"),   # the live demo: feed, receiver, view, worker routing
    (signal.SIGHUP, "starting"),   # the terminal closes while the worker warms up
])
def test_a_stop_signal_ends_the_demos_worker_and_receiver(stack: StackConfig, sig: signal.Signals, when: str) -> None:
    port, receiver_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env |= {"LEADFLOW_KAFKA_PORT": str(stack.kafka_port), "LEADFLOW_KAFKA_CONTROLLER_PORT": str(stack.kafka_controller_port),
            "LEADFLOW_REDIS_PORT": str(stack.redis_port), "LEADFLOW_STATE_DIR": str(stack.state_dir),
            "PYTHONUNBUFFERED": "1"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "leadflow", "run", "--port", str(port), "--receiver-port", str(receiver_port),
         "--rate", "5"],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # like a shell's background job: the test's own signals stay out of it
    output = _Output(launcher)
    # Ended by pid if pytest itself is terminated meanwhile (both lead sessions of their own).
    live = [LiveProcess(launcher.pid)]
    worker_pid = None
    try:
        worker_pid = _the_worker(launcher, 120)
        live.append(LiveProcess(worker_pid))
        if when == "running":
            output.wait_for(r"\| sent [1-9]", 120)  # leads flow: the receiver and the view are up
        launcher.send_signal(sig)
        returncode = launcher.wait(timeout=60)
        # Gone, not merely signalled: the launcher waits for its worker (SIGKILL after 20 s).
        assert not is_running(worker_pid), f"the worker (pid {worker_pid}) outlived `leadflow run`"
        # It stopped itself, after its cleanup, and says which signal stopped it as a shell does (Ctrl-C: 130).
        assert returncode == 128 + sig
        assert not port_in_use(port) and not port_in_use(receiver_port)
        text = output.text()
        assert f"starting a worker (pid {worker_pid}," in text  # it says which pid is its worker
        assert f"{sig.name}: stopping…" in text
        assert f"worker (pid {worker_pid}) stopped" in text
        # The stack was running before the demo started (the test session's): it keeps running.
        assert "the stack keeps running (it was running before `leadflow run` started" in text
        assert stack_status(stack).running
        assert not (stack.state_dir / "demo" / "worker.pid").exists()
    finally:
        if launcher.poll() is None:
            stop_process(launcher.pid, timeout=30)  # by the pid we started, never a name
            launcher.wait(timeout=5)
        for process in live:
            process.forget()
        if worker_pid is not None and is_running(worker_pid):
            stop_process(worker_pid, timeout=5)  # only what the failed launcher left behind
        if launcher.stdout is not None:
            launcher.stdout.close()

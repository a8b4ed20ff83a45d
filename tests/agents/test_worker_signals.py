"""A signal after the worker's stop began ends the process at once (``LeadflowWorker._schedule_shutdown``).

Before (s16 review): mode ignores every signal once its stop began, and a stop that waits for ever
(Kafka gone under an agent's batch) was ended by SIGKILL only, after three ignored signals. The
worker runs in a child process here, with a stop that never finishes standing in for Faust's.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_CHILD = """
import asyncio, logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(message)s")
from streams.app import app
from streams.worker import LeadflowWorker

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
worker = LeadflowWorker(app, loop=loop, quiet=True, redirect_stdouts=False)
never = loop.create_future()

async def a_stop_that_never_ends(sig):  # Faust's "Wait for streams..." with Kafka gone
    print("stop began", sig.name, flush=True)
    await never

worker._stop_on_signal = a_stop_that_never_ends
worker._started_up = True
worker.install_signal_handlers()
print("running", flush=True)
loop.run_forever()
"""


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 60.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no {text!r} from the worker (status {proc.poll()})")


@pytest.mark.parametrize(("second", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_after_the_stop_began_ends_the_process_at_once(
        tmp_path: Path, second: signal.Signals, status: int) -> None:
    env = {**os.environ, "LEADFLOW_SHUTDOWN_DELAY": "0", "LEADFLOW_STORE": "memory",
           "LEADFLOW_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(proc, "running")
        proc.send_signal(signal.SIGTERM)
        _wait_for(proc, "stop began SIGTERM", timeout=10)
        time.sleep(0.3)
        assert proc.poll() is None  # the stop hangs, as Faust's did
        sent = time.monotonic()
        proc.send_signal(second)
        try:
            rest, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{second.name} after the stop began did not end the worker") from None
        assert proc.returncode == status, rest
        assert time.monotonic() - sent < 2.0
        lines = [line for line in rest.splitlines() if "already stopping" in line]
        assert len(lines) == 1 and lines[0].startswith("WARNING") and f"status {status}" in lines[0], rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

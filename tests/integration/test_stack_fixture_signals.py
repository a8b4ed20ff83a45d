"""The integration runs' own stack fixture (tests/integration/conftest.py) under a signal.

Review s18-c: its SIGTERM handler was installed only once the stack had started, so a SIGTERM
while Kafka and Redis were starting (a Ctrl-C the suite runner passes on, a CI timeout) ended
pytest with the stack left running on its ports. Now the start is undone and the run ends 143.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.harness import REPO

#: A test that only needs the stack: the run is signalled while the stack starts, before it runs.
_NEEDS_THE_STACK = """
def test_waits(stack):
    pass
"""


def _free_ports() -> tuple[int, int, int]:
    """Kafka, its controller (Kafka + 1) and Redis: ports the system hands out (never one another
    engineer or shard chose), the first two side by side, each bindable now."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            kafka = int(s.getsockname()[1])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            redis = int(s.getsockname()[1])
        if kafka + 1 != redis and all(_bindable(port) for port in (kafka, kafka + 1, redis)):
            return kafka, kafka + 1, redis
    raise AssertionError("no free ports")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _probe_run(tmp_path: Path, source: str, kafka: int, redis: int) -> subprocess.Popen[str]:
    """pytest on ``source`` (a test file outside tests/, so no other run collects it) with the
    integration conftest's stack fixture on these ports, its output a text pipe (``-v -s``: each
    test's line and the stack's progress)."""
    test_file = tmp_path / "test_probe.py"
    test_file.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_TEST_")} | {
        "LEADFLOW_TEST_KAFKA_PORT": str(kafka), "LEADFLOW_TEST_REDIS_PORT": str(redis),
        "LEADFLOW_TEST_STATE_DIR": str(tmp_path / "stack"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "pytest", "-v", "-s", "-p", "no:cacheprovider",
                             "-p", "tests.integration.conftest", "--rootdir", str(tmp_path), str(test_file)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_sigterm_while_the_stack_starts_stops_what_was_started(tmp_path: Path) -> None:
    kafka, _controller, redis = _free_ports()
    run = _probe_run(tmp_path, _NEEDS_THE_STACK, kafka, redis)
    try:
        assert run.stdout is not None
        seen = []
        deadline = time.monotonic() + 120
        for line in run.stdout:  # signalled once Kafka's JVM runs and the stack waits for it to answer
            seen.append(line)
            if "kafka: started (pid" in line:
                run.send_signal(signal.SIGTERM)
                break
            assert time.monotonic() < deadline, "".join(seen)
        rest = run.communicate(timeout=60)[0]
        assert run.returncode == 128 + signal.SIGTERM, "".join(seen) + rest
        assert "kafka: ready" not in rest  # it was still starting when the signal came
        assert not _listening(kafka) and not _listening(redis), "".join(seen) + rest
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)


_FAILS_TO_START_THEN_WAITS = """
import time

def test_needs_the_stack(stack):
    pass

def test_waits_a():
    time.sleep(15)

def test_waits_b():
    time.sleep(15)
"""


def test_after_a_failed_start_a_sigterm_still_ends_the_run(tmp_path: Path) -> None:
    # Review s18-f: a start that failed (a busy port) left the fixture's handler in its "starting"
    # phase for the rest of the session: the next SIGTERM only failed the running test, later ones
    # were ignored, and the run went on to its end.
    kafka, _controller, redis = _free_ports()
    with socket.socket() as busy:  # Kafka's port is taken: the stack cannot start
        busy.bind(("127.0.0.1", kafka))
        busy.listen()
        run = _probe_run(tmp_path, _FAILS_TO_START_THEN_WAITS, kafka, redis)
        try:
            assert run.stdout is not None
            seen = []
            for line in run.stdout:
                seen.append(line)
                if "test_needs_the_stack ERROR" in line:  # the start failed; test_waits_a begins
                    break
            time.sleep(1.0)
            run.send_signal(signal.SIGTERM)
            rest = run.communicate(timeout=10)[0]  # not the 30 s the two tests would take
            assert run.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), "".join(seen) + rest
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(10)

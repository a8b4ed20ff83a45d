"""``stack_up`` holds SIGINT and SIGTERM while it starts a service and records its pid; the service
itself must not inherit that block (a service that ignores SIGTERM is only stopped by SIGKILL)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ops.stack.manager import _signals_held
from ops.stack.process import start_daemon, stop_process


def _blocked(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk")


def test_signals_are_held_while_a_service_starts_and_the_service_does_not_inherit_the_block(tmp_path: Path) -> None:
    with _signals_held():
        held = _blocked(os.getpid())
        pid = start_daemon(["sleep", "30"], log_path=tmp_path / "sleep.log")
    try:
        assert held & (1 << (signal.SIGTERM - 1)) and held & (1 << (signal.SIGINT - 1))
        assert not _blocked(os.getpid()) & (1 << (signal.SIGTERM - 1))  # released after
        assert _blocked(pid) == 0
        began = time.monotonic()
        assert stop_process(pid, timeout=5)  # SIGTERM alone ends it (graceful)
        assert time.monotonic() - began < 2
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)

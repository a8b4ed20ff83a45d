"""What the stack manager needs from a service (Kafka, Redis), and what it reports about one."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ops.stack.process import PidFile

__all__ = ["Progress", "Service", "ServiceStatus", "print_progress"]

#: Receives one human-readable progress line at a time.
Progress = Callable[[str], None]


def print_progress(line: str) -> None:
    """The default Progress: print and flush, so lines show up at once in CI logs and pipes."""
    print(line, flush=True)


@dataclass(frozen=True)
class ServiceStatus:
    """One service of the local stack, as `stack_status` sees it."""

    name: str
    running: bool
    #: The process we started and recorded; None when not running.
    pid: int | None
    #: What clients connect to: `kafka://127.0.0.1:9092`, `redis://127.0.0.1:6379/0`.
    url: str
    #: The service's own log (quoted in errors; `tail -f` it when something is off).
    log_path: Path


class Service(Protocol):
    """A service process the manager can bring up, check and stop by its pid file."""

    name: str
    url: str
    log_path: Path
    pid_file: PidFile
    #: Seconds between SIGTERM and SIGKILL when stopping.
    stop_timeout: float
    #: Each port it listens on, with the environment variable that moves it.
    ports: Mapping[int, str]

    def prepare(self, progress: Progress) -> None:
        """Install or fetch what is missing and write its config files; may take a while once."""

    def start(self) -> int:
        """Start the process (via `start_daemon`) and return its pid at once."""

    def wait_ready(self, pid: int, timeout: float, progress: Progress) -> None:
        """Return when the service really answers; raise StackError (with `log_tail`) if not."""

    def log_tail(self) -> str:
        """The last lines of its logs, formatted for an error message."""

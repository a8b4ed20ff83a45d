"""Start long-lived processes, find them again by pid file, and stop them for sure.

Used by the local stack (Kafka, Redis: `start_daemon`) and by the worker launcher
(`start_process`). The rules that make it safe:

* every process starts in its own session (`start_new_session=True`): Ctrl-C in the terminal
  that ran `make run` does not reach it, and it leads a process group we can signal as a whole;
* we only ever signal pids we recorded ourselves, never a name match (no `pkill`);
* a pid file also records the process's start time, so a recycled pid is never mistaken for
  ours (Linux /proc; elsewhere only liveness is checked).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from ops.stack.errors import StackError

__all__ = [
    "PidFile",
    "PidRecord",
    "file_lock",
    "is_running",
    "port_in_use",
    "start_daemon",
    "start_process",
    "stop_process",
    "tail",
]

_POLL_S = 0.05


def start_process(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` as our child in a new session, stdout and stderr appended to `log_path`.

    For processes this Python process supervises and stops (workers in tests, `make run`).
    `env` replaces the environment when given (pass `{**os.environ, ...}` to extend it). The
    child has no stdin. Stop it with `stop_process(proc)`; record `proc.pid` in a `PidFile` if
    another process must find it. Dropping the Popen while the child runs makes Python warn
    (ResourceWarning); for a service meant to outlive us, use `start_daemon`.
    """
    with _open_log(log_path, argv) as log:
        try:
            return subprocess.Popen(
                _strings(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise StackError(f"cannot start {os.fspath(argv[0])}: {exc}") from exc


# Runs in a short-lived intermediate interpreter: starts the service in its own session and
# exits at once, so the service is re-parented to init instead of staying our child.
_LAUNCHER = """
import os, signal, subprocess, sys
signal.pthread_sigmask(signal.SIG_SETMASK, set())  # the starter may hold its signals meanwhile (stack_up)
cwd, argv = sys.argv[1] or None, sys.argv[2:]
try:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=1, stderr=1, cwd=cwd,
                            start_new_session=True, close_fds=True)
except OSError as exc:
    print(exc, file=sys.stderr, flush=True)  # flush: os._exit skips the exit-time flush
    os._exit(1)
print(proc.pid, file=sys.stderr, flush=True)
os._exit(0)
"""


def start_daemon(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` detached (not our child, own session), output appended to `log_path`.

    For services that outlive the Python process that started them (the local stack started
    by `make run` or a test session). Returns the pid; find it again with a `PidFile` and stop
    it with `stop_process(pid)`. Costs one extra short interpreter start (~30 ms).
    """
    with _open_log(log_path, argv) as log:
        launcher = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, os.fspath(cwd or ""), *_strings(argv)],
            stdin=subprocess.DEVNULL,
            stdout=log,  # inherited by the service as its stdout and stderr
            stderr=subprocess.PIPE,  # the launcher's own report: the pid, or why it failed
            env=None if env is None else dict(env),
            check=False,
        )
    report = launcher.stderr.decode(errors="replace").strip()
    last_line = report.splitlines()[-1] if report else ""  # the pid comes last, after any noise
    if launcher.returncode != 0 or not last_line.isdigit():
        raise StackError(f"cannot start {os.fspath(argv[0])}: {report or f'exit {launcher.returncode}'}")
    return int(last_line)


def stop_process(
    target: int | subprocess.Popen[bytes], *, timeout: float = 10.0, kill_timeout: float = 5.0
) -> bool:
    """Stop a process we started: SIGTERM, wait up to `timeout` s, then SIGKILL.

    When the process leads its own process group (as `start_process` and `start_daemon` make
    it), the whole group is signalled, so helpers it spawned go too. Returns True if it exited
    on SIGTERM (or was already gone), False if it had to be killed. Raises StackError if even
    SIGKILL did not end it within `kill_timeout` s (e.g. stuck in uninterruptible I/O).
    """
    pid = target.pid if isinstance(target, subprocess.Popen) else target
    if pid <= 1 or pid == os.getpid():
        raise StackError(f"refusing to stop pid {pid}: not a child process of ours")
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        _reap(target)
        return True
    # Signal the group only if the process leads it, and it is not our own group: a pid that
    # merely shares our group (started without a new session) is stopped alone.
    as_group = pgid == pid and pgid != os.getpgrp()

    _signal(pid, signal.SIGTERM, as_group)
    if _wait_gone(target, timeout):
        if as_group:
            _signal(pid, signal.SIGKILL, as_group)  # sweep leftovers in the group, if any
        return True
    _signal(pid, signal.SIGKILL, as_group)
    if not _wait_gone(target, kill_timeout):
        raise StackError(f"pid {pid} is still running {timeout + kill_timeout:.0f} s after SIGTERM+SIGKILL")
    return False


def is_running(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (exited but not yet reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    stat = _proc_stat(pid)
    return stat is None or stat[0] not in ("Z", "X")


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds: the pid, and the process's start time in clock ticks since boot."""

    pid: int
    started: int | None


class PidFile:
    """A pid file that also remembers when the process started.

    Format: the pid on the first line (so `kill $(head -1 file)` works), the start time from
    /proc/<pid>/stat on the second.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stat = _proc_stat(pid)
        started = "" if stat is None else str(stat[1])
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{pid}\n{started}\n")
        tmp.replace(self.path)  # atomic: a reader never sees half a file

    def read(self) -> PidRecord | None:
        """The recorded pid, or None if there is no file or it is unreadable."""
        try:
            lines = self.path.read_text().split()
        except FileNotFoundError:
            return None
        try:
            pid = int(lines[0])
            started = int(lines[1]) if len(lines) > 1 else None
        except (IndexError, ValueError):
            return None
        return PidRecord(pid, started)

    def live_pid(self) -> int | None:
        """The recorded pid if that very process is still running, else None."""
        record = self.read()
        if record is None or not is_running(record.pid):
            return None
        if record.started is not None:
            stat = _proc_stat(record.pid)
            if stat is not None and stat[1] != record.started:
                return None  # the pid was recycled by an unrelated process
        return record.pid

    def is_stale(self) -> bool:
        """True if the file exists but its process is gone (or the file is garbage)."""
        return self.path.exists() and self.live_pid() is None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something already listens on (or holds) `host:port`.

    A bind test, not a connect test: it also catches a socket bound to the wildcard address or
    to ::ffff:127.0.0.1 (where Java listens), and SO_REUSEADDR ignores our own TIME_WAIT leftovers.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


@contextlib.contextmanager
def file_lock(path: Path, progress: Callable[[str], None], what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the duration of the block.

    Serialises `stack_up`/`stack_down` on one state dir, and the jar fetch into one cache, across
    processes (a test run and `make run` side by side). The kernel drops the lock if we die.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"{what}: waiting for another process that holds {path}…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _open_log(log_path: Path, argv: Sequence[str | os.PathLike[str]]) -> Iterator[BinaryIO]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # A header line per start: these logs are appended to across restarts.
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log.write(f"--- {stamp} starting: {' '.join(_strings(argv))}\n".encode())
        log.flush()
        yield log


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a (possibly large, possibly missing) log file."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))  # plenty for 20 log lines
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _strings(argv: Sequence[str | os.PathLike[str]]) -> list[str]:
    return [os.fspath(arg) for arg in argv]


def _signal(pid: int, sig: signal.Signals, as_group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if as_group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(target: int | subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(target)
        if isinstance(target, subprocess.Popen):
            if target.returncode is not None:
                return True
        elif not is_running(target):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def _reap(target: int | subprocess.Popen[bytes]) -> None:
    """Collect the exit status if the process is our child, so it does not linger as a zombie."""
    if isinstance(target, subprocess.Popen):
        target.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(target, os.WNOHANG)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in ticks) from /proc/<pid>/stat, or None off Linux / if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])

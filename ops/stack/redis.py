"""The local Redis: Debian's redis-server (installed if missing), run by us, never the system unit."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ops.stack.config import StackConfig
from ops.stack.errors import StackError
from ops.stack.process import PidFile, is_running, start_daemon, tail
from ops.stack.service import Progress, print_progress

__all__ = ["RedisService", "find_redis_server"]

_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
# Wait for a concurrent apt/dpkg (unattended upgrades, another install) instead of failing.
_APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=120"]


def find_redis_server(progress: Progress) -> Path:
    """The `redis-server` binary, installing Debian's package first if it is missing."""
    found = shutil.which("redis-server") or _existing("/usr/bin/redis-server")
    if found:
        return Path(found)
    _apt_install("redis-server", progress)
    found = shutil.which("redis-server") or _existing("/usr/bin/redis-server")
    if not found:
        raise StackError("redis: apt-get installed redis-server but no redis-server binary is on PATH")
    return Path(found)


class RedisService:
    """redis-server on loopback, no persistence (a dev/test cache), run detached and found by pid file."""

    name = "redis"
    stop_timeout = 10.0

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.dir = cfg.state_dir / "redis"
        self.log_path = self.dir / "redis.log"
        self.console_log = self.dir / "console.log"
        self.pid_file = PidFile(self.dir / "redis.pid")
        self.url = cfg.redis_url
        self.ports: Mapping[int, str] = {cfg.redis_port: "LEADFLOW_REDIS_PORT"}
        self._binary: Path | None = None

    def prepare(self, progress: Progress) -> None:
        self._binary = find_redis_server(progress)
        self.dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> int:
        argv: list[str | os.PathLike[str]] = [
            self._binary or find_redis_server(print_progress),
            "--port", str(self.cfg.redis_port),
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--daemonize", "no",  # no fork of its own, so the pid we record is the server's
            # A local cache and test fixture: no RDB snapshots, no AOF, nothing to clean up.
            "--save", "",
            "--appendonly", "no",
            "--logfile", self.log_path,
        ]
        return start_daemon(argv, log_path=self.console_log, cwd=self.dir)

    def wait_ready(self, pid: int, timeout: float, progress: Progress) -> None:
        """Block until PING answers PONG."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while True:
            if not is_running(pid):
                raise StackError(f"redis: redis-server exited during startup.\n{self.log_tail()}")
            client = redis.Redis(
                host="127.0.0.1",
                port=self.cfg.redis_port,
                socket_connect_timeout=1.0,
                socket_timeout=1.0,
                retry=Retry(NoBackoff(), 0),  # this loop retries, against its own deadline
            )
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:
                last_error = str(exc)
            finally:
                client.close()
            if time.monotonic() >= deadline:
                raise StackError(
                    f"redis: no PONG after {timeout:.0f} s (last: {last_error}).\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self) -> str:
        parts = [f"--- last lines of {self.log_path}:\n{tail(self.log_path)}"]
        console = tail(self.console_log)
        if any(line and not line.startswith("--- ") for line in console.splitlines()):
            parts.append(f"--- last lines of {self.console_log}:\n{console}")
        return "\n".join(parts)


def _apt_install(package: str, progress: Progress) -> None:
    apt_get = shutil.which("apt-get")
    if not apt_get:
        raise StackError(
            f"redis: `redis-server` not found and there is no apt-get to install it. Install Redis 7 "
            f"(package {package}) with your system's package manager."
        )
    if os.geteuid() != 0:
        raise StackError(
            f"redis: `redis-server` not found. Install it with `sudo apt-get install {package}` "
            "(this script only installs packages when run as root, as in CI)."
        )
    env = {**os.environ, **_APT_ENV}
    install = [apt_get, *_APT_LOCK_WAIT, "install", "-y", "--no-install-recommends", package]
    for step, argv in (
        ("apt-get update", [apt_get, *_APT_LOCK_WAIT, "update"]),
        (f"apt-get install {package}", install),
    ):
        progress(f"redis: `redis-server` not found; running {step} (first run only)…")
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise StackError(f"redis: `{step}` failed (exit {result.returncode}):\n{output}")


def _existing(path: str) -> str | None:
    return path if os.access(path, os.X_OK) else None

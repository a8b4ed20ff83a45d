"""The local Redis: Debian's redis-server (installed if missing), run by us, never the system unit."""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ops.stack.apt import find_or_install
from ops.stack.config import StackConfig
from ops.stack.errors import StackError
from ops.stack.process import PidFile, is_running, start_daemon, tail
from ops.stack.service import Progress, print_progress

__all__ = ["RedisService", "find_redis_server"]

def find_redis_server(progress: Progress) -> Path:
    """The `redis-server` binary, installing Debian's package first if it is missing."""
    return find_or_install("redis-server", package="redis-server", service="redis", progress=progress,
                           hint="Install Redis 7 (package redis-server) with your system's package manager.")


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


"""Run a real Prometheus (Debian's binary) as a plain child process: its own config, port and
storage dir, stopped by its pid. For the integration tests and for trying the rules locally.

    prom = LocalPrometheus(["127.0.0.1:6066"], workdir=Path(tempfile.mkdtemp()))
    prom.start()            # waits until /-/ready answers
    prom.api_url            # 'http://127.0.0.1:<port>/api/v1'
    prom.stop()
"""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import yaml

from ops.prometheus.tools import RULES, find_tool
from ops.stack.errors import StackError
from ops.stack.process import start_process, stop_process, tail

__all__ = ["LocalPrometheus"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPrometheus:
    """One Prometheus scraping ``targets`` every ``scrape_interval``, with leadflow's rules loaded."""

    def __init__(self, targets: Sequence[str], workdir: Path, *, port: int | None = None,
                 scrape_interval: str = "1s", evaluation_interval: str = "1s",
                 rule_files: Sequence[Path] = RULES) -> None:
        self.targets = list(targets)
        self.workdir = workdir
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api/v1"
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.rule_files = [str(Path(p).resolve()) for p in rule_files]
        self._proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, object]:
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.evaluation_interval},
            "rule_files": self.rule_files,
            "scrape_configs": [{"job_name": "leadflow", "metrics_path": "/metrics",
                                "static_configs": [{"targets": self.targets}]}],
        }

    def start(self, timeout: float = 30.0) -> None:
        binary = find_tool("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config()))
        self._proc = start_process([
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ], log_path=self.log_path, cwd=self.workdir)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise StackError(f"prometheus exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise StackError(f"prometheus not ready after {timeout:.0f} s:\n{self.log()}")

    def log(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, timeout=10)
            self._proc = None

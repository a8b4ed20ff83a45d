"""Find ``prometheus`` and ``promtool``, installing Debian's ``prometheus`` package when they are missing.

The same mechanism as the local stack's Redis (``ops/stack/redis.py``): look on PATH and in
/usr/bin, else ``apt-get update`` + ``apt-get install`` as root, else a clear error that says
what to install. Never silently absent: the test suite relies on these binaries.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final, Literal

from ops.stack.errors import StackError
from ops.stack.service import Progress, print_progress

__all__ = ["HERE", "RULES", "ALERT_TESTS", "CONFIG_COMPOSE", "CONFIG_LOCAL", "Tool", "find_tool"]

HERE: Final = Path(__file__).resolve().parent
#: Alert rules, loaded by every Prometheus config here.
RULES: Final = (HERE / "rules" / "alerts.yml",)
#: ``promtool test rules`` unit tests: at least one per alert.
ALERT_TESTS: Final = HERE / "tests" / "alerts_test.yml"
#: Scrape config for docker-compose.yml (workers by service name).
CONFIG_COMPOSE: Final = HERE / "prometheus.yml"
#: Scrape config for the local stack (workers on 127.0.0.1:6066 and :6067).
CONFIG_LOCAL: Final = HERE / "prometheus-local.yml"

Tool = Literal["prometheus", "promtool"]

_PACKAGE: Final = "prometheus"  # Debian's package ships both binaries in /usr/bin
_APT_ENV: Final = {"DEBIAN_FRONTEND": "noninteractive"}
# Wait for a concurrent apt/dpkg (another install) instead of failing at once.
_APT_LOCK_WAIT: Final = ["-o", "DPkg::Lock::Timeout=120"]


def find_tool(name: Tool, progress: Progress = print_progress) -> Path:
    """The path of ``name``, installing Debian's ``prometheus`` package first if it is missing."""
    found = _find(name)
    if found is not None:
        return found
    _apt_install(name, progress)
    found = _find(name)
    if found is None:
        raise StackError(f"prometheus: apt-get installed {_PACKAGE} but no `{name}` binary is on PATH or in /usr/bin")
    return found


def _find(name: str) -> Path | None:
    found = shutil.which(name)
    if found:
        return Path(found)
    fallback = Path("/usr/bin") / name
    return fallback if os.access(fallback, os.X_OK) else None


def _apt_install(name: str, progress: Progress) -> None:
    apt_get = shutil.which("apt-get")
    if not apt_get:
        raise StackError(
            f"prometheus: `{name}` not found and there is no apt-get to install it. Install Prometheus 2.x "
            f"(it ships `prometheus` and `promtool`) with your system's package manager."
        )
    if os.geteuid() != 0:
        raise StackError(
            f"prometheus: `{name}` not found. Install it with `sudo apt-get install {_PACKAGE}` "
            "(leadflow only installs packages itself when run as root, as in CI)."
        )
    env = {**os.environ, **_APT_ENV}
    install = [apt_get, *_APT_LOCK_WAIT, "install", "-y", "--no-install-recommends", _PACKAGE]
    for step, argv in (
        ("apt-get update", [apt_get, *_APT_LOCK_WAIT, "update"]),
        (f"apt-get install {_PACKAGE}", install),
    ):
        progress(f"prometheus: `{name}` not found; running {step} (first run only)…")
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise StackError(f"prometheus: `{step}` failed (exit {result.returncode}):\n{output}")

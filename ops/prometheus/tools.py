"""Find ``prometheus`` and ``promtool``, installing Debian's ``prometheus`` package when they are missing.

The same mechanism as the local stack's Redis (``ops/stack/redis.py``): look on PATH and in
/usr/bin, else ``apt-get update`` + ``apt-get install`` as root, else a clear error that says
what to install. Never silently absent: the test suite relies on these binaries.
"""
from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from ops.stack.apt import find_or_install
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


def find_tool(name: Tool, progress: Progress = print_progress) -> Path:
    """The path of ``name``, installing Debian's ``prometheus`` package first if it is missing."""
    return find_or_install(name, package=_PACKAGE, service="prometheus", progress=progress,
                           hint="Install Prometheus 2.x (it ships `prometheus` and `promtool`) with your "
                                "system's package manager.")

"""Prometheus for leadflow: scrape configs, alert and recording rules (YAML beside this module),
and the Debian-packaged ``prometheus`` / ``promtool`` binaries, installed on first use.

    from ops.prometheus import RULES, find_tool
    promtool = find_tool("promtool")      # apt-get installs Debian's `prometheus` when missing
"""
from __future__ import annotations

from ops.prometheus.tools import ALERT_TESTS, CONFIG_COMPOSE, CONFIG_LOCAL, HERE, RULES, find_tool

__all__ = ["ALERT_TESTS", "CONFIG_COMPOSE", "CONFIG_LOCAL", "HERE", "RULES", "find_tool"]

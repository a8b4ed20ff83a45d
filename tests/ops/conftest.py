"""Fixtures shared by the ops tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from leadflow.errors import LeadflowError
from ops.prometheus import find_tool


@pytest.fixture(scope="module")
def promtool() -> Path:
    """Prometheus's promtool, installed the way `leadflow` installs it when the machine lacks it."""
    try:
        return find_tool("promtool")
    except LeadflowError as exc:
        pytest.fail(f"promtool is required for these tests and could not be installed: {exc}")

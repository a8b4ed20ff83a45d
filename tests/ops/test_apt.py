"""``find_or_install``: found binaries are returned; a missing one names what to install."""
from __future__ import annotations

import shutil

import pytest

from ops.stack import apt
from ops.stack.errors import StackError

MISSING = "leadflow-no-such-binary"


def test_a_binary_on_the_path_is_found_without_apt() -> None:
    found = apt.find_or_install("sh", package="dash", service="test", hint="", progress=print)
    assert found.name == "sh"


def test_without_root_the_error_gives_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt.os, "geteuid", lambda: 1000)
    with pytest.raises(StackError, match=rf"redis: `{MISSING}` not found\. Install it with `sudo apt-get install redis-server`"):
        apt.find_or_install(MISSING, package="redis-server", service="redis", hint="", progress=print)


def test_without_apt_get_the_error_gives_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(apt.shutil, "which", lambda name: None if name == "apt-get" else real_which(name))
    with pytest.raises(StackError, match="no apt-get to install it. Install Prometheus 2.x"):
        apt.find_or_install(MISSING, package="prometheus", service="prometheus", hint="Install Prometheus 2.x.",
                            progress=print)

"""Find a program, installing its Debian package first when it is missing (as root, as in CI)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

from ops.stack.errors import StackError
from ops.stack.service import Progress

__all__ = ["find_or_install"]

_APT_ENV: Final = {"DEBIAN_FRONTEND": "noninteractive"}
# Wait for a concurrent apt/dpkg (unattended upgrades, another install) instead of failing.
_APT_LOCK_WAIT: Final = ["-o", "DPkg::Lock::Timeout=120"]


def _find(binary: str) -> Path | None:
    found = shutil.which(binary)
    if found:
        return Path(found)
    fallback = Path("/usr/bin") / binary
    return fallback if os.access(fallback, os.X_OK) else None


def find_or_install(binary: str, *, package: str, service: str, hint: str, progress: Progress) -> Path:
    """The path of ``binary`` (on PATH or in /usr/bin), after ``apt-get install package`` if needed.

    ``service`` prefixes every message; ``hint`` says what to install elsewhere when there is no
    apt-get. Without root nothing is installed: the error gives the command to run.
    """
    found = _find(binary)
    if found is not None:
        return found
    apt_get = shutil.which("apt-get")
    if not apt_get:
        raise StackError(f"{service}: `{binary}` not found and there is no apt-get to install it. {hint}")
    if os.geteuid() != 0:
        raise StackError(f"{service}: `{binary}` not found. Install it with `sudo apt-get install {package}` "
                         "(leadflow only installs packages itself when run as root, as in CI).")
    env = {**os.environ, **_APT_ENV}
    install = [apt_get, *_APT_LOCK_WAIT, "install", "-y", "--no-install-recommends", package]
    for step, argv in (("apt-get update", [apt_get, *_APT_LOCK_WAIT, "update"]),
                       (f"apt-get install {package}", install)):
        progress(f"{service}: `{binary}` not found; running {step} (first run only)…")
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise StackError(f"{service}: `{step}` failed (exit {result.returncode}):\n{output}")
    found = _find(binary)
    if found is None:
        raise StackError(f"{service}: apt-get installed {package} but no `{binary}` binary is on PATH or in /usr/bin")
    return found

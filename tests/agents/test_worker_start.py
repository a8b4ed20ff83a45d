"""A worker that cannot start says why in one line naming the setting, and exits 2: it ended in a
traceback wall (rc 1) for a data folder it cannot create and a web port another process holds."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.errors import ConfigError
from streams.worker import check_data_dir, check_port

ROOT = Path(__file__).resolve().parents[2]


def test_a_data_dir_that_cannot_be_made_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        check_data_dir(Path("/proc/nope/x"))
    assert str(caught.value).startswith("LEADFLOW_DATA_DIR='/proc/nope/x' (or --data-dir): cannot create or write")
    check_data_dir(tmp_path / "w1" / "tables")  # made, parents too
    assert (tmp_path / "w1" / "tables").is_dir()


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("0.0.0.0", 0))
    sock.listen()
    return sock


def test_a_port_another_process_listens_on_names_the_setting() -> None:
    with _listening() as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            check_port("0.0.0.0", port)
    assert str(caught.value) == (f"LEADFLOW_WEB_PORT={port} (or --port): cannot listen on 0.0.0.0:{port} (another "
                                 "process listens there); give each worker on a host its own port")
    check_port("0.0.0.0", port)  # free again


def _worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    # The checks run before the broker is contacted: nothing listens on this broker address.
    base = {"LEADFLOW_BROKER": "kafka://127.0.0.1:1", "LEADFLOW_STORE": "memory"}
    return subprocess.run([sys.executable, "-m", "leadflow", "worker"], env={**keep, **base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_worker_stops_in_one_line_for_a_data_dir_it_cannot_make() -> None:
    done = _worker({"LEADFLOW_DATA_DIR": "/proc/nope/x"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        "leadflow: LEADFLOW_DATA_DIR='/proc/nope/x' (or --data-dir): cannot create or write the tables' folder")
    assert "Traceback" not in done.stderr


def test_the_worker_stops_in_one_line_for_a_port_in_use(tmp_path: Path) -> None:
    with _listening() as taken:
        port = taken.getsockname()[1]
        done = _worker({"LEADFLOW_WEB_PORT": str(port), "LEADFLOW_DATA_DIR": str(tmp_path / "w")})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (f"leadflow: LEADFLOW_WEB_PORT={port} (or --port): cannot listen on "
                                            f"0.0.0.0:{port} (another process listens there); give each worker on "
                                            "a host its own port")
    assert "Traceback" not in done.stderr

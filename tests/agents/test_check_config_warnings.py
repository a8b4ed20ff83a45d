"""``leadflow worker --check-config`` prints the warnings the worker logs at start, and passes."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from leadflow.cli import main
from streams.app import create_app
from streams.config import LEAD_ID_KEY_UNSET
from streams.settings import Settings

_KEY = "0123456789abcdef" * 4
_TEAM = "routing: {default_team: sdr}\nteams:\n  - id: sdr\n    reps:\n      - {id: ana}\n"


def _check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str,
           **env: str) -> tuple[int, str, str]:
    for name in [k for k in os.environ if k.startswith("LEADFLOW_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("LEADFLOW_CONFIG", str(path))  # restored afterwards: the CLI sets it from --config
    status = main(["worker", "--config", str(path), "--check-config"])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_check_config_warns_about_a_missing_lead_id_key_as_the_worker_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _check(tmp_path, monkeypatch, capsys, _TEAM)
    assert status == 0 and out.startswith("config OK: 1 team(s), 1 rep(s)")  # a warning does not fail the check
    assert err == f"leadflow: warning: {LEAD_ID_KEY_UNSET}\n"
    status, out, err = _check(tmp_path, monkeypatch, capsys, _TEAM, LEADFLOW_LEAD_ID_KEY=_KEY)
    assert status == 0 and err == ""


def test_the_worker_logs_the_very_words_check_config_prints(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        create_app(Settings.from_env({}))
    assert LEAD_ID_KEY_UNSET in [r.getMessage() for r in caplog.records if r.name == "streams.app"]

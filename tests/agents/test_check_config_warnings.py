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


_FACEBOOK = "providers:\n  facebook:\n    source: fb\n"
_SECRETS = {"LEADFLOW_FACEBOOK_APP_SECRET": "s" * 32, "LEADFLOW_FACEBOOK_VERIFY_TOKEN": "v" * 32,
            "LEADFLOW_LEAD_ID_KEY": _KEY}


def test_facebook_without_an_access_token_is_a_warning_at_the_providers_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Real Meta webhooks carry no field_data: without a token every real lead is answered 503 for 36 h.
    status, out, err = _check(tmp_path, monkeypatch, capsys, _FACEBOOK, **_SECRETS)
    assert status == 0 and out.startswith("config OK")  # test payloads still work: not an error
    path = tmp_path / "c.yaml"
    # At the provider's block (its first line), as the errors for its variables are.
    assert err.startswith(f"leadflow: warning: {path}:3: providers.facebook: access_token_env is not set: ")
    assert "every real lead is answered 503" in err and err.count("\n") == 1
    token = _FACEBOOK + "    access_token_env: FB_TOKEN\n"
    status, out, err = _check(tmp_path, monkeypatch, capsys, token, FB_TOKEN="t" * 40, **_SECRETS)
    assert status == 0 and err == ""


def test_the_facebook_warning_is_among_the_config_warnings_the_worker_logs_at_start() -> None:
    # streams/worker.py logs config.warnings() at start, as --check-config prints them; in line order
    # with the teams' (a file with teams too), and also in a file that defines no team.
    from streams.config import parse_config

    both = "teams:\n  - {id: sdr}\nrouting: {default_team: sdr, rules: [{team: sdr_us}]}\n" + _FACEBOOK
    warnings = parse_config(both, "c.yaml").warnings()
    assert [w.split(": ")[:2] for w in warnings] == [["c.yaml:3", "routing.rules[0].team"],
                                                     ["c.yaml:6", "providers.facebook"]]
    assert parse_config(_FACEBOOK, "c.yaml").warnings()[0].startswith("c.yaml:3: providers.facebook: ")

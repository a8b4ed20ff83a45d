"""``python -m ops.grafana.build``: a real command line (``--help`` explains and writes nothing)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ops.grafana import build

REPO = Path(__file__).resolve().parents[2]


def _no_writes(*args: object, **kwargs: object) -> list[Path]:
    raise AssertionError("write_all was called")


def test_help_explains_and_writes_nothing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(build, "write_all", _no_writes)
    with pytest.raises(SystemExit) as exit_:
        build.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m ops.grafana.build")
    for word in ("--out", "--check", "sla.json", "commit"):
        assert word in out


def test_an_unknown_option_is_an_error_not_a_rebuild(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(build, "write_all", _no_writes)
    with pytest.raises(SystemExit) as exit_:
        build.main(["--frobnicate"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_out_writes_every_dashboard_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(build.DASHBOARDS)
    assert capsys.readouterr().out.split() == [str(tmp_path / name) for name in build.DASHBOARDS]


def test_check_names_a_stale_dashboard_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build.write_all(tmp_path)
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "sla.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "health.json").unlink()
    assert build.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "sla.json: stale" in err and "health.json: stale" in err and "funnel.json" not in err
    assert (tmp_path / "sla.json").read_text(encoding="utf-8") == "{}\n"  # --check writes nothing


def test_the_module_runs_as_a_script_with_help() -> None:
    done = subprocess.run([sys.executable, "-m", "ops.grafana.build", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("usage:"), done.stdout + done.stderr

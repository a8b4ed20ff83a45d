"""Team references in the YAML: a team defined twice is refused at its second entry, a misspelt team
(``sdr-us`` for ``sdr_us``) is refused where it is named, and a team the file does not define is a
warning at its line (it may get its reps through ``PUT /v1/reps``), printed by ``--check-config``
and logged at the worker's start."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.errors import ConfigError
from streams.config import parse_config

ROOT = Path(__file__).resolve().parents[2]

TEAMS = """\
teams:
  - id: sdr_us
  - id: sdr-emea
"""


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    return str(caught.value)


def test_two_teams_with_one_id_are_refused_at_the_second() -> None:
    # Both were merged silently: "config OK: 2 team(s)".
    problem = _refused("teams:\n  - id: t1\n    reps: [{id: a}]\n  - id: t1\n    reps: [{id: b}]\n")
    assert "c.yaml:4: teams[1].id: team 't1' is already defined at teams[0]" in problem


@pytest.mark.parametrize(("reference", "line", "path"), [
    ("routing:\n  rules:\n    - {team: sdr-us, countries: [US]}\n", 6, "routing.rules[0].team"),
    ("routing:\n  default_team: SDR_US\n", 5, "routing.default_team"),
    ("sla:\n  policies:\n    - {name: p, first_contact: 5m, teams: [sdr.us]}\n", 6, "sla.policies[0].teams[0]"),
    ("accounts:\n  - {domain: acme.com, team: sdrus}\n", 5, "accounts[0].team"),
])
def test_a_misspelt_team_is_refused_where_it_is_named(reference: str, line: int, path: str) -> None:
    problem = _refused(TEAMS + reference)
    assert f"c.yaml:{line}: {path}: team '" in problem
    assert "is not defined; did you mean 'sdr_us'?" in problem


def test_a_misspelt_overflow_team_is_refused() -> None:
    problem = _refused("teams:\n  - id: sdr_us\n  - id: emea\n    overflow_team: SDR-US\n")
    assert "c.yaml:4: teams[1].overflow_team: team 'SDR-US' is not defined; did you mean 'sdr_us'?" in problem


ELSEWHERE = TEAMS + """\
routing:
  default_team: nosuch
  rules:
    - {team: partners, sources: [partner-feed]}
    - {team: sdr_us, countries: [US]}
sla:
  policies:
    - {name: p, first_contact: 5m, teams: [sdr-emea, apac]}
"""


def test_a_team_the_file_does_not_define_is_a_warning_at_its_line() -> None:
    config = parse_config(ELSEWHERE, "c.yaml")
    warnings = config.warnings()
    assert [w.split(" (")[0] for w in warnings] == [
        "c.yaml:5: routing.default_team: team 'nosuch' is not defined in this file",
        "c.yaml:7: routing.rules[0].team: team 'partners' is not defined in this file",
        "c.yaml:11: sla.policies[0].teams[1]: team 'apac' is not defined in this file",
    ]
    assert "its leads wait unless its reps are added through PUT /v1/reps" in warnings[0]


def test_the_default_team_from_the_environment_is_checked_too() -> None:
    config = parse_config(TEAMS, "c.yaml")
    (warning,) = config.warnings("default")
    assert warning.startswith("LEADFLOW_DEFAULT_TEAM='default' (where leads that match no routing rule go")
    assert config.warnings("sdr-emea") == []


def test_a_file_that_defines_no_team_manages_them_all_through_the_api() -> None:
    assert parse_config("routing:\n  rules:\n    - {team: partners}\n", "c.yaml").warnings() == []


def test_check_config_prints_the_warnings_and_passes(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(ELSEWHERE, encoding="utf-8")
    keep = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    keep["LEADFLOW_LEAD_ID_KEY"] = "0123456789abcdef" * 4  # else its warning too (tests/agents/test_check_config_warnings.py)
    done = subprocess.run([sys.executable, "-m", "leadflow", "worker", "--config", str(path), "--check-config"],
                          env=keep, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "config OK: 2 team(s), 0 rep(s), 0 API key(s)\n"
    assert [line.split(" (")[0] for line in done.stderr.splitlines()] == [
        f"leadflow: warning: {path}:5: routing.default_team: team 'nosuch' is not defined in this file",
        f"leadflow: warning: {path}:7: routing.rules[0].team: team 'partners' is not defined in this file",
        f"leadflow: warning: {path}:11: sla.policies[0].teams[1]: team 'apac' is not defined in this file",
    ]

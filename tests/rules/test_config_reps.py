"""The YAML's reps: refused where ``PUT /v1/reps/{id}`` refuses them, and every mistake at its line."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.api.reps import REP_INPUT_MODEL
from leadflow.errors import ConfigError
from streams.app import create_app
from streams.config import parse_config
from streams.settings import Settings

GOOD_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="

_ONE_REP = """\
teams:
  - id: t
    reps:
      - id: ok
      - id: a
        {field}: "{value}"
"""

BAD = [
    ("webhook_url", "ftp://x", "URL scheme must be http or https, not 'ftp'"),
    ("webhook_url", "hooks.example.com/a", "URL scheme must be http or https, not 'missing'"),
    ("webhook_url", "https://user:pw@hooks.example.com/a", "URL must not contain credentials"),
    ("webhook_secret", "abc", "webhook secret must start with 'whsec_'"),
    ("webhook_secret", "whsec_not base64!", "webhook secret must be 'whsec_' followed by base64"),
]


def _api_reason(field: str, value: str) -> str:
    with pytest.raises(ValidationError) as refused:
        REP_INPUT_MODEL.model_validate({"team": "t", field: value})
    (error,) = refused.value.errors()
    assert error["loc"] == (field,)
    return str(error["msg"])


@pytest.mark.parametrize(("field", "value", "reason"), BAD)
def test_the_config_refuses_what_the_api_refuses_with_the_same_reason(field: str, value: str, reason: str) -> None:
    api_reason = _api_reason(field, value)
    assert reason in api_reason
    with pytest.raises(ConfigError) as refused:
        parse_config(_ONE_REP.format(field=field, value=value), "c.yaml")
    assert str(refused.value) == f"invalid configuration:\n  c.yaml:6: teams[0].reps[1].{field}: {api_reason}"


def test_a_refused_secret_is_not_quoted() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(_ONE_REP.format(field="webhook_secret", value="hunter2-secret"), "c.yaml")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(("field", "value"), [
    ("webhook_url", "https://hooks.example.com/a?x=1"), ("webhook_url", "http://127.0.0.1:8090/hooks/a"),
    ("webhook_secret", GOOD_SECRET),
])
def test_good_values_pass_both(field: str, value: str) -> None:
    REP_INPUT_MODEL.model_validate({"team": "t", field: value})
    # A URL needs its secret in the file (the API generates one): given here by a variable's name.
    text = _ONE_REP.format(field=field, value=value) + ("        webhook_secret_env: T_SECRET\n"
                                                        if field == "webhook_url" else "")
    (rep,) = [r for r in parse_config(text).teams[0].reps if r.id == "a"]
    assert getattr(rep, field) == value


def test_the_worker_refuses_them_at_start_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "teams.yaml"
    path.write_text(_ONE_REP.format(field="webhook_url", value="ftp://x"))
    with pytest.raises(ConfigError, match=rf"{path}:6: teams\[0\]\.reps\[1\]\.webhook_url: .*URL scheme must be http"):
        create_app(Settings.from_env({"LEADFLOW_CONFIG": str(path), "LEADFLOW_STORE": "memory"}))


# --- a rep listed twice --------------------------------------------------------------------------

def test_a_rep_listed_twice_in_one_team_is_named_at_the_second_entry() -> None:
    text = "teams:\n  - id: t\n    reps:\n      - {id: a}\n      - {id: b}\n      - {id: a, capacity: 3}\n"
    with pytest.raises(ConfigError) as refused:
        parse_config(text, "c.yaml")
    assert str(refused.value) == ("invalid configuration:\n"
                                  "  c.yaml:6: teams[0].reps[2]: Value error, rep 'a' is listed twice in team 't'")


def test_a_rep_in_two_teams_is_named_at_the_second_team_entry() -> None:
    text = ("teams:\n  - id: t\n    reps:\n      - {id: a}\n"
            "  - id: u\n    reps:\n      - {id: b}\n      - {id: a}\n")
    with pytest.raises(ConfigError) as refused:
        parse_config(text, "c.yaml")
    assert str(refused.value) == ("invalid configuration:\n  c.yaml:8: teams[1].reps[1]: Value error, rep 'a' "
                                  "appears in more than one team ('t' and 'u'); a rep belongs to one team")


def test_the_api_refuses_a_reps_overlapping_hours_naming_the_field() -> None:
    # Stored, they made BusinessCalendar raise at every routing decision: the whole team stopped.
    with pytest.raises(ValidationError) as refused:
        REP_INPUT_MODEL.model_validate({"team": "t", "working_hours": {"mon-fri": ["09:00-17:00"],
                                                                       "fri": ["16:00-18:00"]}})
    (error,) = refused.value.errors()
    assert error["loc"] == ("working_hours",) and "overlaps 'mon-fri' '09:00-17:00' on fri" in error["msg"]

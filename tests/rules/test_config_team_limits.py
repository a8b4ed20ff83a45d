"""The file's teams within the limits a team has through the API (rules.team, rules.roster), at their lines.

A file over them used to load ("config OK") and the team then refused some reps at start-up,
which ones depending on the order they arrived (docs/routing.md, "How big a team may be").
"""
from __future__ import annotations

import pytest

from leadflow.errors import ConfigError
from rules.team import MAX_REPS
from streams.config import parse_config


def _team(reps: list[str]) -> str:
    return "teams:\n  - id: t\n    reps:\n" + "".join(f"      - {rep}\n" for rep in reps)


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as refused:
        parse_config(text, "c.yaml")
    return str(refused.value)


def test_a_team_of_more_reps_than_a_team_may_hold_is_refused_at_the_first_rep_over_in_the_apis_words() -> None:
    text = _team([f"{{id: r{i}}}" for i in range(MAX_REPS + 9)])
    message = _refused(text)
    # The first rep over, at its line (the list starts on line 4), as PUT /v1/teams/{id}/reps/{rep} says it.
    assert f"c.yaml:{4 + MAX_REPS}: teams[0].reps[{MAX_REPS}]: team t has {MAX_REPS} reps, the most a team may " \
        f"have ({MAX_REPS};" in message
    assert "Tuple should have" not in message and f"reps[{MAX_REPS + 1}]" not in message
    parse_config(_team([f"{{id: r{i}}}" for i in range(MAX_REPS)]), "c.yaml")  # the most is fine


def test_a_team_too_big_to_write_is_refused_at_the_first_rep_past_the_budget() -> None:
    url = "https://hooks.example.com/" + "p" * 1900
    reps = [f"{{id: r{i}, name: {'N' * 200}, webhook_url: '{url}', webhook_secret_env: S{i}}}" for i in range(300)]
    message = _refused(_team(reps))
    assert "c.yaml:226: teams[0].reps[222]: team t would take" in message
    assert "more than the 600000 a team may" in message


@pytest.mark.parametrize(("rep", "field", "problem"), [
    ("{id: a, name: " + "N" * 201 + "}", "name", "at most 200 characters"),
    ("{id: a, skills: [" + "x" * 65 + "]}", "skills[0]", "at most 64 characters"),
    ("{id: a, languages: ['']}", "languages[0]", "at least 1 character"),
    ("{id: a, skills: [" + ", ".join(f"s{i}" for i in range(51)) + "]}", "skills", "at most 50 items"),
    ("{id: a, email: " + "e" * 250 + "@x.io}", "email", "at most 254 characters"),
])
def test_a_reps_fields_have_the_apis_limits(rep: str, field: str, problem: str) -> None:
    message = _refused(_team([rep]))
    assert f"c.yaml:4: teams[0].reps[0].{field}: " in message and problem in message


@pytest.mark.parametrize("extra", ["working_hours: {mon-fri: ['09:00-17:00']}", "holidays_country: AU"])
def test_a_rep_with_hours_or_holidays_names_their_time_zone(extra: str) -> None:
    # Left out, it was UTC: a Sydney rep's 09:00-17:00 became 20:00-04:00 in Sydney.
    message = _refused(_team(["{id: a, " + extra + "}"]))
    assert "c.yaml:4: teams[0].reps[0].timezone: Value error, required with working_hours or holidays_country" \
        in message
    parse_config(_team(["{id: a, timezone: Australia/Sydney, " + extra + "}"]), "c.yaml")
    parse_config(_team(["{id: a, timezone: UTC, " + extra + "}"]), "c.yaml")  # said on purpose


def test_a_reps_id_is_ascii_as_in_the_api() -> None:
    assert "teams[0].reps[0].id" in _refused(_team(["{id: \u0410na}"]))

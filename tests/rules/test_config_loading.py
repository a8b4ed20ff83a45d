"""Mistakes the YAML loader passed over silently or answered with a traceback: each is now one line,
``file:line: path: problem``, at the worker's start and in ``--check-config``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.errors import ConfigError
from streams.config import load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    return str(caught.value)


# --- tracebacks ----------------------------------------------------------------------------------

def test_a_file_that_is_not_utf8_is_named_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes("teams:\n  - id: t\n    reps:\n      - {id: chloe, name: Chloé}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:  # a UnicodeDecodeError traceback before
        load_config(path)
    assert str(caught.value) == f"{path}:4: not UTF-8 (byte 0xe9 at column 31); save the file as UTF-8"


CALENDAR = """\
sla:
  calendars:
    c1:
      timezone: {zone}
      hours: {{mon-fri: ["09:00-17:00"]}}
      closed: [{day}]
"""


def test_a_date_that_does_not_exist_is_named_at_its_line() -> None:
    # A ValueError "day is out of range for month" from the YAML loader before.
    assert _refused(CALENDAR.format(zone="Europe/Madrid", day="2026-02-30")) == (
        "invalid configuration:\n  c.yaml:6: sla.calendars.c1.closed[0]: '2026-02-30' is not a date "
        "(day is out of range for month)")


@pytest.mark.parametrize("zone", ["America", "Europe/", "../../etc/passwd", "x" * 300])
def test_a_time_zone_that_names_a_folder_is_an_unknown_zone(zone: str) -> None:
    # IsADirectoryError before (a rep's zone was already checked this way; now one check for both).
    problem = _refused(CALENDAR.format(zone=zone, day="2026-12-24"))
    assert "c.yaml:4: sla.calendars.c1.timezone: Value error, unknown time zone" in problem
    rep = _refused(f"teams:\n  - id: t\n    reps:\n      - {{id: a, timezone: {zone}}}\n")
    assert "c.yaml:4: teams[0].reps[0].timezone: Value error, unknown time zone" in rep


# --- silently wrong ------------------------------------------------------------------------------

def test_a_key_given_twice_is_refused_at_the_second() -> None:
    # capacity 300 won before.
    assert _refused("teams:\n  - id: t\n    reps:\n      - {id: ana, capacity: 3,\n         capacity: 300}\n") == (
        "invalid configuration:\n  c.yaml:5: teams[0].reps[0].capacity: key 'capacity' is given twice in this "
        "mapping (first at line 4); keep one")


def test_a_section_given_twice_is_refused_at_the_second() -> None:
    # The first list of teams was dropped before.
    problem = _refused("teams:\n  - id: a\nrouting:\n  default_team: a\nteams:\n  - id: b\n")
    assert problem == ("invalid configuration:\n  c.yaml:5: teams: key 'teams' is given twice in this mapping "
                       "(first at line 1); keep one")


def test_merge_keys_may_repeat_what_they_merge() -> None:
    config = parse_config("teams:\n  - id: t\n    reps:\n      - &ana {id: ana, capacity: 3}\n"
                          "      - {<<: *ana, id: ben}\n")
    assert [(r.id, r.capacity) for r in config.teams[0].reps] == [("ana", 3), ("ben", 3)]


@pytest.mark.parametrize(("field", "path"), [
    ("capacity", "teams[0].reps[0].capacity"), ("weight", "teams[0].reps[0].weight"),
    ("daily_cap", "teams[0].reps[0].daily_cap"), ("weekly_cap", "teams[0].reps[0].weekly_cap"),
])
def test_true_is_not_a_count(field: str, path: str) -> None:
    # Read as 1 before.
    problem = _refused(f"teams:\n  - id: t\n    reps:\n      - {{id: a, {field}: true}}\n")
    assert f"c.yaml:4: {path}: Input should be a valid integer" in problem


def test_true_is_not_a_rate_or_a_priority() -> None:
    problem = _refused("api_keys:\n  - {name: web, key_sha256: " + "0" * 64 + ", rate_per_minute: true}\n"
                       "routing:\n  tier_priorities: {strategic: false}\n")
    assert "c.yaml:2: api_keys[0].rate_per_minute: Input should be a valid integer" in problem
    assert "c.yaml:4: routing.tier_priorities.strategic: Input should be a valid integer" in problem


KEYS = """\
api_keys:
  - {name: web, key_env: T_KEY_A}
  - {name: partners, key_env: T_KEY_B}
"""


def test_one_key_under_two_names_is_refused_at_the_second() -> None:
    config = parse_config(KEYS, "c.yaml")
    config.lead_policy("default", {"T_KEY_A": "key-one-aaaaaaaa", "T_KEY_B": "key-two-bbbbbbbb"})
    with pytest.raises(ConfigError) as caught:  # 'web' was lost before: every request counted as 'partners'
        config.lead_policy("default", {"T_KEY_A": "same-key-aaaaaaa", "T_KEY_B": "same-key-aaaaaaa"})
    assert str(caught.value) == ("invalid configuration:\n  c.yaml:3: api_keys[1]: key 'partners' is the same key "
                                 "as api_keys[0] ('web'); give each source its own key")
    assert "same-key" not in str(caught.value)


def test_unset_key_variables_are_not_taken_for_one_key() -> None:
    # While the check runs, every unset variable reads as the same stand-in: only "not set" is said.
    config = parse_config(KEYS, "c.yaml")
    with pytest.raises(ConfigError) as caught:
        config.lead_policy("default", {})
    assert "is the same key" not in str(caught.value)
    assert "environment variable T_KEY_A is not set" in str(caught.value)


def test_check_config_says_the_same_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CALENDAR.format(zone="America", day="2026-12-24"), encoding="utf-8")
    keep = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    done = subprocess.run([sys.executable, "-m", "leadflow", "worker", "--config", str(path), "--check-config"],
                          env=keep, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr == (f"leadflow: invalid configuration:\n  {path}:4: sla.calendars.c1.timezone: Value error, "
                           "unknown time zone 'America' (use an IANA name such as Europe/Madrid)\n")

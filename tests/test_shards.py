"""How the integration files are split into shards (tests/shards.py) and what each shard runs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import shards
from tests.suite import REPO, port_clash, shard_env


def test_every_file_goes_to_one_shard_and_the_shards_are_about_equal() -> None:
    weights = {"a.py": 90.0, "b.py": 50.0, "c.py": 40.0, "d.py": 30.0, "e.py": 20.0, "f.py": 10.0}
    groups = shards.split(weights, weights, 2)
    assert sorted(f for group in groups for f in group) == sorted(weights)
    assert [sum(weights[f] for f in group) for group in groups] == [120.0, 120.0]
    assert groups == [["a.py", "d.py"], ["b.py", "c.py", "e.py", "f.py"]]


def test_a_file_not_measured_yet_counts_as_a_typical_file() -> None:
    groups = shards.split(["new.py", "a.py", "b.py"], {"a.py": 30.0, "b.py": 25.0}, 2)
    # a.py (30) to shard 0, b.py (25) to shard 1, new.py (20) to the lighter: shard 1.
    assert groups == [["a.py"], ["b.py", "new.py"]]


@given(st.dictionaries(st.from_regex(r"test_[a-z]{1,8}\.py", fullmatch=True), st.floats(0, 500), max_size=40),
       st.integers(1, 5))
def test_any_split_takes_each_file_once_and_no_shard_exceeds_the_lightest_by_more_than_one_file(
        weights: dict[str, float], count: int) -> None:
    groups = shards.split(weights, weights, count)
    assert len(groups) == count
    assert sorted(f for group in groups for f in group) == sorted(weights)
    totals = [sum(weights[f] for f in group) for group in groups]
    # Longest first to the lightest: a shard is above the lightest by at most its own last file.
    assert max(totals) - min(totals) <= max(weights.values(), default=0.0) + 1e-9
    assert groups == shards.split(list(reversed(list(weights))), weights, count)  # the order given does not matter


@pytest.mark.parametrize(("value", "message"), [
    ("2", "expected i/n"), ("a/2", "expected i/n"), ("2/2", "below the count"), ("0/0", "below the count"),
    ("-1/2", "expected i/n"),
])
def test_a_wrong_shard_says_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(shards.ShardError, match=message):
        shards.parse(value)


def test_update_folds_recorded_seconds_in_and_drops_files_that_are_gone(tmp_path: Path) -> None:
    table = tmp_path / "durations.json"
    name = "tests/integration/test_faults.py"
    table.write_text(json.dumps({name: 1.0, "tests/integration/test_gone.py": 5.0}))
    record = tmp_path / "integration-durations-1.json"
    record.write_text(json.dumps({name: 12.34}))
    assert shards.update([record], table) == {name: 12.3}
    assert json.loads(table.read_text()) == {name: 12.3}


def test_each_shard_has_its_own_stack() -> None:
    base = {"PATH": "/bin", "LEADFLOW_TEST_KAFKA_PORT": "24092"}
    first, second = shard_env(0, 2, base), shard_env(1, 2, base)
    assert first["LEADFLOW_TEST_SHARD"] == "0/2" and second["LEADFLOW_TEST_SHARD"] == "1/2"
    assert (first["LEADFLOW_TEST_KAFKA_PORT"], second["LEADFLOW_TEST_KAFKA_PORT"]) == ("24092", "24192")
    assert (first["LEADFLOW_TEST_REDIS_PORT"], second["LEADFLOW_TEST_REDIS_PORT"]) == ("26379", "26479")
    assert second["LEADFLOW_TEST_STATE_DIR"] == first["LEADFLOW_TEST_STATE_DIR"] + "-1"
    assert first["PATH"] == "/bin" and "LEADFLOW_TEST_SHARD" not in base


def _collected(shard: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != shards.ENV} | ({shards.ENV: shard} if shard else {})
    out = subprocess.run([sys.executable, "-m", "pytest", "-m", "integration", "--collect-only", "-q",
                          "-p", "no:cacheprovider"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line for line in out.stdout.splitlines() if re.match(r"tests/[\w/]+\.py::", line)]


def _files(tests: list[str]) -> set[str]:
    return {t.split("::")[0] for t in tests}


def test_the_shards_of_a_run_together_select_every_integration_test_once() -> None:
    everything = _collected(None)
    first, second = _collected("0/2"), _collected("1/2")
    assert first and second
    assert sorted(first + second) == sorted(everything)
    assert not _files(first) & _files(second)  # whole files
    # Integration tests outside tests/integration are shared out too (two shards would run them at once).
    assert "tests/ops/test_stack.py" in _files(everything)
    # Each file has its measured seconds, so the split is the balanced one.
    weights = shards.load_weights()
    missing, stale = sorted(_files(everything) - set(weights)), sorted(set(weights) - _files(everything))
    assert not missing and not stale, (
        f"tests/integration/durations.json is out of date (not measured: {missing}, gone: {stale}): "
        "add a new file with the seconds it takes alone, or run `make test`, then `python -m tests.shards --update`")


def test_a_wrong_shard_stops_the_run_with_its_message() -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "-m", "integration", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "tests/integration"],
                         cwd=REPO, env=os.environ | {shards.ENV: "3/2"}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 4  # pytest's usage error
    assert "LEADFLOW_TEST_SHARD='3/2'" in out.stderr + out.stdout


def test_a_state_dir_with_a_trailing_slash_still_gives_each_shard_its_own() -> None:
    # Review s18-c: "…/mine/" made shard 1's dir "…/mine/-1", inside shard 0's, which shard 0's
    # fresh start deleted under shard 1's running Kafka.
    second = shard_env(1, 2, {"LEADFLOW_TEST_STATE_DIR": "/tmp/x/mine/"})
    assert second["LEADFLOW_TEST_STATE_DIR"] == "/tmp/x/mine-1"


def test_shards_whose_ports_would_meet_are_refused_with_the_port() -> None:
    assert port_clash(2, {}) is None
    assert port_clash(3, {"LEADFLOW_TEST_KAFKA_PORT": "24092", "LEADFLOW_TEST_REDIS_PORT": "24379"}) is None
    clash = port_clash(2, {"LEADFLOW_TEST_KAFKA_PORT": "24092", "LEADFLOW_TEST_REDIS_PORT": "24193"})
    assert clash is not None and "port 24193" in clash and "shard 1's Kafka's controller" in clash


def test_a_path_outside_tests_integration_is_split_too() -> None:
    # Review s18-c: with the split hook in tests/integration/conftest.py, a run of tests/ops/test_stack.py
    # alone never loaded it, and both shards ran its integration tests at once on the same fixed ports.
    def files(shard: str) -> set[str]:
        out = subprocess.run([sys.executable, "-m", "pytest", "-m", "integration", "--collect-only", "-q",
                              "-p", "no:cacheprovider", "tests/ops/test_stack.py"],
                             cwd=REPO, env=os.environ | {shards.ENV: shard}, capture_output=True, text=True, timeout=120)
        return _files([line for line in out.stdout.splitlines() if "::" in line])
    assert files("0/2") | files("1/2") == {"tests/ops/test_stack.py"}
    assert not files("0/2") & files("1/2")


def test_an_empty_state_dir_is_the_default_and_none_may_hold_the_repo() -> None:
    # Review s18-f: an empty LEADFLOW_TEST_STATE_DIR was Path("") = ".", and the stack fixture's fresh
    # start ran shutil.rmtree(".") in the repo.
    from tests.integration.conftest import _state_dir
    assert shard_env(0, 2, {"LEADFLOW_TEST_STATE_DIR": ""})["LEADFLOW_TEST_STATE_DIR"] == str(REPO / ".state" / "test-stack")
    assert _state_dir("") == REPO / ".state" / "test-stack"
    for bad in (".", str(REPO), str(REPO.parent), "/"):
        with pytest.raises(pytest.UsageError, match="would delete"):
            _state_dir(bad)
    assert _state_dir(str(REPO / ".state" / "mine")) == REPO / ".state" / "mine"

"""Suite-wide settings: agent tests build the Faust app in-process with in-memory tables."""
from __future__ import annotations

import os
import tempfile

import pytest

from tests import shards

# Read when streams.app is first imported (agent tests); real workers started by the
# integration tests get their own environment with the RocksDB store.
os.environ.setdefault("LEADFLOW_STORE", "memory")
os.environ.setdefault("LEADFLOW_DATA_DIR", tempfile.mkdtemp(prefix="leadflow-agent-tests-"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test fails the run: a test that did not run must not pass for one that did.

    ``LEADFLOW_TEST_ALLOW_SKIPS=1`` lets a developer run a part of the suite on a machine that
    lacks something on purpose; CI never sets it.
    """
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == 0 and os.environ.get("LEADFLOW_TEST_ALLOW_SKIPS") != "1":
        reporter.ensure_newline()
        reporter.write_line(f"{len(skipped)} test(s) skipped: the run fails (set LEADFLOW_TEST_ALLOW_SKIPS=1 "
                            "to allow it on purpose)", red=True)
        session.exitstatus = 1
    _record_shard(session)


# --- integration shards (tests/shards.py): here, not in tests/integration/conftest.py, so a run of
# --- an integration test outside tests/integration (tests/ops/test_stack.py) is split too.

def _integration_file(item: pytest.Item) -> str | None:
    """The file of an integration test (every test under tests/integration, and those marked
    elsewhere), from the repo's root; None for any other test."""
    path = item.nodeid.split("::", 1)[0]
    return path if path.startswith("tests/integration/") or item.get_closest_marker("integration") else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not (value := os.environ.get(shards.ENV)):
        return
    # One shard of the integration files: the others are another run's. Split over every
    # integration file collected, so each shard computes the same split.
    try:
        index, count = shards.parse(value)
    except shards.ShardError as e:
        raise pytest.UsageError(str(e)) from None
    files = {name for item in items if (name := _integration_file(item))}
    mine = set(shards.split(files, shards.load_weights(), count)[index])
    kept: list[pytest.Item] = []
    others: list[pytest.Item] = []
    for item in items:
        (kept if (name := _integration_file(item)) is None or name in mine else others).append(item)
    if others:
        config.hook.pytest_deselected(items=others)
        items[:] = kept


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "integration" in report.keywords:
        shards.note_duration(report.nodeid.split("::", 1)[0], report.when, report.duration)


def _record_shard(session: pytest.Session) -> None:
    """A whole shard that passed (no paths, no -k) says what its files take, for ``--update``."""
    value = os.environ.get(shards.ENV)
    whole = session.config.args_source == pytest.Config.ArgsSource.TESTPATHS and not session.config.option.keyword
    if value and whole and session.exitstatus == 0:
        shards.write_record(shards.parse(value)[0])

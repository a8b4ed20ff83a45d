"""The real local stack (Kafka KRaft + Redis) for the integration tests, started by the suite itself.

The stack uses its own state dir and ports so it never collides with a developer's
``make run``. It is stopped at the end unless ``LEADFLOW_TEST_KEEP_STACK=1``, and so are the
workers still running when pytest gets SIGTERM (by their pids).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType

import aiohttp
import pytest

from ops.stack import StackConfig, stack_down, stack_status, stack_up
from ops.stack.process import tail
from tests import shards
from tests.integration.harness import API_KEY, Receiver, WorkerSpec, kill_live_workers

REPO = Path(__file__).resolve().parents[2]
#: How much of each worker's log a failing test's report shows.
WORKER_LOG_LINES = 150


def _path(nodeid: str) -> str:
    """The file of a test, from the repo's root (``tests/integration/test_faults.py``)."""
    return nodeid.split("::", 1)[0]


def _integration_file(item: pytest.Item) -> str | None:
    """The file of an integration test (every test here, and those marked elsewhere), or None."""
    path = _path(item.nodeid)
    return path if path.startswith("tests/integration/") or item.get_closest_marker("integration") else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith("tests/integration/"):
            item.add_marker(pytest.mark.integration)
    if not (value := os.environ.get(shards.ENV)):
        return
    # One shard of the integration files (tests/shards.py): the others are another run's. Split
    # over every integration file collected, so each shard computes the same split.
    try:
        index, count = shards.parse(value)
    except shards.ShardError as e:
        raise pytest.UsageError(str(e)) from None
    files = {name for item in items if (name := _integration_file(item))}
    mine = set(shards.split(files, shards.load_weights(), count)[index])
    kept, others = [], []
    for item in items:
        (kept if (name := _integration_file(item)) is None or name in mine else others).append(item)
    if others:
        config.hook.pytest_deselected(items=others)
        items[:] = kept


#: Seconds each integration file took in this run (setup, call and teardown of its tests).
_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "integration" in report.keywords:
        name = _path(report.nodeid)
        _SECONDS[name] = _SECONDS.get(name, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A whole shard that passed says what its files take, for `python -m tests.shards --update`.
    value = os.environ.get(shards.ENV)
    if value and _SECONDS and exitstatus == 0 and not session.config.option.keyword:
        path = shards.record_path(shards.parse(value)[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({name: round(s, 1) for name, s in sorted(_SECONDS.items())}, indent=1) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test's report carries the end of each of its workers' logs.

    The logs live in the test's ``tmp_path``, which pytest deletes after a few more runs: in CI
    the report is all that is left to tell why a worker did not do what the test waited for.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when != "call" or not report.failed or tmp is None:
        return
    for log in sorted(Path(tmp).glob("worker-*.log")):
        report.sections.append((f"{log.name} (last {WORKER_LOG_LINES} lines)", tail(log, WORKER_LOG_LINES)))


@pytest.fixture(scope="session")
def stack() -> Iterator[StackConfig]:
    cfg = StackConfig(
        state_dir=Path(os.environ.get("LEADFLOW_TEST_STATE_DIR", REPO / ".state" / "test-stack")),
        kafka_port=int(os.environ.get("LEADFLOW_TEST_KAFKA_PORT", "29092")),
        kafka_controller_port=int(os.environ.get("LEADFLOW_TEST_KAFKA_PORT", "29092")) + 1,
        redis_port=int(os.environ.get("LEADFLOW_TEST_REDIS_PORT", "26379")),
    )
    keep = os.environ.get("LEADFLOW_TEST_KEEP_STACK") == "1"
    if not keep and not stack_status(cfg).running:
        # A fresh broker for each run: every test has its own app id, so the topics of earlier
        # runs would pile up in the state dir and slow the broker's start more every time.
        shutil.rmtree(cfg.state_dir, ignore_errors=True)
    stack_up(cfg)

    def terminated(signum: int, frame: FrameType | None) -> None:
        # SIGTERM (a CI timeout, `timeout`, kill) ends pytest without running a fixture's teardown:
        # the workers and the stack would outlive it and hold their ports for the next run.
        kill_live_workers()
        if not keep:
            stack_down(cfg)
        os._exit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield cfg
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not keep:
        stack_down(cfg)


@pytest.fixture
def spec(stack: StackConfig, tmp_path: Path) -> WorkerSpec:
    return WorkerSpec(stack=stack, tmp=tmp_path)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def api() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"},
                                     timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session

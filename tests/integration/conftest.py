"""The real local stack (Kafka KRaft + Redis) for the integration tests, started by the suite itself.

The stack uses its own state dir and ports so it never collides with a developer's
``make run``. It is stopped at the end unless ``LEADFLOW_TEST_KEEP_STACK=1``, and so are the
workers still running when pytest gets SIGTERM (by their pids).
"""
from __future__ import annotations

import os
import shutil
import signal
import time
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith("tests/integration/"):
            item.add_marker(pytest.mark.integration)


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


def _state_dir(value: str | None) -> Path:
    """``LEADFLOW_TEST_STATE_DIR`` (unset or empty: ``.state/test-stack``). The fixture deletes it for
    a fresh start, so never a dir that holds the repo or the working dir (review s18-f: an empty
    value was ``.``, and the fresh start deleted the checkout)."""
    path = Path(value).resolve() if value else REPO / ".state" / "test-stack"
    for precious in (REPO.resolve(), Path.cwd().resolve()):
        if path == precious or path in precious.parents:
            raise pytest.UsageError(f"LEADFLOW_TEST_STATE_DIR={value!r} holds {precious}, which the stack's fresh "
                                    "start would delete: give the test stack a dir of its own")
    return path


class _Terminated(BaseException):
    """A signal while the stack starts: ``stack_up`` stops what it started (it does on any
    exception) and the run then ends with the signal's status."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@pytest.fixture(scope="session")
def stack() -> Iterator[StackConfig]:
    cfg = StackConfig(
        state_dir=_state_dir(os.environ.get("LEADFLOW_TEST_STATE_DIR")),
        kafka_port=int(os.environ.get("LEADFLOW_TEST_KAFKA_PORT", "29092")),
        kafka_controller_port=int(os.environ.get("LEADFLOW_TEST_KAFKA_PORT", "29092")) + 1,
        redis_port=int(os.environ.get("LEADFLOW_TEST_REDIS_PORT", "26379")),
    )
    keep = os.environ.get("LEADFLOW_TEST_KEEP_STACK") == "1"
    # SIGTERM (a CI timeout, the suite runner passing Ctrl-C on, kill) ends pytest without running
    # a fixture's teardown: the workers and the stack would outlive it and hold their ports. So the
    # handler is in place from before the stack starts until after it has stopped (review s18-c):
    # while starting, the start is undone; while tests run, workers and stack are stopped here;
    # while stopping, the stop goes on and the run ends after it with the signal's status.
    phase, pending = "starting", []
    previous_term, previous_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def terminated(signum: int, frame: FrameType | None) -> None:
        nonlocal phase
        if phase == "starting":
            phase = "aborting"  # once: a second signal must not cut the undoing short
            raise _Terminated(signum)
        if phase != "running":
            pending.append(signum)
            return
        if signum == signal.SIGINT and callable(previous_int):
            previous_int(signum, frame)  # pytest's KeyboardInterrupt: it tears the session down
            return
        phase = "stopping"
        kill_live_workers()
        if not keep:
            stack_down(cfg)
        os._exit(128 + signum)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)

    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGINT, terminated)
    try:
        if not keep and not stack_status(cfg).running:
            # A fresh broker for each run: every test has its own app id, so the topics of earlier
            # runs would pile up in the state dir and slow the broker's start more every time.
            shutil.rmtree(cfg.state_dir, ignore_errors=True)
        started = time.monotonic()
        stack_up(cfg)
        shards.note_stack_start(time.monotonic() - started)
    except _Terminated as stopped:
        kill_live_workers()
        os._exit(128 + stopped.signum)
    except BaseException:
        restore()  # a failed start: the run goes on to its end, and a signal must still stop it (review s18-f)
        raise
    phase = "running"
    try:
        yield cfg
    finally:
        phase = "stopping"
        if not keep:
            stack_down(cfg)
        restore()
        if pending:
            os._exit(128 + pending[0])


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

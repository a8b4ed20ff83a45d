"""The real local stack (Kafka KRaft + Redis) for the integration tests, started by the suite itself.

The stack uses its own state dir and ports so it never collides with a developer's
``make run``. It is stopped at the end unless ``LEADFLOW_TEST_KEEP_STACK=1``.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from ops.stack import StackConfig, stack_down, stack_status, stack_up
from tests.integration.harness import API_KEY, Receiver, WorkerSpec

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


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
    yield cfg
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

"""Faust's ``test_context()`` for our agents: sends are captured instead of reaching Kafka."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

from rules.commands import Outgoing
from streams import stopping
from streams.app import app, runtime


class Published:
    """Records what agents publish, and what the tables held at that moment."""

    def __init__(self) -> None:
        self.batches: list[tuple[Outgoing, ...]] = []
        self.on_publish: Any = None

    async def __call__(self, outgoing: Any) -> None:
        if self.on_publish is not None:
            self.on_publish(tuple(outgoing))
        self.batches.append(tuple(outgoing))

    @property
    def messages(self) -> list[Outgoing]:
        return [m for batch in self.batches for m in batch]

    def values(self, kind: type) -> list[Any]:
        return [m.value for m in self.messages if isinstance(m.value, kind)]


class FakeTopic:
    """Stands in for a topic an agent sends to directly (intake, notifier)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any, Any]] = []

    async def send(self, *, key: Any = None, value: Any = None, headers: Any = None) -> "asyncio.Future[None]":
        self.sent.append((key, value, headers))
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)  # like Faust's FutureMessage once the broker acknowledged it
        return acked


@pytest.fixture(scope="session", autouse=True)
def _faust_app() -> Iterator[None]:
    app.finalize()
    app.flow_control.resume()
    yield


@pytest.fixture
def published() -> Published:
    return Published()


async def until(condition: Any, timeout: float = 3.0) -> None:
    """Batching agents (``take_ready``) handle what was put a moment later: wait for ``condition()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("the agent did not get there in time")
        await asyncio.sleep(0.005)


def replayed(agent: str) -> float:
    """How many commands ``agent`` skipped as already applied (``leadflow_commands_replayed_total``)."""
    return runtime.metrics.registry.get_sample_value("leadflow_commands_replayed_total", {"agent": agent}) or 0.0


class Exited(Exception):
    """What ``stopping.exit_now`` raises in tests (the ``exits`` fixture) instead of ending the process."""


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``stopping.exit_now`` recorded and raised (``Exited``), not ``os._exit``."""
    reasons: list[str] = []

    def exit_now(reason: str, status: int | None = None) -> NoReturn:
        reasons.append(reason)
        raise Exited(reason)

    monkeypatch.setattr(stopping, "exit_now", exit_now)
    return reasons


@pytest.fixture
def stopping_app() -> Iterator[Callable[[], None]]:
    """Call it to make the app ``should_stop`` (what Faust's stop sets first); cleared after the test."""
    yield app._stopped.set
    app._stopped.clear()

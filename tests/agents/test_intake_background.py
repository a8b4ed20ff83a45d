"""The intake's background "seen" hints are settled when the worker stops, before Redis is closed.

s16 review: the ``mark_seen`` tasks were neither awaited nor cancelled at shutdown while Redis was
closed under them (a failure on a closed connection, or "Task was destroyed but it is pending").
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from streams.agents import intake
from streams.app import app


async def test_the_stop_waits_briefly_for_the_hints_then_cancels_what_is_left(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(intake, "_SETTLE_S", 0.2)
    caplog.set_level(logging.INFO, logger=intake.log.name)
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: loop_errors.append(context))
    done: list[str] = []
    redis_hangs = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0.05)
        done.append("quick")

    async def stuck() -> None:
        await redis_hangs.wait()  # never set: Redis does not answer
        done.append("stuck")

    try:
        intake._in_background(quick())
        intake._in_background(stuck())
        began = time.monotonic()
        await app.on_before_shutdown.send()  # what Faust's stop sends once the agents are done
        took = time.monotonic() - began
        assert done == ["quick"]  # waited for the hint that could finish
        assert 0.15 <= took < 1.0, took
        assert not intake._background  # nothing left for the closed loop to destroy
        assert loop_errors == []
        assert any("1 \"seen\" hint(s)" in r.getMessage() and "cancelled" in r.getMessage() for r in caplog.records)
    finally:
        loop.set_exception_handler(None)


async def test_nothing_pending_costs_the_stop_nothing() -> None:
    began = time.monotonic()
    await intake.settle_background()
    assert time.monotonic() - began < 0.05

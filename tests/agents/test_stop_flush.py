"""The stop's last producer flush is bounded (streams/stopping.py ``within_grace``, ``LeadflowApp._producer_flush``).

A CI rehearsal of session 17: SIGTERM with Kafka down and no agent publishing; Faust's "Flush
producer buffer..." waited for ever and the worker ended only when a timer happened to publish,
11.4 s later (the test allows 10).
"""
from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest

from streams import stopping
from streams.app import app
from tests.agents.conftest import Exited


async def test_a_step_that_never_ends_ends_the_process_after_the_grace(exits: list[str]) -> None:
    never = asyncio.get_running_loop().create_future()
    started = asyncio.get_running_loop().time()
    with pytest.raises(Exited):
        await stopping.within_grace(never, "the producer's flush", grace_s=0.2)
    assert 0.2 <= asyncio.get_running_loop().time() - started < 1.0
    assert exits == ["the producer's flush had not ended 0.2 s after it began (Kafka does not acknowledge)"]


async def test_a_step_that_ends_in_time_returns_its_outcome(exits: list[str]) -> None:
    await stopping.within_grace(asyncio.sleep(0.01), "the producer's flush", grace_s=1.0)

    async def fails() -> None:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        await stopping.within_grace(fails(), "the producer's flush", grace_s=1.0)
    assert exits == []


async def test_the_apps_flush_is_bounded_only_once_the_app_is_stopping(
        exits: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async def flush_for_ever(self: Any, logger: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(faust.App, "_producer_flush", flush_for_ever)
    monkeypatch.setattr(stopping, "FLUSH_GRACE_S", 0.1)
    # A rebalance's flush (not stopping) is left as Faust has it.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(app._producer_flush(app.log), 0.3)
    assert exits == []
    monkeypatch.setattr(type(app), "should_stop", property(lambda self: True))
    with pytest.raises(Exited):
        await app._producer_flush(app.log)
    assert exits and exits[0].startswith("the producer's flush had not ended")

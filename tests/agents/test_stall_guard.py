"""A worker whose loop stalled longer than its Kafka session exits before any produce request
(``streams/stall_guard.py``); shorter stalls change nothing."""
from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.streams import _current_event
from faust.types import TP

from rules.commands import Notify
from streams import stall_guard
from streams.agents import notifier
from streams.app import app, runtime
from streams.codec import SCHEMA, encode
from streams.stall_guard import EXIT_STALLED, StallWatch
from streams.tables._table import CodecTable
from tests.agents.test_state_cache import a_lead


@pytest.mark.parametrize(("gap", "frozen"), [
    (0.25, None),     # on time
    (5.0, None),      # a long GC pause: the session survives it
    (10.2, None),     # maybe 9.95 s frozen: not certainly past the session
    (10.5, 10.25),    # the tick was due at 0.25: frozen 10.25 s at least
    (30.0, 29.75),    # the deploy audit's SIGSTOP
])
def test_a_stall_counts_only_when_certainly_longer_than_the_session(gap: float, frozen: float | None) -> None:
    watch = StallWatch(session_s=10.0, tick_s=0.25)
    watch.tick(100.0)
    assert watch.stalled_for(100.0 + gap) == (pytest.approx(frozen) if frozen is not None else None)


def test_nothing_is_checked_before_the_watch_is_armed() -> None:
    assert StallWatch(session_s=10.0).stalled_for(1e9) is None
    stall_guard.disarm()
    stall_guard.check(clock=lambda: 1e9, exit_=lambda frozen, session: pytest.fail("exited unarmed"))


def test_check_exits_after_a_stall_and_not_before() -> None:
    now = [0.0]
    exits: list[tuple[float, float]] = []
    stall_guard.arm(10.0, 0.25, clock=lambda: now[0])
    try:
        now[0] = 9.0
        stall_guard.check(clock=lambda: now[0], exit_=lambda f, s: exits.append((f, s)))
        assert exits == []
        now[0] = 40.0
        stall_guard.check(clock=lambda: now[0], exit_=lambda f, s: exits.append((f, s)))
        assert exits == [(pytest.approx(39.75), 10.0)]
    finally:
        stall_guard.disarm()


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=30)


_LOOP = """
    import asyncio, logging, sys, time
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from streams import stall_guard

    async def main(block_s):
        task = asyncio.ensure_future(stall_guard.watch_loop(0.5, tick_s=0.05))
        await asyncio.sleep(0.2)
        time.sleep(block_s)  # the whole loop frozen, as SIGSTOP freezes it
        await asyncio.sleep(0.3)
        task.cancel()
        print("still running")

    asyncio.run(main(BLOCK))
"""


def test_a_loop_stalled_past_the_session_exits_with_its_own_status() -> None:
    done = _run(_LOOP.replace("BLOCK", "1.0"))
    assert done.returncode == EXIT_STALLED, done.stderr
    assert "still running" not in done.stdout
    assert "longer than its 0 s Kafka session" in done.stderr  # 0.5 s, printed as %.0f
    assert "exiting without writing anything" in done.stderr


def test_a_loop_stalled_less_than_the_session_goes_on() -> None:
    done = _run(_LOOP.replace("BLOCK", "0.3"))
    assert done.returncode == 0, done.stderr
    assert "still running" in done.stdout


def test_no_produce_request_leaves_after_a_stall_but_other_requests_do() -> None:
    """The check sits in aiokafka's ``AIOKafkaConnection.send``: what was buffered before the pause
    (Faust's producer buffer, aiokafka's accumulator) is not sent after it either."""
    done = _run("""
        import sys, time
        from aiokafka.conn import AIOKafkaConnection
        from aiokafka.errors import KafkaConnectionError
        from aiokafka.protocol.coordination import FindCoordinatorRequest
        from aiokafka.protocol.produce import ProduceRequest
        from streams import stall_guard

        stall_guard.install()
        conn = AIOKafkaConnection.__new__(AIOKafkaConnection)
        conn._writer, conn._host, conn._port = None, "nowhere", 1
        stall_guard.arm(0.2, tick_s=0.05)
        time.sleep(0.5)
        try:
            conn.send(FindCoordinatorRequest("g", 0))
        except KafkaConnectionError:
            print("other requests go through")
        conn.send(ProduceRequest(transactional_id=None, required_acks=-1, timeout=1000, topics=[]))
        print("produce request went out")
    """)
    assert done.returncode == EXIT_STALLED, done.stderr
    assert "other requests go through" in done.stdout
    assert "produce request went out" not in done.stdout


class _Exited(BaseException):
    """What ``os._exit`` is to the code after it: nothing more of it runs."""


@pytest.fixture
def stalled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The guard armed, its last tick 100 s ago: the next check finds a stall past the session.
    The exit raises instead of ending the test process, and records the stall it was given."""
    exits: list[float] = []

    def exit_(frozen: float, session_s: float) -> None:
        exits.append(frozen)
        raise _Exited

    monkeypatch.setattr(stall_guard, "_exit", exit_)
    stall_guard.arm(10.0, 0.25, clock=lambda: stall_guard._clock() - 100.0)
    try:
        yield exits
    finally:
        stall_guard.disarm()


_names = itertools.count()


class _Event:
    def __init__(self, message: Any) -> None:
        self.message = message


@pytest.fixture
def owned(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Table writes belong to an event of partition 0 (what an agent's batch sets)."""
    event = _Event(SimpleNamespace(tp=TP("lead.commands", 0), partition=0, offset=0, topic="lead.commands"))
    monkeypatch.setattr(faust.Table, "_verify_source_topic_partitions", lambda self, topic: None)
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


@pytest.mark.parametrize("kind", ["codec-rocksdb", "codec-memory", "plain"])
async def test_a_table_write_after_a_stall_exits_before_the_store_changes(
        kind: str, owned: None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Faust's ``Table.__setitem__`` buffers the changelog record, then writes the store: a woken
    zombie's write reached RocksDB while its record never left (the produce check stopped it), a
    phantom the new owner never decided. Every kind of table we declare is checked."""
    sent: list[Any] = []
    original = faust.Table.send_changelog  # stall_guard's check, then Faust's (and faust_fixes') send

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        fut = original(self, *args, **kwargs)
        sent.append(args[1])
        return fut

    monkeypatch.setattr(faust.Table, "send_changelog", counted)
    table: Any
    if kind == "plain":  # like team_windows' tables and sla_overdue's
        table = faust.Table(app, name=f"stall_guard_test_{next(_names)}", default=int, key_type=str,
                            value_type=int)
        before, after = 1, 2
    else:
        table = CodecTable(app, name=f"stall_guard_test_{next(_names)}", key_type=str, schema=SCHEMA)
        before, after = a_lead("Acme"), a_lead("Other")
        if kind == "codec-rocksdb":
            table._data = table._new_store_by_url("rocksdb://")
            request.addfinalizer(table.data._dbs.clear)
    table["ld_1"] = before
    assert sent == ["ld_1"]
    exits = request.getfixturevalue("stalled")
    with pytest.raises(_Exited):
        table["ld_1"] = after
    with pytest.raises(_Exited):
        table["ld_2"] = after
    with pytest.raises(_Exited):
        del table["ld_1"]
    assert len(exits) == 3 and exits[0] == pytest.approx(99.75, abs=1.0)
    assert sent == ["ld_1"]  # no changelog record after the stall
    stall_guard.disarm()
    assert "ld_2" not in table  # nor any store write
    if kind == "plain":
        assert table["ld_1"] == before
    else:
        assert encode(table["ld_1"]) == encode(before)


async def test_no_webhook_is_posted_after_a_stall(stalled: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    """A notifier woken in the middle of its batch posts none of the webhooks it had left."""
    posted: list[str] = []

    async def deliver(message: Any) -> Any:
        posted.append(message.webhook_id)
        raise AssertionError("posted after the stall")

    monkeypatch.setattr(runtime.resources, "_sender", SimpleNamespace(deliver=deliver))
    notify = Notify(webhook_id="msg_ld_1", event_type="lead.assigned", lead_id="ld_1", rep_id="a",
                    url="https://hooks.example/a", secret="whsec_x", payload={"type": "lead.assigned"},
                    created_at=datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    with pytest.raises(_Exited):
        await notifier._attempt(notify, asyncio.Semaphore(1))
    assert posted == [] and len(stalled) == 1

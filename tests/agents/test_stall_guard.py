"""A worker whose loop stalled longer than its Kafka session exits before any produce request
(``streams/stall_guard.py``); shorter stalls change nothing."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from streams import stall_guard
from streams.stall_guard import EXIT_STALLED, StallWatch


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

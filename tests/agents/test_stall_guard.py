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
from streams.stall_guard import EXIT_STALLED, GroupEvidence, StallWatch
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


def test_the_hook_sees_a_find_coordinator_request() -> None:
    # Review s18-f: with the hook's FindCoordinator lines deleted every test still passed.
    done = _run("""
        from aiokafka.conn import AIOKafkaConnection
        from aiokafka.errors import KafkaConnectionError
        from aiokafka.protocol.coordination import FindCoordinatorRequest
        from streams import stall_guard

        stall_guard.install()
        stall_guard._group._heartbeat_ok = 3  # a heartbeat answered: the next spacing would be learnt
        conn = AIOKafkaConnection.__new__(AIOKafkaConnection)
        conn._writer, conn._host, conn._port = None, "nowhere", 1
        try:
            conn.send(FindCoordinatorRequest("g", 0))
        except KafkaConnectionError:
            pass
        print("after lookup:", stall_guard._group._heartbeat_ok)
    """)
    assert done.returncode == 0, done.stderr
    assert "after lookup: None" in done.stdout


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


# --- Rule 2: the session counted from the coordinator's last answer (a pause of 8-10 s) ---------

_OK, _REBALANCING, _UNKNOWN_MEMBER, _NOT_COORDINATOR = 0, 27, 25, 16


class _Member:
    """A group member as aiokafka drives one, on a fake clock: it joins, then heartbeats every 2 s,
    each answered ``rtt`` later. ``loop`` is when the worker's loop last ticked."""

    def __init__(self, joined: bool = True) -> None:
        self.evidence = GroupEvidence()
        self.now = 0.0
        if joined:
            self.join()

    def send(self, api_key: int, at: float) -> int:
        """A request written at ``at`` (as the hook does: ``sent``, then ``written`` once the
        connection took it); its token."""
        token = self.evidence.sent(api_key, at)
        self.evidence.written(token)
        return token

    def request(self, api_key: int, rtt: float = 0.005, codes: tuple[int, ...] = (_OK,)) -> None:
        token = self.send(api_key, self.now)
        self.now += rtt
        self.evidence.answered(token, self.now, list(codes))

    def join(self) -> None:
        self.request(11)
        self.request(14)

    def heartbeats_until(self, until: float, every: float = 2.0) -> None:
        """Heartbeats every ``every`` from the next multiple of it until ``until``."""
        at = (self.now // every + 1) * every
        while at <= until:
            self.now = at
            self.request(12)
            at += every

    def lost_for(self, frozen_at: float, frozen_s: float) -> float | None:
        """The loop ticked last at ``frozen_at``, then stopped for ``frozen_s``: is the session lost?"""
        return self.evidence.expired_for(frozen_at + frozen_s, frozen_at, 10.0)


def test_a_9_s_pause_after_a_heartbeat_answered_1_5_s_before_it_exits() -> None:
    """The window rule 1 leaves: the gap (9 s) is shorter than the session, but nothing reached
    the coordinator after the answer at 8.005, so it removed the member at 18.005 at the latest."""
    member = _Member()
    member.heartbeats_until(8.0)
    assert member.evidence.last_answer == pytest.approx(8.005)
    assert member.lost_for(9.505, 9.0) == pytest.approx(10.5)
    assert StallWatch(session_s=10.0).stalled_for(18.505) is None  # rule 1 alone: silent


@pytest.mark.parametrize(("frozen_at", "frozen_s"), [
    (9.505, 8.0),    # lost only at 18.005 + slack: still a member at 17.505
    (9.505, 8.7),    # 18.205: past the deadline but within the slack for the coordinator's timer
    (8.2, 3.0),      # a long GC pause
    (9.9, 0.3),      # on time
])
def test_a_pause_that_may_have_kept_the_session_goes_on(frozen_at: float, frozen_s: float) -> None:
    member = _Member()
    member.heartbeats_until(8.0)
    assert member.lost_for(frozen_at, frozen_s) is None


def test_a_heartbeat_in_flight_during_the_pause_may_have_kept_the_session() -> None:
    """Sent at 10.0, just before the loop stopped: the kernel may deliver it during the stop (or a
    frozen VM on waking), so the coordinator's timer may run from later than any answer."""
    member = _Member()
    member.heartbeats_until(8.0)
    token = member.send(12, 10.0)
    assert member.lost_for(10.0, 9.0) is None
    assert member.lost_for(10.0, 60.0) is None  # however long: it is unanswered
    member.evidence.answered(token, 19.01, [_OK])  # it was handled: alive until ~29
    assert member.evidence.expired_for(19.02, 10.0, 10.0) is None


def test_an_old_commit_in_flight_counts_too_and_a_later_commit_answer_moves_the_deadline() -> None:
    member = _Member()
    member.heartbeats_until(8.0)
    token = member.send(8, 8.5)  # an OffsetCommit restarts the timer in Stable too
    assert member.lost_for(9.505, 9.0) is None
    member.evidence.answered(token, 9.0, [0, 0])
    assert member.lost_for(9.505, 9.0) is None  # lost only after 19.25
    assert member.lost_for(9.505, 9.8) == pytest.approx(10.305)


def test_the_woken_workers_own_heartbeat_does_not_save_a_session_already_lost() -> None:
    """After waking, aiokafka's overdue heartbeat may leave before the first check: sent after the
    deadline, it cannot restart a timer that has fired. Refused (unknown member), it proves
    nothing either; answered as a member, the session was alive after all."""
    member = _Member()
    member.heartbeats_until(8.0)
    late = member.send(12, 18.5)
    assert member.evidence.expired_for(18.51, 9.505, 10.0) == pytest.approx(10.505)
    member.evidence.answered(late, 18.52, [_UNKNOWN_MEMBER])
    assert member.evidence.expired_for(18.53, 9.505, 10.0) == pytest.approx(10.525)
    alive = member.send(12, 18.6)
    member.evidence.answered(alive, 18.61, [_OK])
    assert member.evidence.expired_for(18.62, 9.505, 10.0) is None


def test_no_group_yet_no_exit() -> None:
    assert GroupEvidence().expired_for(1e9, 0.0, 10.0) is None
    member = _Member(joined=False)
    member.heartbeats_until(8.0)  # answers without a generation (no SyncGroup) prove nothing
    assert member.lost_for(9.505, 30.0) is None


def test_the_cadence_is_learnt_from_two_heartbeats_first() -> None:
    member = _Member()
    member.heartbeats_until(2.0)
    assert member.evidence.heartbeat_every is None
    assert member.lost_for(3.5, 9.0) is None
    member.heartbeats_until(4.0)
    assert member.evidence.heartbeat_every == pytest.approx(2.0)  # send to send
    assert member.lost_for(5.505, 9.0) == pytest.approx(10.5)


def test_during_a_rebalance_no_exit() -> None:
    """A JoinGroup may be parked at the coordinator for the whole rebalance timeout, and aiokafka
    stops heartbeating meanwhile; a member awaiting its join or sync is not timed out."""
    member = _Member()
    member.heartbeats_until(8.0)
    member.now = 10.0
    member.request(12, codes=(_REBALANCING,))  # answered as a member: the timer was restarted
    join = member.send(11, 10.1)
    assert member.lost_for(10.2, 30.0) is None  # parked
    member.evidence.answered(join, 20.0, [_OK])
    assert member.evidence.expired_for(40.0, 20.1, 10.0) is None  # joined, not synced: no generation yet
    member.now = 20.1
    member.request(14)
    member.heartbeats_until(24.0)
    assert member.lost_for(25.5, 9.0) == pytest.approx(10.495)


def test_a_kafka_outage_is_no_reason_to_exit() -> None:
    """The coordinator went away after the answer at 8.005: aiokafka sends no heartbeat until it
    finds one again, the loop keeps running. The group will be loaded again with fresh timers."""
    member = _Member()
    member.heartbeats_until(8.0)
    for now in (18.5, 25.0, 60.0):
        assert member.evidence.expired_for(now, now - 0.2, 10.0) is None
    assert member.lost_for(16.0, 3.0) is None  # and a GC pause during the outage
    assert member.lost_for(10.6, 9.0) is None  # a heartbeat fell due at 10.0 while the loop ran


def test_the_first_heartbeat_after_a_kafka_restart_does_not_teach_the_outage_as_the_cadence() -> None:
    """Seen in a test run: a worker one heartbeat old when Kafka stopped; 21 s later aiokafka found
    the coordinator again and sent its overdue heartbeat. Its spacing (23 s, the outage) was learnt
    as the cadence, so the loop "stopped on schedule" and the rule exited a running worker (75)."""
    member = _Member()
    member.heartbeats_until(2.0)  # one heartbeat: no spacing learnt yet
    member.send(12, 25.3)  # the coordinator found again: written, not answered yet
    assert member.evidence.expired_for(25.35, 25.3, 10.0) is None
    member = _Member()
    member.heartbeats_until(4.0)  # one spacing (2 s) learnt before the outage
    member.now = 25.3
    member.request(12, codes=(_UNKNOWN_MEMBER,))  # and the group has forgotten it meanwhile
    assert member.evidence.expired_for(25.35, 25.3, 10.0) is None


@pytest.mark.parametrize("young_until", [2.0, 4.0])
def test_a_second_kafka_outage_soon_after_the_first_is_no_reason_to_exit(young_until: float) -> None:
    """Review s18-c: once the first heartbeat after an outage was answered, the outage's spacing
    counted as the cadence, and a second outage within a few heartbeats exited a running worker."""
    member = _Member()
    member.heartbeats_until(young_until)
    member.now = 25.3
    member.request(12)  # the overdue heartbeat, answered as a member (the group reloaded, fresh timers)
    for now in (35.6, 36.0, 38.0):  # Kafka stopped again; the loop runs on
        assert member.evidence.expired_for(now, now - 0.1, 10.0) is None
    member.now = 27.3
    member.request(12)  # one normal heartbeat, then Kafka stops again right after
    now = 27.305 + 10.0 + 0.3
    assert member.evidence.expired_for(now, now - 0.1, 10.0) is None


def test_no_spacing_is_learnt_across_a_coordinator_lookup() -> None:
    member = _Member()
    member.heartbeats_until(8.0)
    member.evidence.looking_for_coordinator()  # the hook saw a FindCoordinator: the coordinator was lost
    member.now = 13.5
    member.request(12)  # 5.5 s after the last one: spans the time without a coordinator
    assert member.evidence.heartbeat_every == pytest.approx(2.0)
    assert len(member.evidence._spacings) == 3  # 2→4, 4→6, 6→8; none across the lookup
    # The hook knows a FindCoordinator by aiokafka's own API key.
    from aiokafka.protocol.coordination import FindCoordinatorRequest
    assert FindCoordinatorRequest.API_KEY == stall_guard._FIND_COORDINATOR


def test_a_lost_request_keeps_the_rule_off_until_the_next_generation() -> None:
    member = _Member()
    member.heartbeats_until(4.0)
    token = member.send(12, 6.0)
    member.evidence.lost(token, 46.0)  # timed out: the coordinator may still handle it, any time
    member.now = 46.0
    member.heartbeats_until(50.0)
    assert member.lost_for(51.505, 9.0) is None
    member.join()
    member.heartbeats_until(56.0)
    assert member.lost_for(57.505, 9.0) == pytest.approx(10.5, abs=0.05)


def test_a_request_lost_during_the_join_keeps_the_rule_off_after_the_sync() -> None:
    member = _Member()
    member.heartbeats_until(8.0)
    member.now = 9.0
    member.request(11)
    member.evidence.lost(member.send(8, member.now), 9.5)  # a commit with the new generation
    member.now = 9.6
    member.request(14)
    member.heartbeats_until(14.0)
    assert member.lost_for(15.505, 9.0) is None


def test_one_early_heartbeat_does_not_change_the_cadence() -> None:
    member = _Member()
    member.heartbeats_until(8.0)
    member.now = 8.5
    member.request(12)  # aiokafka shortens a sleep when the consumer nears max_poll_interval
    member.now = 8.5
    member.heartbeats_until(12.0)
    assert member.evidence.heartbeat_every == pytest.approx(2.0)
    assert member.lost_for(14.1, 8.5) == pytest.approx(10.595)


def test_a_request_never_written_is_forgotten() -> None:
    member = _Member()
    member.heartbeats_until(8.0)
    member.evidence.forget(member.evidence.sent(12, 9.0))  # no connection: raised before writing
    assert member.lost_for(9.505, 9.0) == pytest.approx(10.5)


def test_heartbeats_never_written_do_not_count_as_heartbeating_on_schedule() -> None:
    """Answered until 8.005, then every heartbeat attempt raised before writing (no connection)
    while the loop kept running: none reached the coordinator, so the heartbeats stopped while
    the loop ran (no coordinator to reach), and ``A`` bounds nothing. Review B, finding 4."""
    member = _Member()
    member.heartbeats_until(8.0)
    for at in (10.0, 12.0, 14.0, 16.0, 18.0):
        member.evidence.forget(member.evidence.sent(12, at))
    assert member.evidence.expired_for(18.5, 18.3, 10.0) is None  # the loop ticked at 18.3: no pause
    assert member.lost_for(9.505, 9.0) == pytest.approx(10.5)  # a real pause after the last answer still exits


def test_a_coordinator_moving_suspends_the_rule_until_it_answers_again() -> None:
    """The new coordinator restarts every member's timer when it loads the group, unseen."""
    member = _Member()
    member.heartbeats_until(8.0)
    member.now = 10.0
    member.request(12, codes=(_NOT_COORDINATOR,))
    assert member.lost_for(10.1, 30.0) is None
    member.now = 11.0
    member.heartbeats_until(16.0)
    assert member.lost_for(17.505, 9.0) == pytest.approx(10.5)


@pytest.mark.parametrize(("response", "codes"), [
    (SimpleNamespace(error_code=27), [27]),
    (SimpleNamespace(topics=[("lead.commands", [(0, 0), (1, 25)])]), [0, 25]),
    (SimpleNamespace(), []),
    (SimpleNamespace(topics=[("t", [None])]), []),
])
def test_the_error_codes_of_group_answers(response: Any, codes: list[int]) -> None:
    assert stall_guard._error_codes(response) == codes


def test_check_exits_on_the_coordinators_last_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    member = _Member()
    member.heartbeats_until(8.0)
    monkeypatch.setattr(stall_guard, "_group", member.evidence)
    now = [9.5]
    exits: list[tuple[Any, ...]] = []
    stall_guard.arm(10.0, 0.25, clock=lambda: now[0])
    try:
        now[0] = 17.5
        stall_guard.check(clock=lambda: now[0], exit_=lambda *args: exits.append(args))
        assert exits == []
        now[0] = 18.5
        stall_guard.check(clock=lambda: now[0], exit_=lambda *args: exits.append(args))
        assert exits == [(pytest.approx(8.75), 10.0, pytest.approx(10.495))]
    finally:
        stall_guard.disarm()


_GROUP_LOOP = """
    import asyncio, logging, sys, time
    from types import SimpleNamespace
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from aiokafka.conn import AIOKafkaConnection
    from aiokafka.protocol.group import HeartbeatRequest, JoinGroupRequest, SyncGroupRequest
    from streams import stall_guard

    heartbeats = []

    def coordinator(self, request, expect_response=True):  # stands in for the socket and the broker
        if request.API_KEY == 12:
            heartbeats.append(request)
        held = HOLD and len(heartbeats) == 3

        async def answer():
            await asyncio.sleep(60 if held else 0.002)  # the held one: caught in flight by the freeze
            return SimpleNamespace(error_code=0)
        return answer()

    AIOKafkaConnection.send = coordinator
    stall_guard.install()
    stall_guard._group = stall_guard.GroupEvidence(slack_s=0.05, grace_s=0.1)
    conn = AIOKafkaConnection.__new__(AIOKafkaConnection)

    async def heartbeat():  # as aiokafka's heartbeat task: one at a time, every 0.6 s
        while True:
            await asyncio.sleep(0.6)
            await conn.send(HeartbeatRequest("g", 1, "m"))

    async def main():
        task = asyncio.ensure_future(stall_guard.watch_loop(1.5, tick_s=0.05))
        await conn.send(JoinGroupRequest("g", 1500, 3000, "", None, "consumer", []))
        await conn.send(SyncGroupRequest("g", 1, "m", None, []))
        beating = asyncio.ensure_future(heartbeat())
        while len(heartbeats) < (3 if HOLD else 2):
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.25)
        time.sleep(1.4)  # frozen less than the 1.5 s session, past the last answer + 1.5 s + slack
        await asyncio.sleep(0.2)
        beating.cancel(); task.cancel()
        print("still running")

    asyncio.run(main())
"""


def test_a_pause_shorter_than_the_session_exits_when_the_coordinator_last_answered_before_it() -> None:
    """Through the hook in ``AIOKafkaConnection.send`` (its socket replaced by a stand-in that
    answers at once): a loop frozen 1.4 s, less than the 1.5 s session, 0.25 s after a heartbeat's
    answer exits 75; the same freeze with a heartbeat unanswered goes on."""
    done = _run(_GROUP_LOOP.replace("HOLD", "False"))
    assert done.returncode == EXIT_STALLED, done.stderr
    assert "still running" not in done.stdout
    assert "its Kafka group coordinator last answered it" in done.stderr
    held = _run(_GROUP_LOOP.replace("HOLD", "True"))
    assert held.returncode == 0, held.stderr
    assert "still running" in held.stdout

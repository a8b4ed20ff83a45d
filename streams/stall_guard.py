"""A worker whose event loop stalled longer than its Kafka session exits before it writes anything.

aiokafka's heartbeats run on the worker's event loop (``streams/inline_consumer.py``). A stall
of the whole process longer than ``broker_session_timeout`` (10 s, ``streams/app.py``) — SIGSTOP,
a VM or container freeze, swapping — means the broker has expired the session for certain:
another worker owns this worker's partitions and may already have written their tables. The
frozen worker does not know it yet. On waking it would finish the batch it was in, send its
messages and write its tables' changelogs after the new owner's records (a *zombie write*): the
deploy audit of session 16 saw exactly that (docs/RELIABILITY.md, "Paused workers"). Kafka
fences a zombie's offset commits (old generation) but not its produce requests, and without
transactions nothing else fences them.

So the worker checks, and exits at once (``os._exit(EXIT_STALLED)``, no cleanup, nothing sent)
when it finds that its loop was stalled longer than the session:

* a tick task notes the time every ``TICK_S``;
* every produce request is checked in ``AIOKafkaConnection.send``, the last Python code before
  its bytes reach the socket: records that agents, tables and the API handed to the producer
  before the freeze, still in its buffers, are never sent after it either;
* every table write and delete is checked before it touches the store: Faust's
  ``Table.__setitem__``/``__delitem__`` (``ManagedUserDict``) first sends the changelog record
  (``on_key_set`` -> ``Collection.send_changelog``, which only buffers it) and then writes the
  local store, so a check at the top of ``Collection.send_changelog`` (every table: ours,
  Faust's plain and windowed ones) stops a woken agent's batch before its first local write. A
  RocksDB write whose changelog record never leaves would outlive the restart as a phantom the
  new owner never decided;
* the notifier checks before each webhook it delivers (``streams/agents/notifier.py``): a POST
  is a write to the outside world that no recovery takes back;
* the tick task itself and ``take_ready`` (before an agent gets a batch) check too, so an idle
  worker also exits and no agent starts a batch on stale state.

Not covered (a woken worker reaches them before its next check, within one tick or its current
batch): Redis writes, API reads answered from its tables, and bytes already in asyncio's or the
kernel's socket buffers (a SIGSTOP lets the kernel send them while stopped; a frozen VM sends
them after waking).

Exiting is a ``kill -9`` (the crash tests prove that path safe: offsets are committed only after
their writes, changelogs recover, ``streams/changelog_offsets.py`` keeps a gap readable); the
supervisor (systemd, Kubernetes, ``leadflow run``) starts the worker again and it rejoins.
Rejoining without exiting would need every agent's in-flight batch, Faust's producer buffer and
aiokafka's accumulator emptied without sending and without acking: internals of three libraries,
for a path that is rare and that a restart covers in seconds.

Two rules decide that the session is lost; each acts only on certainty (a needless exit costs a
rebalance, not data, but must not happen in normal operation: a GC pause of a few seconds, a slow
answer, a rebalance, a broker restart):

1. *The loop gap* (``StallWatch``). The tick was due ``TICK_S`` after the last one, so the loop
   was frozen at least ``gap - TICK_S``. Longer than the session: the heartbeats stopped for
   longer than the session, lost for certain. This rule alone misses a freeze of 8-10 s: the
   coordinator's timer runs from the last group request it *received*, which may have come up to
   one heartbeat interval (2 s) before the freeze.
2. *The coordinator's last answer* (``GroupEvidence``, fed by the group requests and answers seen
   in ``AIOKafkaConnection.send``). What restarts a member's session timer in Kafka 4's group
   coordinator (``GroupMetadataManager``, ``OffsetMetadataManager``, read at apache/kafka 1eb7644;
   the stack runs 4.1.1): a Heartbeat in
   PreparingRebalance, CompletingRebalance or Stable; an OffsetCommit in Stable or
   PreparingRebalance; the end of a JoinGroup round and a SyncGroup answer; loading the group on a
   coordinator (every member's timer starts again). When the timer fires, a member that is not
   awaiting a JoinGroup or SyncGroup answer is removed; a Heartbeat or OffsetCommit with an
   unknown member or an old generation is refused before the timer is touched.

   So an answer received at local time ``A`` proves the coordinator handled its request at some
   ``R <= A`` and timed the session from there: without any later request, the member is gone
   at ``R + session <= A + session``. Let ``A`` be the latest answer that may have restarted the
   timer (every answer but "unknown member", "old generation", "fenced instance" and "coordinator
   moving"); the session is then certainly lost at ``now`` when all of these hold:

   * *the member is stable in a generation*: a SyncGroup answered without error, for a
     JoinGroup sent after any lost request, and no JoinGroup or LeaveGroup sent since. Before the
     first SyncGroup (no group yet) and during a rebalance (a JoinGroup may be parked at the
     coordinator for the whole rebalance timeout, and aiokafka stops heartbeating meanwhile) the
     rule does nothing.
   * ``now > A + session + EXPIRY_SLACK_S``. The coordinator's timer fires within milliseconds of
     its deadline but removes the member only when its event runs; a heartbeat that reaches the
     coordinator before that saves it. The slack (0.25 s) covers that and a woken worker's first
     heartbeat.
   * *no group request sent before ``A + session + slack`` is still unanswered.* Such a request
     may reach the coordinator at any time later (SIGSTOP lets the kernel send its bytes during
     the stop, a frozen VM sends them on waking) and restart the timer. aiokafka's heartbeat task
     sends one heartbeat at a time and waits for its answer, so a freeze that begins after a
     heartbeat left and before its answer came never counts. A request sent after that point
     (the woken worker's own heartbeat) cannot save a session that is already gone.
   * *no group request was lost*: one that ended without an answer (timeout, broken connection,
     cancelled) may still be handled at any time, so the member counts as unstable until its
     next generation (a late request of the old generation is refused without touching the
     timer). An answer saying the coordinator is loading or moved suspends the rule until a
     request sent after it is answered: the new coordinator restarts every timer when it loads
     the group, at a time this worker cannot see.
   * *the member was heartbeating on schedule until the loop stopped*: the loop's last tick came
     no later than the heartbeat cadence allows (the last heartbeat sent before
     ``A + session + slack``, plus the median spacing between the last heartbeats, plus
     ``HEARTBEAT_GRACE_S``; a heartbeat counts only once the connection took its bytes, not one
     whose send raised first). An outage must not be learnt as the cadence: no spacing is learnt
     across a FindCoordinator request (aiokafka sends one only when it has lost its coordinator),
     only spacings of heartbeats sent before ``A + session + slack`` count, and none as long as
     the session. A heartbeat that fell due while the loop still ran and was never
     sent means aiokafka had no coordinator (a Kafka outage, a coordinator moving): then the
     group is loaded again with fresh timers and ``A`` bounds nothing. Without this, a Kafka
     restart of more than 10 s with a GC pause in it would restart every worker. The cadence is
     learnt from the heartbeats themselves (no setting is read), so the rule starts with the
     second heartbeat.

   Assumed, not proven: that the coordinator keeps the group loaded through the freeze. One that
   moves *during* it (its broker restarts while this worker is frozen) restarts the timer unseen,
   and the rule, like rule 1, then exits needlessly: a rebalance. The rule does not tell consumer
   groups apart; a worker has one (the outcomes follower reads without a group).

The clock is ``CLOCK_BOOTTIME`` where there is one: it keeps counting while the host is
suspended, as time does for a broker on another host, whose sessions expire meanwhile. A broker on
the *same* host is suspended with the worker, and Kafka's timers (the session's too) run on
``System.nanoTime``, ``CLOCK_MONOTONIC`` on Linux, which stops during a suspend: its sessions
survive it. So suspending and resuming a laptop running the dev stack for longer than the session
makes the worker exit 75 needlessly (rule 1 already did before rule 2 existed); the cost is a
restart and a rebalance, nothing is lost. ``CLOCK_MONOTONIC`` here instead would get that case
right and miss a session really lost to a broker elsewhere: the unsafe side.
"""
from __future__ import annotations

import asyncio
import logging
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.conn import AIOKafkaConnection
from faust.tables.base import Collection

from streams.exit_status import EXIT_STALLED

__all__ = ["EXIT_STALLED", "EXPIRY_SLACK_S", "HEARTBEAT_GRACE_S", "TICK_S", "GroupEvidence", "StallWatch", "arm",
           "check", "disarm", "install", "watch_loop"]

log = logging.getLogger(__name__)

#: How often the tick task notes that the loop runs.
TICK_S = 0.25
#: Kafka's produce request (API key 0): the requests a zombie must not send.
_PRODUCE = 0
#: The group requests (API keys): all but LeaveGroup may restart the member's session timer.
_OFFSET_COMMIT, _JOIN_GROUP, _HEARTBEAT, _LEAVE_GROUP, _SYNC_GROUP = 8, 11, 12, 13, 14
_GROUP_REQUESTS = frozenset({_OFFSET_COMMIT, _JOIN_GROUP, _HEARTBEAT, _LEAVE_GROUP, _SYNC_GROUP})
#: FindCoordinator: aiokafka looks for the coordinator only when it has none (an outage, a move).
_FIND_COORDINATOR = 10
#: Answers refused before the coordinator touches the timer: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
#: FENCED_INSTANCE_ID.
_NOT_A_MEMBER = frozenset({22, 25, 82})
#: The coordinator is loading the group or is elsewhere: COORDINATOR_LOAD_IN_PROGRESS,
#: COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
_COORDINATOR_MOVING = frozenset({14, 15, 16})
#: How long past ``A + session`` before the session counts as lost (the coordinator's timer event).
EXPIRY_SLACK_S = 0.25
#: How late past its cadence the next heartbeat may be before the loop stopped (loop lag, one tick).
HEARTBEAT_GRACE_S = 0.5


def _clock() -> float:
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


@dataclass
class StallWatch:
    """When the loop last ran, and whether it has since stalled longer than the session."""

    session_s: float
    tick_s: float = TICK_S
    last: float | None = None

    def tick(self, now: float) -> None:
        self.last = now

    def stalled_for(self, now: float) -> float | None:
        """How long the loop was frozen for certain, when that is longer than the session; else ``None``."""
        if self.last is None:
            return None
        frozen = now - self.last - self.tick_s
        return frozen if frozen > self.session_s else None


@dataclass
class _Request:
    api_key: int
    sent: float
    heartbeat_seq: int | None = None


@dataclass
class GroupEvidence:
    """What this worker's group requests and their answers prove about its Kafka session (rule 2 of
    the module docstring). Fed with local times; ``expired_for`` is the pure decision."""

    slack_s: float = EXPIRY_SLACK_S
    grace_s: float = HEARTBEAT_GRACE_S
    #: A: when the latest answer that may have restarted the coordinator's timer was received.
    last_answer: float | None = None
    #: A SyncGroup answered without error, no JoinGroup or LeaveGroup sent since, nothing lost since the join.
    stable: bool = False
    #: aiokafka's heartbeat cadence: the median of the last spacings between a heartbeat answered as
    #: a member and the next one sent (one early or late heartbeat does not move it).
    heartbeat_every: float | None = None
    #: When the coordinator said it was loading or moved; cleared by an answer to a later request.
    moved_at: float | None = None
    in_flight: dict[int, _Request] = field(default_factory=dict)
    _heartbeats: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    #: (when the later heartbeat was sent, the spacing before it)
    _spacings: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=5))
    _tokens: int = 0
    _heartbeat_seq: int = 0
    _heartbeat_ok: int | None = None  # the seq of the last heartbeat answered as a member
    _join_sent: float | None = None
    _lost_at: float | None = None

    def sent(self, api_key: int, now: float) -> int:
        """A group request is about to be written; returns its token for ``written`` then
        ``answered``/``lost``, or for ``forget``."""
        self._tokens += 1
        request = _Request(api_key, now)
        if api_key == _HEARTBEAT:
            self._heartbeat_seq += 1
            request.heartbeat_seq = self._heartbeat_seq
        elif api_key in (_JOIN_GROUP, _LEAVE_GROUP):
            self.stable = False
            self._heartbeat_ok = None  # never learn a spacing across a rebalance
            if api_key == _JOIN_GROUP:
                self._join_sent = now
        self.in_flight[self._tokens] = request
        return self._tokens

    def written(self, token: int) -> None:
        """The request is on its way (handed to the connection): a heartbeat now counts in the
        schedule, at the time it was ``sent``. One never written (``forget``) never does: it would
        pass for heartbeating on schedule while none reached the coordinator."""
        request = self.in_flight.get(token)
        if request is None or request.heartbeat_seq is None:
            return
        if self._heartbeat_ok == request.heartbeat_seq - 1 and self._heartbeats:
            self._spacings.append((request.sent, request.sent - self._heartbeats[-1]))
            self.heartbeat_every = statistics.median(spacing for _, spacing in self._spacings)
        self._heartbeats.append(request.sent)

    def answered(self, token: int, now: float, error_codes: list[int]) -> None:
        """The coordinator answered the request (with these error codes; 0 is none)."""
        request = self.in_flight.pop(token, None)
        if request is None:
            return
        codes = set(error_codes)
        if codes & _COORDINATOR_MOVING:
            self.moved_at = now
            self._heartbeat_ok = None
            return
        if codes & _NOT_A_MEMBER:
            return  # refused before the timer was touched: proves nothing about it
        self.last_answer = now if self.last_answer is None else max(self.last_answer, now)
        if self.moved_at is not None and request.sent > self.moved_at:
            self.moved_at = None
        if request.heartbeat_seq is not None:
            self._heartbeat_ok = request.heartbeat_seq
        if (request.api_key == _SYNC_GROUP and not codes - {0} and self._join_sent is not None
                and request.sent >= self._join_sent and (self._lost_at is None or self._join_sent > self._lost_at)):
            self.stable = True

    def lost(self, token: int, now: float) -> None:
        """The request ended without an answer: the coordinator may still handle it, at any time."""
        if self.in_flight.pop(token, None) is None:
            return
        self._lost_at = now
        self.stable = False
        self._heartbeat_ok = None

    def looking_for_coordinator(self) -> None:
        """aiokafka lost its coordinator and asks where it is now: the next heartbeat's spacing spans
        that time without one, not the cadence (never learnt across it, like a rebalance)."""
        self._heartbeat_ok = None

    def forget(self, token: int) -> None:
        """The request was never written (no connection): it cannot reach the coordinator, and a
        heartbeat never ``written`` is not in the schedule."""
        self.in_flight.pop(token, None)

    def expired_for(self, now: float, loop_seen: float | None, session_s: float) -> float | None:
        """Seconds since the coordinator's last answer when the session is certainly lost; else ``None``.

        ``loop_seen``: when the loop last ran (the last tick), ``session_s``: the member's session.
        """
        if not self.stable or self.moved_at is not None or self.last_answer is None or loop_seen is None:
            return None
        deadline = self.last_answer + session_s + self.slack_s
        if now <= deadline:
            return None
        # The cadence as it was before the deadline: the spacing before a heartbeat sent after it
        # may span a Kafka outage (no coordinator, no heartbeat for 20 s), and counted in, a young
        # worker's cadence would be the outage itself (seen: a Kafka restart made a worker exit).
        # And a spacing as long as the session is never the cadence (the session would have expired).
        spacings = [spacing for sent, spacing in self._spacings if sent < deadline and spacing < session_s]
        if not spacings:
            return None  # the cadence is not known yet
        heartbeat_every = statistics.median(spacings)
        if any(request.sent < deadline for request in self.in_flight.values()):
            return None  # it may reach the coordinator yet and restart the timer
        before = [sent for sent in self._heartbeats if sent < deadline]
        if not before or loop_seen > before[-1] + heartbeat_every + self.grace_s:
            return None  # a heartbeat fell due while the loop ran and was not sent: no coordinator
        return now - self.last_answer


_watch: StallWatch | None = None
_group = GroupEvidence()
_group_lock = threading.Lock()  # with LEADFLOW_CONSUMER_THREAD=1 the consumer's requests come from its thread
_installed = False


def _exit(frozen: float, session_s: float, unanswered_s: float | None = None) -> None:
    if unanswered_s is None:
        log.critical("this worker was paused %.1f s, longer than its %.0f s Kafka session: another worker owns its "
                     "partitions now; exiting without writing anything (status %d), restart it",
                     frozen, session_s, EXIT_STALLED)
    else:
        log.critical("this worker was paused %.1f s and its Kafka group coordinator last answered it %.1f s ago, "
                     "longer than its %.0f s session: another worker owns its partitions now; exiting without "
                     "writing anything (status %d), restart it", frozen, unanswered_s, session_s, EXIT_STALLED)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # the exit must happen whatever a handler does
            pass
    os._exit(EXIT_STALLED)


def check(clock: Callable[[], float] = _clock, exit_: Callable[..., None] | None = None) -> None:
    """Exit the process if the loop stalled longer than the session, or the session is certainly lost
    counting from the coordinator's last answer (nothing to do until ``arm``)."""
    watch = _watch
    if watch is None:
        return
    now = clock()
    frozen = watch.stalled_for(now)
    if frozen is not None:
        (exit_ or _exit)(frozen, watch.session_s)
        return
    with _group_lock:
        unanswered = _group.expired_for(now, watch.last, watch.session_s)
    if unanswered is not None:
        paused = max(0.0, now - (watch.last or now) - watch.tick_s)
        (exit_ or _exit)(paused, watch.session_s, unanswered)


def arm(session_s: float, tick_s: float = TICK_S, clock: Callable[[], float] = _clock) -> StallWatch:
    """Start watching (the tick task calls this); returns the watch."""
    global _watch
    _watch = StallWatch(session_s=session_s, tick_s=tick_s)
    _watch.tick(clock())
    return _watch


def disarm() -> None:
    """Stop watching (a stopping worker, and tests)."""
    global _watch
    _watch = None


async def watch_loop(session_s: float, tick_s: float = TICK_S) -> None:
    """The tick task: note every ``tick_s`` that the loop runs, checking first whether it stalled."""
    watch = arm(session_s, tick_s)
    try:
        while True:
            await asyncio.sleep(tick_s)
            check()
            watch.tick(_clock())
    finally:
        disarm()


def _error_codes(response: Any) -> list[int]:
    """The error codes of a group answer (OffsetCommit has one per partition); none found: ``[]``."""
    code = getattr(response, "error_code", None)
    if isinstance(code, int):
        return [code]
    codes: list[int] = []
    try:
        for _topic, partitions in getattr(response, "topics", ()):
            codes.extend(int(partition[-1]) for partition in partitions)
    except (TypeError, ValueError, IndexError):
        return []  # an unknown shape counts as an answer that may have restarted the timer (cautious)
    return codes


async def _observe(pending: Awaitable[Any], token: int) -> Any:
    """Await a group request's answer, noting when it came (or that none did)."""
    try:
        response = await pending
    except BaseException:
        with _group_lock:
            _group.lost(token, _clock())
        raise
    with _group_lock:
        _group.answered(token, _clock(), _error_codes(response))
    return response


def install() -> None:
    """Check before every produce request leaves for the broker, and before every table write or
    delete reaches the store; note every group request and its answer (once per process)."""
    global _installed
    if _installed:
        return
    original = AIOKafkaConnection.send
    original_send_changelog = Collection.send_changelog

    def send(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        api_key = getattr(request, "API_KEY", None)
        if api_key == _PRODUCE:
            check()
        elif api_key == _FIND_COORDINATOR:
            with _group_lock:
                _group.looking_for_coordinator()
        if api_key not in _GROUP_REQUESTS or not expect_response:
            return original(self, request, expect_response)
        with _group_lock:
            token = _group.sent(api_key, _clock())  # before a byte is written: an early time is the cautious one
        try:
            pending = original(self, request, expect_response)
        except BaseException:
            with _group_lock:
                _group.forget(token)  # raised before the frame was whole on the wire: never handled
            raise
        with _group_lock:
            _group.written(token)  # handed to the transport: only now a heartbeat counts as sent
        return _observe(pending, token)

    def send_changelog(self: Any, *args: Any, **kwargs: Any) -> Any:
        check()  # Faust sends the changelog record first, then writes the store: neither happens
        return original_send_changelog(self, *args, **kwargs)

    AIOKafkaConnection.send = send
    Collection.send_changelog = send_changelog  # type: ignore[method-assign]
    _installed = True

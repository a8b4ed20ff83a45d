"""Batched agents: ``take_ready`` batches, and table writes "acting for" one event.

An agent that takes batches (``take_ready(stream)``, below) can fold a burst of records
into one table write per key (one changelog record instead of one per record). But Faust picks a
table write's changelog partition (``Collection.partition_for_key`` / ``_send_changelog``), its
RocksDB partition store, and for a windowed table the window and its expiry bookkeeping, from
the *current event*: ``faust.streams.current_event()``, a ContextVar holding a weakref to the
event. Inside a batch the current event is the last one taken, whatever its partition, so a
write for a key of another partition would go to the wrong changelog partition and be restored
on the wrong worker (or lost) after a rebalance. ``acting_for(event)`` makes ``event`` the
current one for the reads and writes inside the block, then restores the previous value. Pass
the last event of the key being written: when the topic is keyed like the table, every event of
a key comes from the same partition.

Acks: ``take_ready`` (like Faust's ``take_events``) turns the stream's automatic acks off and
acks every event of a batch once the agent asks for the next batch, after its body has done its
writes and awaited its sends. A body that raises acks nothing (DESIGN §5's "an exception acks the
message" is Faust's default, which lost a batch's valid leads): Faust's supervisor restarts the
agent on the same stream, and ``take_ready`` hands that batch over again one event at a time; an
event that makes the body raise each time it is alone is skipped after ``ALONE_TRIES``, logged by
position and counted (``_Collector``). Bodies still catch a record's bug where they apply it
(``apply_batch``) and retry a write until Kafka acknowledges it (``publish``): a raise costs a
restart and, after the first, mode's supervisor restarts only on its 5-second poll.

A rebalance (or the stop) suspends the app's flow control, then waits for every unacked record
(``wait_empty``) before this worker answers the group. From then on nothing more is handed over:
the events waiting to go again, those collected and the one the drainer holds are released at
once (within ``_WAKE_S``), acked without counting (``faust_fixes`` fix 1), so their partitions'
next owner reads them again from the committed offset. Only a batch a body is handling now is
waited for. A stop seen during the retries ends the process (``stopping.exit_now``), unacked.

A commit of the acked offsets waits until Kafka has acknowledged the changelog records of the
writes before them (``streams/faust_fixes.py``, fix 4): the agent itself never waits for that.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, runtime_checkable

from faust.exceptions import ConsumerNotStarted
from faust.streams import _current_event  # private: the event a table read or write belongs to

from streams import stall_guard, stopping
from streams.app import app, runtime
from streams.topics import Unreadable

__all__ = ["BATCH", "Keyed", "Positioned", "acting_for", "already_applied", "apply_batch", "end_offset", "is_readable", "readable", "take_ready"]

log = logging.getLogger(__name__)

#: At most this many events per batch: one batch's work stays short on a loaded event loop.
BATCH = 200
#: How often an idle ``take_ready`` loop wakes to notice that the worker is stopping.
_IDLE_S = 1.0


async def take_ready(stream: Any, max_: int = BATCH) -> AsyncIterator[list[Any]]:
    """Batches of the events that are ready, handed over as soon as no more are waiting.

    ``take_events(max_, within)`` hands a batch over on a clock: every ``within`` seconds, or when
    ``max_`` events are in. Each stage of a lead's path then waits up to ``within`` for nothing
    when the stream is quiet (seven stages: ~35 ms of every lead's latency at 10 ms), and wakes
    ``1 / within`` times a second when idle. This hands over a batch the moment the channel's
    queue is empty (nothing more was delivered) or ``max_`` events are in. While the agent
    handles a batch, new events wait in the channel, so the next batch is whatever arrived
    meanwhile: one event at a time on a quiet stream, full batches under load (group commit).

    The stream's automatic acks are off, and every event of a batch is acked when the agent asks
    for the next one (after its writes and sends), never otherwise. A body that raises leaves its
    batch unacked; Faust's supervisor restarts the agent on the same stream, and this hands that
    batch over again, one event at a time (``_Collector``; see the module's docstring), unless a
    rebalance began: then what waits is released, not handed over (``_Collector._release``). It uses
    the stream's processor and passive-drainer hooks the way ``take_events`` does
    (faust/streams.py); ``_enable_passive`` is private Faust API.
    """
    collector = _collectors.get(stream)
    if collector is None:
        collector = _collectors[stream] = _Collector(stream)
    me = object()
    collector.take_over(me, max_)
    collector.watch(me, asyncio.current_task())
    while not stream.should_stop and collector.owner is me:
        batch = await collector.next_batch()
        if not batch:
            continue
        stall_guard.check()  # paused past the session: another worker owns these records now
        collector.held = batch
        yield batch
        # Reached only when the body asks for the next batch: it handled this one. A body that
        # raised (or was cancelled) never comes back here: its batch stays held, unacked.
        await collector.done(batch)


#: Each stream's collector, for as long as the stream lives (Faust restarts a crashed agent on it).
_collectors: weakref.WeakKeyDictionary[Any, _Collector] = weakref.WeakKeyDictionary()
#: How many times an event handed over alone may make the body raise before it is skipped.
ALONE_TRIES = 3
#: The wait before a batch is handed over again after a body raised: doubled for each raise in a
#: row, up to ``_AGAIN_MAX_S``. Faust's supervisor gives up on (and exits) more than 100 restarts
#: a second; a failure that is not the record's (a dependency) gets time to pass.
_AGAIN_S = 0.5
_AGAIN_MAX_S = 10.0
#: How often a back-off, or a collector waiting out a rebalance, looks whether the worker is
#: stopping or a rebalance began (``_Collector._back_off``).
_WAKE_S = 0.1
#: ``leadflow_command_failures_total``'s label for an agent, by its module under ``streams.agents``.
_AGENT_LABELS = {"accounts": "account"}


def _revoking() -> bool:
    """Whether a rebalance is taking this worker's partitions back: Faust's ``on_partitions_revoked``
    suspends the app's flow control before it waits for every unacked record (``wait_empty``), and
    resumes it once the new assignment is recovered. Meanwhile an ack does not count
    (``faust_fixes.ack_counts``): handing an event over then would be work for nothing."""
    return not app.flow_control.is_active()


class _Collector:
    """One stream's batching, which outlives an agent body that raised.

    Faust restarts a crashed agent on the same stream (``Agent._replace_actor``), whose passive
    drainer keeps running. A collector per ``take_ready`` generator (before session 17) lost
    records there: the batch the body raised on was acked when Python finalized the abandoned
    generator (at once in CPython), and the event the drainer was holding in the old collector
    (one that arrived while the batch was being handled) skipped the new one (the old one removed
    itself from the processor list Faust was iterating), so the restarted agent never got it and
    it stayed unacked, holding its partition's commit and, at a rebalance or the stop, Faust's
    ``wait_empty`` (tests/agents/test_take_ready_crash.py).

    Here one processor stays on the stream for its life, and the batch a body holds is
    ``held`` until the body asks for the next one. A new ``take_ready`` on the stream finding a
    batch held (its body raised, or was cancelled) takes it over: it hands each of its events
    over again alone, before anything newer, after a back-off. An event whose body raises
    ``ALONE_TRIES`` times with it alone is skipped: acked, counted in
    ``leadflow_command_failures_total`` and logged by its position (never its content); it stays
    in the topic. That is ``apply_batch``'s rule for a command whose step raises, after retries:
    a record that always makes its agent raise must not stall the partition, or crash-loop the
    worker; any other event of its batch is handled.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.max_ = BATCH
        self.events: list[Any] = []  # collected for the next batch
        self.ready = asyncio.Event()  # a batch is there to hand over
        self.open_ = asyncio.Event()  # events may join the batch (cleared while handed over, or full)
        self.open_.set()
        self.held: list[Any] | None = None  # the batch a body holds, unacked
        self.owner: object | None = None  # the take_ready that hands batches over now
        self.again: collections.deque[list[Any]] = collections.deque()  # [event, raises alone] to hand over again
        self.raises_in_a_row = 0  # bodies that raised since one last asked for the next batch
        self._orphans: asyncio.Future[None] | None = None  # releases a raised body's batch at a rebalance
        name = str(getattr(stream, "prefix", "") or "")
        module = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else "agent"
        self.agent = _AGENT_LABELS.get(module, module)

    async def collect(self, value: Any) -> Any:
        while not self.open_.is_set():
            await self.open_.wait()
        event = self.stream.current_event
        if event is None:
            raise RuntimeError("take_ready: the stream has no current event")
        if _revoking():
            # Read before the rebalance began, held here since: released, not committed (``_release``).
            await self.stream.ack(event)
            return value
        self.events.append(event)
        if len(self.events) >= self.max_:
            self.open_.clear()
            self.ready.set()
        elif self.stream.channel.queue.empty():
            self.ready.set()
        return value

    def take_over(self, owner: object, max_: int) -> None:
        """``owner`` hands the batches over from now on; a batch still held is handed over again."""
        self.owner, self.max_ = owner, max_
        stream = self.stream
        stream.enable_acks = False
        if self.collect not in stream._processors:
            stream.add_processor(self.collect)
        stream._enable_passive(aiter(stream.channel))  # Faust starts the drainer once for the stream
        held, self.held = self.held, None
        if held is None:
            return
        self.raises_in_a_row += 1
        if len(held) > 1:
            self.again.extendleft([event, 0] for event in reversed(held))
        elif self.again and self.again[0][0] is held[0]:
            self.again[0][1] += 1  # handed over alone again, and the body raised again
        else:
            self.again.appendleft([held[0], 1])  # a batch of one: it raised alone
        first = held[0].message
        log.warning("%s agent: the body raised on a batch of %d event(s) from %s:%s:%s; handing each over again "
                    "alone", self.agent, len(held), first.topic, first.partition, first.offset)

    def watch(self, owner: object, task: asyncio.Task[Any] | None) -> None:
        """When the body's task ends (it raised) before another ``take_ready`` took over, release what it
        left if a rebalance begins meanwhile: mode's supervisor restarts a crash after the first only
        on its 5-second poll, and the revoke's ``wait_empty`` would wait for that."""
        if task is None:
            return
        def ended(_: asyncio.Task[Any]) -> None:
            if self.owner is owner and not self.stream.should_stop and (self.held or self.again or self.events):
                self._orphans = asyncio.ensure_future(self._until_taken_over(owner))
        task.add_done_callback(ended)

    async def _until_taken_over(self, owner: object) -> None:
        while self.owner is owner and not self.stream.should_stop:
            if _revoking():
                await self._release(held=True)
                return
            await asyncio.sleep(_WAKE_S)

    async def next_batch(self) -> list[Any]:
        """The next batch: an event to hand over again alone, else what has been collected."""
        if _revoking():
            await self._release()
            await self.stream.wait_for_stopped(self.ready, timeout=_WAKE_S)  # until the rebalance is over
            return []
        if self.again:
            return await self._again()
        await self.stream.wait_for_stopped(self.ready, timeout=_IDLE_S)
        self.ready.clear()
        if not self.events:
            return []
        if _revoking():  # began while this waited: these go to the partitions' next owner
            await self._release()
            return []
        self.open_.clear()  # until the body asks for the next batch: what arrives meanwhile waits
        batch = list(self.events)
        self.events.clear()
        return batch

    async def _again(self) -> list[Any]:
        self.open_.clear()  # nothing newer joins until the events to hand over again are done
        if app.should_stop:
            self._stop_now()
        if self.raises_in_a_row:
            delay = min(_AGAIN_S * 2 ** (self.raises_in_a_row - 1), _AGAIN_MAX_S)
            await self._back_off(delay)
            if self.stream.should_stop:
                return []
            if app.should_stop:
                self._stop_now()
            if _revoking():
                await self._release()
                return []
        event, raised_alone = self.again[0]
        if raised_alone >= ALONE_TRIES:
            message = event.message
            self.again.popleft()
            self._reopen()
            self.raises_in_a_row = 0  # the next event is another record: no back-off for this one's raises
            runtime.metrics.command_failures.labels(self.agent).inc()
            log.error("%s agent skipped the record at %s:%s:%s: the agent raised each of the %d times it was "
                      "handed over alone", self.agent, message.topic, message.partition, message.offset, raised_alone)
            await self.stream.ack(event)
            return []
        return [event]

    async def _back_off(self, delay: float) -> None:
        """Wait ``delay`` before a batch goes again; woken at once by a stop or a rebalance (polled)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while (left := until - loop.time()) > 0:
            if self.stream.should_stop or app.should_stop or _revoking():
                return
            await asyncio.sleep(min(left, _WAKE_S))

    def _stop_now(self) -> NoReturn:
        # Faust's stop waits for every unacked record (``wait_empty``): retrying a body that raises
        # would hold it up. Nothing of these is acked: they are read again after a restart.
        stopping.exit_now(f"the worker is stopping and the {self.agent} agent has {len(self.again)} record(s) "
                          "to handle again after its body raised")

    async def _release(self, *, held: bool = False) -> None:
        """A rebalance is taking the partitions back: let go of every event not handed over yet.

        Faust's revoke waits (``consumer.wait_empty``) for every unacked record before this worker
        answers the rebalance, and every member of the group waits for that answer; past
        ``broker_rebalance_timeout`` (60 s) the group goes on without this worker and two workers
        handle the same records. Retrying a body that raises takes ~20 s per record, so the events
        waiting to go again, and those collected, are acked without being handed over. With the
        flow suspended, an ack only releases a record and never moves its partition's committed
        offset (``streams/faust_fixes.py``, fix 1: ``ack_counts``), so whichever worker owns the
        partition next reads them again from there. A batch the body is handling now is not let
        go: the body finishes it (its acks do not count either); with ``held``, the batch a body
        left when it raised is let go too (no body holds it: ``watch``).
        """
        waiting = list({id(event): event for event in [*((self.held or []) if held else []),
                                                     *(event for event, _ in self.again), *self.events]}.values())
        if held:
            self.held = None
        self.again.clear()
        self.events.clear()
        self.ready.clear()
        self.raises_in_a_row = 0
        for event in waiting:
            await self.stream.ack(event)
        self._reopen()
        if waiting:
            log.info("%s agent: a rebalance began; %d record(s) not handled yet are left to their partitions' "
                     "next owner (not committed)", self.agent, len(waiting))

    async def done(self, batch: list[Any]) -> None:
        """The body handled ``batch`` (it asked for the next one): ack it and open the next batch."""
        self.held = None
        self.raises_in_a_row = 0
        if self.again and len(batch) == 1 and self.again[0][0] is batch[0]:
            self.again.popleft()
        for event in batch:
            await self.stream.ack(event)
        self._reopen()

    def _reopen(self) -> None:
        if not self.again and len(self.events) < self.max_:
            self.open_.set()


@contextlib.contextmanager
def acting_for(event: Any) -> Iterator[None]:
    """Table reads and writes in this block belong to ``event`` (its partition, its timestamp)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def is_readable(event: Any, agent: str) -> bool:
    """Whether the event's key and value decoded; if not, it is counted and logged by position.

    Our topics decode bad bytes to ``Unreadable`` instead of raising (``streams/topics.py``), so a
    record that only a bug or a hostile producer could write never stops the agent. It stays in
    the topic; the log names where it is (never what: it may hold personal data).
    """
    key, value = event.key, event.value
    problem = key if isinstance(key, Unreadable) else value if isinstance(value, Unreadable) else None
    if problem is None and key is not None:
        return True
    message = event.message
    runtime.metrics.command_failures.labels(agent).inc()
    log.error("%s agent skipped an unreadable record at %s:%s:%s (%s)", agent, message.topic,
              message.partition, message.offset, problem.reason if problem is not None else "no key")
    return False


def readable(events: Iterable[Any], agent: str) -> Iterator[Any]:
    """The events of a batch that ``is_readable``."""
    return (event for event in events if is_readable(event, agent))


@dataclass(slots=True)
class Keyed:
    """One key's state through a batch."""

    before: Any  # as stored before the batch: write only if ``state`` is another object
    state: Any  # after the batch's commands for this key so far
    event: Any  # this key's last event: its table reads and writes act for it


@runtime_checkable
class Positioned(Protocol):
    """A state that records where the last command that changed it was read."""

    def applied(self, partition: int, offset: int, end: int | None = None) -> bool: ...


def end_offset(message: Any) -> int | None:
    """Where the message's partition ended when the consumer last fetched from it: its high
    watermark, one past the newest record. ``None`` when the consumer cannot say (nothing fetched
    yet, the partition no longer assigned, no consumer running).

    A state's mark (``Positioned``) at or past it cannot be an offset of this topic: the topic
    was deleted and made again while the tables' changelogs stayed, and its offsets began anew.
    Skipping "replays" by such a mark would drop every new command up to the old offset.
    """
    try:
        end = app.consumer.highwater(message.tp)
    except (AssertionError, ConsumerNotStarted):  # aiokafka asserts the partition is assigned
        return None
    return end if isinstance(end, int) and end >= 0 else None


def already_applied(state: Positioned, message: Any) -> bool:
    """Whether ``state`` already applied the command read as ``message`` (read again after a crash).

    The partition's end is asked only for a command at or below the state's mark, which is rare:
    any other command is new by its offset alone.
    """
    partition, offset = message.partition, message.offset
    return state.applied(partition, offset) and state.applied(partition, offset, end_offset(message))


def apply_batch(events: Iterable[Any], agent: str, read: Callable[[str], Any],
                step: Callable[[Any, Any], tuple[Any, Any]], *, log_key: bool = True,
                mark: Callable[[Any, int, int], Any] | None = None,
                ) -> tuple[dict[str, Keyed], list[tuple[str, Any]]]:
    """Apply a batch's commands in memory, each on its key's state as the batch has left it.

    ``read(key)`` gives a key's stored state (once per key, acting for its first event);
    ``step(state, command)`` returns ``(new state, result)``. A command whose step raises is a bug
    that must not stall the partition: it is counted, logged by ids (never by content; the key
    too unless ``log_key`` is false) and skipped, and stays in the topic. Returns each key's
    ``Keyed`` and the ``(command name, result)`` of every command applied, in order. Nothing is
    published or written here: the agent publishes the results, then writes the states.

    With ``mark(state, partition, offset)``, a state a command changed records where that command
    was read, and a command the state already applied (``Positioned.applied``: read again after
    a crash, from an offset committed before the state was written; by a mark inside the
    partition, see ``end_offset``) is skipped and counted in
    ``leadflow_commands_replayed_total``. Its messages went out before the state was written;
    applying it to a newer state could decide otherwise (a disposition read again after the
    lead was reopened would close the new cycle).
    """
    keyed: dict[str, Keyed] = {}
    results: list[tuple[str, Any]] = []
    for event in readable(events, agent):
        key, command = event.key, event.value
        name = type(command).__name__
        entry = keyed.get(key)
        if entry is None:
            with acting_for(event):
                stored = read(key)
            entry = Keyed(before=stored, state=stored, event=event)
        message = event.message
        if mark is not None and isinstance(entry.state, Positioned) and already_applied(entry.state, message):
            runtime.metrics.commands_replayed.labels(agent).inc()
            keyed[key] = entry
            continue
        try:
            state, result = step(entry.state, command)
        except Exception:
            runtime.metrics.command_failures.labels(agent).inc()
            log.exception("%s agent could not apply %s%s", agent, name, f" to {key}" if log_key else "")
            continue
        if mark is not None and state is not entry.state and state is not None:
            state = mark(state, message.partition, message.offset)
        entry.state, entry.event = state, event
        keyed[key] = entry
        results.append((name, result))
    return keyed, results

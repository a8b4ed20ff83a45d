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
acks every event of a batch in the ``finally`` around its ``yield``, that is once the agent asks
for the next batch, after its body has done its writes and awaited its sends. An exception in
the body acks the batch too (DESIGN §5: retries and dead letters are explicit), but only when
Python finalizes the abandoned generator, not when the body raised, and Faust's restarted agent
may take nothing from the stream until then (docs/RELIABILITY.md, "Open findings"). So a body
must not raise: it catches a record's or a batch's bug itself, and a write it waits for is
retried until Kafka acknowledges it, or ends the process once the worker stops (``publish``, the
intake's ``reject``): a refused dead letter that raised lost its record and its batch (session 17).

A commit of the acked offsets waits until Kafka has acknowledged the changelog records of the
writes before them (``streams/faust_fixes.py``, fix 4): the agent itself never waits for that.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from faust.exceptions import ConsumerNotStarted
from faust.streams import _current_event  # private: the event a table read or write belongs to

from streams import stall_guard
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

    Same contract as ``take_events`` otherwise: the stream's automatic acks are off and every
    event of a batch is acked when the agent asks for the next one (after its writes and sends),
    or after the body raised, once the generator is finalized (see the module's docstring). It
    uses the stream's processor and passive-drainer hooks the way ``take_events`` does
    (faust/streams.py); ``_enable_passive`` is private Faust API.
    """
    waiting = stream.channel.queue
    events: list[Any] = []
    ready = asyncio.Event()  # a batch is there to hand over
    open_ = asyncio.Event()  # events may join the batch (cleared while handed over, or full)
    open_.set()

    async def collect(value: Any) -> Any:
        while not open_.is_set():
            await open_.wait()
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_ready: the stream has no current event")
        events.append(event)
        if len(events) >= max_:
            open_.clear()
            ready.set()
        elif waiting.empty():
            ready.set()
        return value

    acks_were = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(collect)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready, timeout=_IDLE_S)
            if not events:
                ready.clear()
                continue
            open_.clear()
            batch = list(events)
            stall_guard.check()  # paused past the session: another worker owns these records now
            try:
                yield batch
            finally:
                events.clear()
                for event in batch:
                    await stream.ack(event)
                ready.clear()
                open_.set()
    finally:
        stream.enable_acks = acks_were
        stream._processors.remove(collect)


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

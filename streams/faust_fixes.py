"""Fixes for faust-streaming 0.15 consumer bugs that commit records it never processed.

1. Skipped records acknowledged across a rebalance.

When a rebalance starts, Faust stops the flow and, once the new generation is assigned, skips
every record still queued from before (``Stream._py_aiter``: "Skipping message ... generation_id").
It also *acknowledges* each record it skips. Between the revoke and the seek back to the
committed offsets (which waits for table recovery), the consumer has forgotten the committed
offset of the partition, so such an ack is taken as progress: the periodic commit writes the
skipped offsets, the seek then starts after them, and those records are never processed.

Seen here as whole runs of accepted leads never captured after a ``kill -9`` and restart (the
restarted worker joins while its dead predecessor still holds a place in the group, so a second
rebalance follows a few seconds later, while records are queued): offsets 107-118 of a partition
of ``leads.inbound`` committed unprocessed, 106 and 119 processed.

The fix: an ack is recorded only for a record of the current generation while the flow is on.
Any other ack still releases the record (so a rebalance never waits for it) but does not move
the committed offset, so after the seek the record is delivered again and processed: at least
once, as every leadflow command is idempotent.

2. A commit past one missing offset. ``Consumer._new_offset`` commits the run of acknowledged
offsets that starts at the committed offset, but it tolerates a run starting one *after* it
(``min(acked) - committed > 1`` refuses only a gap of two or more), and it checks nothing while
the committed offset is unknown (after a revoke, until the seek). After a restart the recovery
resumes the stream partitions before it seeks, a record can be dropped as already read, and the
next commit steps over it: seen as one accepted lead lost (offset 119 missing, 118 and 120
processed). The fix commits only a run that starts exactly at the known committed offset. A
record that is really missing then holds the commit back; when the hold lasts ``HEAL_AFTER_S``
the partition is sought back to its committed offset, so the missing record (and what follows,
already processed: replays are harmless) is delivered again. A hole still there after
``MAX_HEALS`` re-reads cannot be read at all (Kafka's retention deleted it while the worker was
down): it is logged as an error and the commit goes past it, so the partition never stalls.

3. Records dropped as "already read" after a seek. The fetch loop drops a record whose offset is
below the partition's last read offset. After a seek back (the recovery's seek to the committed
offsets, or a re-read above), records fetched from the old position keep arriving for a moment
and raise that mark again, so the records read anew from the committed offset are dropped: the
holes of 2, seen as offsets 428 and 386 of ``lead.commands`` never delivered after a restart.
The fix keeps the marks but never reads them back, so no record is dropped: a record that was
already processed may come again, which every leadflow command tolerates.

4. A commit ahead of the table writes it stands for. A table write queues its changelog record
in Faust's producer buffer (``send_soon``), and the commit's ``producer.flush()`` waits for that
buffer for 0.1 s at most (``ProducerBuffer.flush_atmost`` returns on timeout without error, and
does not count a record its own task has already taken off the queue). On a busy loop an offset
was committed while a write of the command behind it was still queued, and a ``kill -9`` lost
the write for good: seen as a restarted worker's team view that never moved
(docs/RELIABILITY.md, "a table write lost"). The fix keeps the ``FutureMessage`` of every
changelog record sent (``Collection.send_changelog``), and a commit first waits until Kafka has
acknowledged all those sent before it started (bounded by ``CHANGELOG_ACK_TIMEOUT_S``). Every
offset it commits was acknowledged by its agent after that agent's writes were sent, so their
records are among those waited for. Agents never wait: only the commit does, once per commit
interval.

5. Records of a never-committed partition dropped during a rebalance. Faust drops the records it
fetches while its flow is stopped (``Consumer.getmany``: "Seek back to committed offsets") and
counts on the seek back to the committed offsets to read them again. But aiokafka's
``seek_to_committed`` seeks only partitions with a committed offset above 0: a partition never
committed keeps its position past the dropped records, and they are never processed. Seen as a
fresh deployment's reps never configured: ``rep.commands`` was missing from the broker's metadata
when the worker first joined (created a moment before), the config's reps were written to it, and
the rebalance that added it dropped both records (docs/RELIABILITY.md). The fix seeks every stream
partition without a committed offset to its beginning (the worker's ``auto_offset_reset`` is
``earliest``), so nothing of it is skipped: records read twice are harmless.

6. Records cleared from the streams' queues by a resume of a flow that was not stopped. Every
stream's channel queue is cleared when the app's flow control resumes (``FlowControlEvent.resume``,
``clear_on_resume``): right after a rebalance those are records of the old assignment, read again
after the seek. But Faust's recovery also calls ``resume()`` when the flow is already on: after a
restore it resumes the flow to read the changelogs, resumes the stream partitions, seeks them to
their committed offsets, and resumes the flow once more. Records fetched and handed to the streams
in between were cleared from the queues unprocessed, their offsets already read past: seen (with a
diagnostic log of every record fetched, delivered, batched and acknowledged) as records delivered
to a stream and never in any batch, right after a ``kill -9`` restart. A hole before a later
processed record was re-read by fix 2 five seconds later; the last records of a partition were
lost until the next record behind them (the restart test's lost leads and dispositions,
docs/RELIABILITY.md). The fix: ``resume()`` clears the queues only when it resumes a stopped flow.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.tables.base import Collection
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from mode.utils.futures import notify
from mode.utils.queues import FlowControlEvent

__all__ = ["install", "ack_counts", "may_commit", "changelog_acknowledged", "never_committed",
           "seek_to_committed", "resume_flow", "CHANGELOG_ACK_TIMEOUT_S", "HEAL_AFTER_S", "MAX_HEALS",
           "read_offsets"]

log = logging.getLogger(__name__)

#: How long the commit of a partition may be held back by a missing offset before it is re-read.
HEAL_AFTER_S = 5.0
#: Re-reads of one hole before it is taken as unreadable and committed past.
MAX_HEALS = 3
#: How long a commit waits for Kafka to acknowledge the changelog records sent before it.
CHANGELOG_ACK_TIMEOUT_S = 30.0
#: Past this many tracked changelog sends, those already acknowledged are dropped from the list
#: (a process that writes tables but commits nothing for a while must not grow it without end).
_PRUNE_AT = 10_000

_installed = False
# Partition -> (committed offset the commit waits at, since when, re-reads so far) while a hole holds it.
_held: dict[Any, tuple[int, float, int]] = {}
# The changelog records sent since the last commit began (their FutureMessages).
_changelog_sends: list[Any] = []


def ack_counts(message: Any, app: Any) -> bool:
    """Whether acknowledging ``message`` may move the committed offset of its partition."""
    return bool(message.generation_id == app.consumer_generation_id and app.flow_control.is_active())


def may_commit(acked: list[int], committed: int | None) -> bool:
    """Whether the acknowledged offsets continue the committed one (nothing between is unprocessed).

    Faust keeps no committed offset (``None``) for a partition never committed (it reads a
    committed 0 as none too) and between a revoke and the seek back: only a run from offset 0
    may be committed then.
    """
    return bool(acked) and min(acked) <= (committed or 0)


def never_committed(committed: Mapping[Any, int | None], changelog_topics: set[str]) -> list[Any]:
    """The stream partitions ``seek_to_committed`` left where they were: no committed offset above 0.

    Changelog partitions are the recovery's: it positions them itself, and nothing commits them.
    """
    return [tp for tp, offset in committed.items()
            if (offset is None or offset <= 0) and tp.topic not in changelog_topics]


_original_seek_to_committed = AIOKafkaConsumer.seek_to_committed


async def seek_to_committed(self: Any) -> Any:
    """``seek_to_committed``, and the stream partitions never committed to their beginning (fix 5)."""
    committed = await _original_seek_to_committed(self)
    unread = never_committed(committed, self.app.tables.changelog_topics)
    if unread:
        try:
            await self._thread.seek_to_beginning(*unread)
        except IllegalStateError:  # revoked meanwhile: the next assignment seeks again
            log.info("%d never-committed partition(s) revoked before their seek to the beginning", len(unread))
    return committed


_original_resume = FlowControlEvent.resume


def resume_flow(self: FlowControlEvent) -> None:
    """``FlowControlEvent.resume``, clearing the queues only when the flow was stopped (fix 6)."""
    if self.is_active():
        return  # on already: the queues hold records of the current assignment, not yet processed
    _original_resume(self)


class _NeverDrop(dict[Any, Any]):
    """Read offsets by partition: written as faust does, read back as unknown (nothing is dropped)."""

    def __getitem__(self, key: Any) -> None:
        return None

    def __missing__(self, key: Any) -> None:
        return None


def install() -> None:
    """Patch, once per process: ``Consumer``'s ack, offsets, commit and seek back,
    ``Collection.send_changelog``, and the flow control's resume."""
    global _installed
    if _installed:
        return
    original = Consumer.ack
    original_new_offset = Consumer._new_offset
    original_init = Consumer.__init__

    def __init__(self: Consumer, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._read_offset = _NeverDrop()

    def _new_offset(self: Consumer, tp: Any) -> int | None:
        committed = self._committed_offset[tp]
        if may_commit(self._acked[tp], committed):
            _held.pop(tp, None)
            result: int | None = original_new_offset(self, tp)
            return result
        if committed is not None and self._acked[tp] and not _heal(self, tp, committed):
            log.error("offset %d of %s could not be read after %d re-reads (deleted by retention?); "
                      "committing past it", committed, tp, MAX_HEALS)
            _held.pop(tp, None)
            given_up: int | None = original_new_offset(self, tp)
            return given_up
        return None

    def ack(self: Consumer, message: Any) -> bool:
        if ack_counts(message, self.app):
            return original(self, message)
        # Released, not recorded: the rebalance's wait for in-flight records must not hang on it.
        message.acked = True
        self._unacked_messages.discard(message)
        notify(self._waiting_for_ack)
        return False

    original_send_changelog = Collection.send_changelog
    original_commit_offsets = Consumer._commit_offsets

    def send_changelog(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent = original_send_changelog(self, *args, **kwargs)
        _changelog_sends.append(sent)
        if len(_changelog_sends) >= _PRUNE_AT:
            _changelog_sends[:] = [fut for fut in _changelog_sends if not fut.done()]
        return sent

    async def _commit_offsets(self: Consumer, *args: Any, **kwargs: Any) -> bool:
        await changelog_acknowledged()
        committed: bool = await original_commit_offsets(self, *args, **kwargs)
        return committed

    Collection.send_changelog = send_changelog  # type: ignore[method-assign]
    Consumer._commit_offsets = _commit_offsets  # type: ignore[method-assign]
    Consumer.ack = ack  # type: ignore[method-assign]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer.__init__ = __init__  # type: ignore[method-assign]
    AIOKafkaConsumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    FlowControlEvent.resume = resume_flow  # type: ignore[method-assign]
    _installed = True


async def changelog_acknowledged() -> None:
    """Wait until Kafka acknowledged every changelog record sent so far (bounded: a stopping
    producer never answers, and a commit must not hang on it)."""
    sent = [fut for fut in _changelog_sends if not fut.done()]
    _changelog_sends.clear()
    if not sent:
        return
    _, late = await asyncio.wait(sent, timeout=CHANGELOG_ACK_TIMEOUT_S)
    if late:
        log.error("%d changelog record(s) not acknowledged within %.0f s; committing anyway",
                  len(late), CHANGELOG_ACK_TIMEOUT_S)


def _heal(consumer: Consumer, tp: Any, committed: int) -> bool:
    """Re-read ``tp`` from ``committed`` once a hole has held its commit back for ``HEAL_AFTER_S``.

    Returns False when ``MAX_HEALS`` re-reads did not fill the hole: it cannot be read.
    """
    now = time.monotonic()
    offset, since, heals = _held.get(tp, (committed, now, 0))
    if offset != committed:
        since, heals = now, 0
    _held[tp] = (committed, since, heals)
    if now - since < HEAL_AFTER_S:
        return True
    if heals >= MAX_HEALS:
        return False
    _held[tp] = (committed, now, heals + 1)  # at most one re-read per HEAL_AFTER_S
    log.warning("offset %d of %s was never processed; reading the partition again from it", committed, tp)
    asyncio.ensure_future(consumer.seek(tp, committed))
    return True


def read_offsets() -> dict[Any, Any]:
    """The read-offset mapping the patched consumer uses (for tests)."""
    return _NeverDrop()

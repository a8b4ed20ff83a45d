"""Fold won/lost outcomes into the win-rate board (one key, one writer); follow the board on every worker.

``learn_outcomes`` runs where the ``outcomes`` partition of the one key is owned: it folds each
outcome into ``outcome_board`` (a correction moves its deal: ``rules.outcomes.record_outcome``)
and publishes the new board on the compacted ``outcomes.board`` topic (acknowledged) before
writing the table, so a crash in between replays the same fold and the same snapshot.
``follow_outcome_board`` runs on every worker: a plain consumer, outside the
consumer group, that reads ``outcomes.board`` from the start and keeps the latest board in
memory for scoring (``streams.tables.outcome_board`` says why this is not a GlobalTable).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from rules.commands import Outgoing
from rules.outcomes import OutcomeBoard, RecordOutcome, record_outcome
from streams.agents._batch import is_readable
from streams.app import app, runtime
from streams.codec import decode
from streams.tables.outcome_board import outcome_board, snapshot
from streams.topics import outcome_snapshots, outcomes, publish

__all__ = ["learn_outcomes", "follow_outcome_board"]

log = logging.getLogger(__name__)

_POLL_MS = 1000
_RETRY_S = 1.0
_METADATA_TIMEOUT_S = 10.0


@app.agent(outcomes, concurrency=1)
async def learn_outcomes(stream: Any) -> None:
    learning = runtime.policy.scoring.learning
    async for event in stream.events():
        if not is_readable(event, "outcomes"):
            continue
        key, outcome = event.key, event.value
        if not isinstance(outcome, RecordOutcome):
            continue
        board = outcome_board.get(key)
        board = board if isinstance(board, OutcomeBoard) else None
        updated = record_outcome(board, outcome, learning)
        if updated is board:
            continue  # a replayed outcome id
        await publish([Outgoing(channel="outcomes.board", key=key, value=updated)])
        outcome_board[key] = updated  # replaced, never mutated
        log.info("outcome board: %s %s (source %s, segment %s)%s", outcome.lead_id,
                 "won" if outcome.won else "lost", outcome.source, outcome.segment,
                 "" if outcome.corrects is None else
                 f", correcting a {'won' if outcome.corrects.won else 'lost'} counted before")


async def _follow(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    end = (await asyncio.wait_for(consumer.end_offsets([tp]), _METADATA_TIMEOUT_S))[tp]
    while not app.should_stop:
        if not snapshot.loaded and await consumer.position(tp) >= end:
            snapshot.loaded = True
            log.info("outcome board: followed up to offset %d (%d board(s) read)", end, snapshot.seen)
        batches = await consumer.getmany(tp, timeout_ms=_POLL_MS)
        for record in batches.get(tp, ()):
            try:
                snapshot.take(decode(record.value))
            except ValueError:
                log.warning("outcome board: offset %d is not a board; skipped", record.offset)


@app.task
async def follow_outcome_board() -> None:
    """Keep the latest board of ``outcomes.board`` in memory, on every worker, for as long as it runs."""
    tp = TopicPartition(outcome_snapshots.get_topic_name(), 0)
    while not app.should_stop:
        consumer = AIOKafkaConsumer(bootstrap_servers=runtime.settings.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, client_id=f"{runtime.settings.app_id}-outcome-board")
        try:
            await outcome_snapshots.maybe_declare()  # before a first start's declare_topics gets to it
            await consumer.start()
            await _follow(consumer, tp)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the topic not created yet, the broker restarting: start over
            log.warning("outcome board: following %s failed (%s); retrying", tp.topic, type(exc).__name__)
            await asyncio.sleep(_RETRY_S)
        finally:
            await consumer.stop()

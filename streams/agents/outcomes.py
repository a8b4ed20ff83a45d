"""Fold won/lost outcomes into the win-rate board that scoring reads (one key, one writer)."""
from __future__ import annotations

import logging
from typing import Any

from rules.outcomes import RecordOutcome, record_outcome
from streams.app import app, runtime
from streams.tables.outcome_board import outcome_board
from streams.topics import outcomes

__all__ = ["learn_outcomes"]

log = logging.getLogger(__name__)


@app.agent(outcomes, concurrency=1)
async def learn_outcomes(stream: Any) -> None:
    learning = runtime.policy.scoring.learning
    async for key, outcome in stream.items():
        if not isinstance(outcome, RecordOutcome):
            continue
        board = outcome_board.get(key)
        updated = record_outcome(board, outcome, learning)
        if updated is not board:
            outcome_board[key] = updated  # replaced, never mutated
            log.info("outcome board: %s %s (source %s, segment %s)", outcome.lead_id,
                     "won" if outcome.won else "lost", outcome.source, outcome.segment)

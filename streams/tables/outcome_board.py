"""``outcome_board``: the won/lost board (one key), and the in-memory snapshot every worker scores with.

The table is an ordinary one, written only by the outcomes agent on the worker that owns the
partition of ``outcomes`` its one key lands in: that is the board's durable state. After each
change the agent publishes the whole board on the compacted ``outcomes.board`` topic, and every
worker follows that topic into ``snapshot`` (``streams.agents.outcomes.follow_outcome_board``),
so the lead agent anywhere scores with the latest board within a poll of the change.

Why not a Faust ``GlobalTable``: in faust-streaming 0.15 the other workers read a global table's
changelog as a *standby*, and standby events are only applied once ``standby_buffer_size``
(default 1000) of them have piled up or a rebalance flushes them. An outcome recorded on one
worker did not change the scores computed on another (tests/integration/test_crm_lifecycle.py
showed it); the library also documents recovery loops with several instances (faust-streaming
#283, #212). A compacted topic read by a plain consumer has none of that machinery.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rules.lead_state import LeadPolicy
from rules.outcomes import OutcomeBoard
from streams.tables._table import entity_table

__all__ = ["outcome_board", "BoardSnapshot", "snapshot", "with_outcomes"]

outcome_board: Any = entity_table("outcome_board", help="OutcomeBoard under one key (written only by the outcomes agent).")


@dataclass
class BoardSnapshot:
    """The latest board seen on ``outcomes.board``: derived, rebuilt from the topic at every start."""

    board: OutcomeBoard | None = None
    #: Caught up with the end of the topic as it was when this worker started following it.
    loaded: bool = False
    #: Boards read so far (for logs and tests of the follower).
    seen: int = 0

    def take(self, value: Any) -> None:
        if isinstance(value, OutcomeBoard):
            self.board = value
            self.seen += 1


snapshot = BoardSnapshot()


def with_outcomes(policy: LeadPolicy) -> LeadPolicy:
    """``policy`` with the latest won/lost board, for scoring (unchanged when there is none yet)."""
    board = snapshot.board
    return replace(policy, outcomes=board) if board is not None else policy

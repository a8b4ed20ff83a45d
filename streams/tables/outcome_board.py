"""``outcome_board``: the won/lost board (one key), a global table so every worker's scoring reads it.

Written only by the outcomes agent, which owns the one partition of ``outcomes`` its key lands
in; ``use_partitioner`` sends each write to that key's changelog partition, and every worker
keeps a full copy (global), so the lead agent anywhere scores with the latest snapshot.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import faust

from rules.lead_state import LeadPolicy
from rules.lead_crm import OUTCOMES_KEY
from rules.outcomes import OutcomeBoard
from streams.app import app
from streams.codec import CODEC, SCHEMA

__all__ = ["outcome_board", "with_outcomes"]


class _CodecGlobalTable(faust.GlobalTable):  # type: ignore[misc]
    """A global table with our raw keys and codec values (see ``_table.CodecTable`` for why)."""

    def _serializer_from_type(self, typ: Any) -> str:
        return "raw" if typ is str else CODEC


outcome_board = app.tables.add(_CodecGlobalTable(
    app, name="outcome_board", key_type=str, schema=SCHEMA, use_partitioner=True, beacon=app.tables.beacon,
    help="OutcomeBoard under one key (written only by the outcomes agent)."))


def with_outcomes(policy: LeadPolicy) -> LeadPolicy:
    """``policy`` with the current won/lost board, for scoring (unchanged when there is none yet)."""
    board = outcome_board.get(OUTCOMES_KEY)
    return replace(policy, outcomes=board) if isinstance(board, OutcomeBoard) else policy

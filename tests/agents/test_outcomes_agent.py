"""The outcomes agent and the board snapshot every worker scores with."""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from rules.lead_crm import OUTCOMES_KEY
from rules.outcomes import OutcomeBoard, RecordOutcome, Tally
from streams.agents import outcomes
from streams.app import runtime
from streams.tables.outcome_board import BoardSnapshot, outcome_board, snapshot, with_outcomes
from tests.agents.conftest import Published

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _lost(outcome_id: str) -> RecordOutcome:
    return RecordOutcome(outcome_id=outcome_id, lead_id="ld_1", won=False, source="webinar",
                         segment="mid/logistics", rep_id="ana", reason="no budget", at=NOW)


async def test_the_board_is_published_before_the_table_write_and_a_replay_publishes_nothing(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcomes, "publish", published)
    key = f"{OUTCOMES_KEY}-{uuid.uuid4().hex[:8]}"
    seen_at_publish: list[Any] = []
    published.on_publish = lambda _batch: seen_at_publish.append(outcome_board.get(key))
    async with outcomes.learn_outcomes.test_context() as agent:
        await agent.put(key=key, value=_lost("op_1:lost"))
        await agent.put(key=key, value=_lost("op_1:lost"))  # replayed: counted once
        await agent.put(key=key, value=_lost("op_2:lost"))
    assert seen_at_publish[0] is None  # the snapshot went out before the table held the board
    assert [m.channel for m in published.messages] == ["outcomes.board", "outcomes.board"]
    assert {m.key for m in published.messages} == {key}
    board = outcome_board[key]
    assert isinstance(board, OutcomeBoard) and published.messages[-1].value == board
    assert board.tallies["source:webinar"] == Tally(won=0.0, lost=2.0)
    assert board.tallies["segment:mid/logistics"] == Tally(won=0.0, lost=4.0)  # "no budget" counts twice


def test_the_snapshot_keeps_the_latest_board_and_scoring_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    latest = BoardSnapshot()
    one = OutcomeBoard(tallies={"source:webinar": Tally(lost=1.0)}, recent=("a",), updated_at=NOW)
    two = replace(one, tallies={"source:webinar": Tally(lost=2.0)}, recent=("a", "b"))
    latest.take(one)
    latest.take("not a board")
    latest.take(two)
    assert latest.board == two and latest.seen == 2
    monkeypatch.setattr(snapshot, "board", None)
    assert with_outcomes(runtime.policy) is runtime.policy  # nothing learned yet: the policy as is
    monkeypatch.setattr(snapshot, "board", two)
    assert with_outcomes(runtime.policy).outcomes == two

"""The outcomes agent and the board snapshot every worker scores with."""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from rules.lead_crm import OUTCOMES_KEY
from rules.outcomes import (
    MAX_ID_BYTES,
    MAX_KEY_BYTES,
    RECENT_IDS,
    LearningPolicy,
    OutcomeBoard,
    RecordOutcome,
    Tally,
    record_outcome,
)
from streams.agents import outcomes
from streams.app import app, runtime
from streams.codec import decode, encode
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


#: A float as long as orjson writes one (24 bytes): the tallies' worst case.
_LONGEST_FLOAT = -2.2250738585072014e-308


def test_the_largest_board_fits_well_inside_one_kafka_record() -> None:
    """The board goes as one record (``outcomes.board`` and the table's changelog): the largest the
    rules allow, every key as long as ``board_key`` lets it be (names of 4-byte characters, of
    control characters JSON escapes in 6 bytes, of quotes), ``max_keys`` of them, 256 outcome ids
    of 1000 characters and the longest floats, encodes with the real codec far below Kafka's 1 MB."""
    learning = LearningPolicy()
    board = None
    for n in range(1000):  # 3 keys each: far more than max_keys
        board = record_outcome(board, RecordOutcome(
            outcome_id=f"{n:04d}" + "i" * 996, lead_id=f"ld_{n}", won=n % 2 == 0,
            source=f"{n:04d}" + "\U0001F600" * 96,  # 100 characters, as the JSON API takes a source
            segment=f"mid/{n:04d}" + "\x01" * 196,  # an industry attribute of 200 characters
            rep_id=f"{n:04d}" + '"' * 400, reason="no budget", at=NOW), learning)
    assert board is not None and len(board.tallies) == learning.max_keys and len(board.recent) == RECENT_IDS
    board = replace(board, tallies={key: Tally(won=_LONGEST_FLOAT, lost=_LONGEST_FLOAT) for key in board.tallies})
    assert all(len(orjson.dumps(key)) - 2 <= MAX_KEY_BYTES for key in board.tallies)
    raw = encode(board)
    # Each tally: its key in quotes, ':', {"won":…,"lost":…} and ',' (at most 2 + 200 + 1 + 16 + 48 + 1).
    bound = learning.max_keys * (MAX_KEY_BYTES + 68) + RECENT_IDS * (MAX_ID_BYTES + 3) + 200
    assert len(raw) <= bound < 560_000
    assert len(raw) < app.conf.producer_max_request_size * 0.6
    assert decode(raw) == board

"""``timer_fields``: the fast read of ``sla_timers`` rows the timer index is rebuilt from."""
from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from rules.lead import SlaTimer
from streams.codec import decode, encode, timer_fields

DUE = datetime(2026, 3, 29, 1, 30, 15, 250000, tzinfo=UTC)


def test_it_reads_what_the_codec_wrote_as_decode_would() -> None:
    raw = encode(SlaTimer(lead_id="ld_000000000000000000000001", cycle=3, step=-1, due_at=DUE))
    timer = decode(raw)
    assert timer_fields(raw) == (timer.due_at.timestamp(), timer.cycle, timer.step) == (DUE.timestamp(), 3, -1)


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"[]", b'{"type": "LeadState", "data": {}}',
    b'{"type": "SlaTimer", "data": {"cycle": 1, "step": 0}}',
    b'{"type": "SlaTimer", "data": {"cycle": 1, "step": 0, "due_at": "2026-03-29T01:30:00"}}',  # no zone
    b'{"type": "SlaTimer", "data": {"cycle": "x", "step": 0, "due_at": "2026-03-29T01:30:00+00:00"}}',
    orjson.dumps({"type": "SlaTimer", "data": None}),
])
def test_anything_else_is_none_not_an_error(raw: bytes) -> None:
    assert timer_fields(raw) is None

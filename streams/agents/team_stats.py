"""Count SLA signals per team in windowed tables (arrivals, contacts, breaches, escalations).

Signals come in batches (``take_ready``) and are added up per table, key and window before
anything is written, so a burst writes one increment (one changelog record) per team, signal and
window instead of one per signal. Each increment is written "acting for" the last event it
counts (``streams/agents/_batch.py``): that event gives the changelog partition (every event of
a team comes from the team's partition) and the window (its timestamp lies in the window counted).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from streams.agents._batch import acting_for, take_ready
from streams.app import app, runtime
from streams.tables.team_windows import FIVE_MINUTES_S, MINUTE_S, SIGNALS, team_five_minutes, team_minute
from streams.topics import team_signals

__all__ = ["count_team_signals", "tally"]

log = logging.getLogger(__name__)

#: The windowed tables every signal is counted in, with their window size in seconds.
_TABLES: tuple[tuple[Any, int], ...] = ((team_minute, MINUTE_S), (team_five_minutes, FIVE_MINUTES_S))

#: (table index in _TABLES, "team|signal", window number) -> (count, last event of that window)
Tally = dict[tuple[int, str, int], tuple[int, Any]]


def _key_of(team_id: Any, raw: Any) -> str | None:
    if not isinstance(team_id, str):
        return None  # no key, or one that is not UTF-8 (``Unreadable``)
    try:
        signal = orjson.loads(raw)["signal"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return f"{team_id}|{signal}" if signal in SIGNALS else None


def tally(events: Iterable[Any]) -> Tally:
    """Signals per table, key and window, each with the last event that counted in it."""
    counts: Tally = {}
    for event in events:
        key = _key_of(event.key, event.value)
        if key is None:
            continue
        timestamp = event.message.timestamp
        for index, (_, size) in enumerate(_TABLES):
            slot = (index, key, int(timestamp // size))  # Faust's tumbling window: start = ts // size * size
            counts[slot] = (counts.get(slot, (0, None))[0] + 1, event)
    return counts


@app.agent(team_signals, concurrency=1)
async def count_team_signals(stream: Any) -> None:
    # A batch's events are acked only when this loop asks for the next batch: take_ready turns
    # the stream's automatic acks off and acks every event in the finally around its yield
    # (streams/agents/_batch.py), so a batch counts as processed after its writes.
    async for events in take_ready(stream):
        try:
            for (index, key, _), (count, last) in tally(events).items():
                table = _TABLES[index][0]
                with acting_for(last):
                    table[key] += count
        except Exception:
            # A bug must not stop the counters: count it, log ids only, move on.
            runtime.metrics.command_failures.labels("team_stats").inc()
            log.exception("team stats could not count a batch of %d signal(s)", len(events))

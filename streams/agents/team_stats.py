"""Count SLA signals per team in windowed tables (arrivals, contacts, breaches, escalations)."""
from __future__ import annotations

from typing import Any

import orjson

from streams.app import app
from streams.tables.team_windows import SIGNALS, team_hour, team_minute
from streams.topics import team_signals

__all__ = ["count_team_signals"]


@app.agent(team_signals, concurrency=1)
async def count_team_signals(signals: Any) -> None:
    async for team_id, raw in signals.items():
        try:
            signal = orjson.loads(raw)["signal"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if signal not in SIGNALS:
            continue
        key = f"{team_id}|{signal}"
        team_minute[key] += 1
        team_hour[key] += 1

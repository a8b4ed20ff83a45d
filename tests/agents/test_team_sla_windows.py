"""The team windows' SLA compliance: met / (met + missed) per lead-cycle, as /metrics and the report."""
from __future__ import annotations

from typing import Any

import pytest

from streams.agents import team_stats
from streams.tables.team_windows import HOUR_WINDOWS, team_five_minutes, signals_of, window_counts
from tests.agents.test_team_stats_agent import NOW, T, _Changelog, _signal, _team, _until


def _events(team: str) -> list[tuple[str, dict[str, Any]]]:
    """Lead A breaches and is called late after the breach; lead B is called in time."""
    return [
        ("lead.captured", {"team_id": team}),
        ("lead.captured", {"team_id": team}),
        ("lead.contacted", {"team_id": team, "within_sla": True, "sla_breached": False}),  # B
        ("lead.sla_breached", {"team_id": team, "step": 0}),                                # A
        ("lead.escalated", {"team_id": team, "action": "remind", "outcome": "sent"}),      # A
        ("lead.contacted", {"team_id": team, "within_sla": False, "sla_breached": True}),  # A, late
    ]


async def test_a_breached_lead_called_late_counts_once_beside_one_called_in_time() -> None:
    team = _team()
    with pytest.MonkeyPatch.context() as monkeypatch:
        changelog = _Changelog(monkeypatch)
        signals = [signal for kind, data in _events(team) for signal in signals_of(kind, data)]
        async with team_stats.count_team_signals.test_context() as agent:
            for n, signal in enumerate(signals):
                await agent.put(key=team, value=_signal(signal), timestamp=T + 1 + n)
            await _until(lambda: sum(w[3] for w in changelog.of(team) if w[0] == "team_sla_5min") == len(signals),
                         "every signal counted")
    hour = window_counts(team_five_minutes, team, windows=HOUR_WINDOWS, now=NOW)
    assert hour == {"arrival": 2, "contact_in_sla": 1, "contact_late": 1, "breach": 1, "escalation": 1,
                    "sla_met": 1, "sla_missed": 1, "compliance": 0.5}  # was 1 / (1 + 1 + 1): 0.3333


@pytest.mark.parametrize(("kind", "data", "signals"), [
    ("lead.captured", {"team_id": "sdr"}, ["arrival"]),
    ("lead.reopened", {"team_id": "sdr"}, ["arrival"]),
    ("lead.sla_breached", {"team_id": "sdr"}, ["breach", "sla_missed"]),  # queued, offered or held alike
    ("lead.contacted", {"team_id": "sdr", "within_sla": True}, ["contact_in_sla", "sla_met"]),
    # Late with no breach before it (the breach timer had not fired yet): missed, once.
    ("lead.contacted", {"team_id": "sdr", "within_sla": False, "sla_breached": False}, ["contact_late", "sla_missed"]),
    # After the breach, the breach counted the lead already, even for a call synced late that was in time.
    ("lead.contacted", {"team_id": "sdr", "within_sla": False, "sla_breached": True}, ["contact_late"]),
    ("lead.contacted", {"team_id": "sdr", "within_sla": True, "sla_breached": True}, ["contact_in_sla"]),
    ("lead.escalated", {"team_id": "sdr", "action": "reassign", "outcome": "moved"}, ["escalation"]),
    # A step that did nothing is no escalation (docs/OBSERVABILITY.md), as in leadflow_sla_escalations_total.
    ("lead.escalated", {"team_id": "sdr", "action": "reassign", "outcome": "skipped"}, []),
    ("lead.escalated", {"team_id": "sdr", "action": "alert_manager", "outcome": "not_sent"}, []),
    ("lead.escalated", {"team_id": "sdr", "action": "remind"}, ["escalation"]),  # written before outcomes
    ("lead.assigned", {"team_id": "sdr"}, []),
    ("lead.sla_breached", {"team_id": None}, []),
])
def test_the_signals_of_each_event(kind: str, data: dict[str, Any], signals: list[str]) -> None:
    assert signals_of(kind, data) == signals

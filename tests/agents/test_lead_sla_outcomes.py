"""The lead agent's SLA outcomes: /metrics and the team windows count each lead-cycle once.

Three leads through the real transitions (``rules.lead.apply``): one contacted in time, one
breached and then contacted late, one breached and never contacted. Compliance is 1 of 3 in
``leadflow_sla_outcomes_total`` and in the team's ``sla_met``/``sla_missed`` signals: never the
1 of 2 of counting contacts alone, nor the 1 of 4 of counting the breach and the late call both.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from ops.metrics import Metrics
from rules import lead
from rules.commands import Outgoing, RecordActivity, SlaDue
from rules.lead import LeadState
from streams.agents import lead as lead_agent
from tests.rules._sim import T0
from tests.rules.test_lead import LEAD_ID
from tests.rules.test_lead_sla import POLICY, start


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[Metrics]:
    fresh = Metrics()
    monkeypatch.setattr(lead_agent, "runtime", SimpleNamespace(metrics=fresh))
    yield fresh


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _call(state: LeadState, at_s: float) -> tuple[LeadState, tuple[Outgoing, ...]]:
    command = RecordActivity(lead_id=LEAD_ID, activity_id="act-1", type="call", rep_id="rep-a", at=_at(at_s))
    transition = lead.apply(state, command, _at(max(at_s, 61)), POLICY)
    assert transition.state is not None
    return transition.state, transition.outgoing


def _breach(state: LeadState) -> tuple[LeadState, tuple[Outgoing, ...]]:
    assert state.sla_deadline is not None
    command = SlaDue(lead_id=LEAD_ID, cycle=state.cycle, step=0, due_at=state.sla_deadline)
    transition = lead.apply(state, command, state.sla_deadline, POLICY)
    assert transition.state is not None
    return transition.state, transition.outgoing


def test_each_lead_cycle_is_met_or_missed_once(metrics: Metrics) -> None:
    _, in_time = _call(start(), 30)  # called at 30 s, the deadline is 60 s
    breached, breach = _breach(start())
    _, late = _call(breached, 120)
    _, never = _breach(start())
    signals = []
    for out in (in_time, breach, late, never):
        lead_agent._observe(out)
        signals += [s.value["signal"] for s in lead_agent.team_signals_of(out)]
    assert metrics.sla_outcomes.labels("inbound", "met")._value.get() == 1
    assert metrics.sla_outcomes.labels("inbound", "missed")._value.get() == 2
    assert (signals.count("sla_met"), signals.count("sla_missed")) == (1, 2)
    assert (signals.count("breach"), signals.count("contact_in_sla"), signals.count("contact_late")) == (2, 1, 1)

"""Three gaps earlier sessions noted: a recycled lead's status, a merged lead's e-mail, a replayed CRM upsert (pure)."""
from __future__ import annotations

from dataclasses import replace
import pytest

from rules.commands import DeferCommand, RouteLead
from rules.lead import LeadPolicy, LeadState
from rules.scoring import ScoringModel
from tests.rules.test_lead_crm import AE, GATED, converted, crm_event, step, types

# --- 1. a recycled lead starts its new cycle as a fresh lead ---------------------------------


def _lost_and_due(policy: LeadPolicy) -> tuple[LeadState, DeferCommand]:
    state, _ = converted()
    state, out = step(state, crm_event("lost", reason="no budget"), policy)
    (defer,) = [m.value for m in out if isinstance(m.value, DeferCommand)]
    return state, defer


def test_without_an_mql_threshold_a_recycled_lead_returns_as_new_not_mql() -> None:
    policy = LeadPolicy(default_team="inbound", recycle_after_s=3600.0, account_executives={"*": AE})
    assert policy.scoring.mql_threshold is None
    state, defer = _lost_and_due(policy)
    again, out = step(state, defer.command, policy, minutes=60 * 24 * 4)
    assert (again.cycle, again.status, again.routing) == (2, "new", "routing")
    assert types(out) == ["lead.recycled", "lead.scored", "RouteLead"]  # no lead.mql without a gate
    assert isinstance(out[-1].value, RouteLead) and out[-1].value.route_id == f"{again.lead_id}:2:1"
    assert "mql" not in [e.kind for e in again.timeline if e.at > state.timeline[-1].at]


@pytest.mark.parametrize("threshold, status, last", [(40, "mql", "RouteLead"), (100, "nurture", "lead.nurture")])
def test_with_an_mql_threshold_a_recycled_lead_is_gated_by_its_new_score(threshold: int, status: str,
                                                                         last: str) -> None:
    policy = replace(GATED, recycle_after_s=3600.0, scoring=ScoringModel(mql_threshold=threshold))
    state, defer = _lost_and_due(policy)
    again, out = step(state, defer.command, policy, minutes=60 * 24 * 4)
    assert (again.cycle, again.status) == (2, status)
    assert types(out)[-1] == last


def test_an_ungated_recycled_lead_from_a_hot_source_is_still_new() -> None:
    # Without a threshold a hot source does not make an MQL at capture either (docs/QUALIFICATION.md).
    policy = LeadPolicy(default_team="inbound", recycle_after_s=60.0)
    state, defer = _lost_and_due(policy)
    state = replace(state, lead=replace(state.lead, source="demo-request"))
    again, out = step(state, defer.command, policy, minutes=60 * 24 * 4)
    assert again.status == "new" and "lead.mql" not in types(out)

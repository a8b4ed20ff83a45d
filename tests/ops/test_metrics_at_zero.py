"""Counters an alert watches exist at 0 before their first count: a series born at 1 has no
earlier sample, so ``increase()`` reads a lone failure or dead letter as no change and
``LeadflowAgentFailing`` / ``LeadflowWebhookDeadLettersGrowing`` never fire for it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from ops.metrics import AGENTS, CRM_DEAD_LETTER_REASONS, ESCALATION_ACTIONS, WEBHOOK_EVENT_TYPES, Metrics

REPO = Path(__file__).resolve().parents[2]


def _exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


@pytest.mark.parametrize("line", [
    'leadflow_command_failures_total{agent="lead"} 0.0',
    'leadflow_command_failures_total{agent="notifier"} 0.0',
    'leadflow_webhook_dead_letters_total{event_type="lead.assigned"} 0.0',
    'leadflow_webhook_dead_letters_total{event_type="opportunity.created"} 0.0',
    'leadflow_crm_dead_letters_total{reason="gave_up"} 0.0',
    'leadflow_crm_dead_letters_total{reason="refused"} 0.0',
])
def test_a_fresh_worker_exposes_its_failure_counters_at_zero(line: str) -> None:
    assert line in _exposition(Metrics()).splitlines()


def test_every_agent_event_type_and_reason_is_at_zero() -> None:
    text = _exposition(Metrics())
    for agent in AGENTS:
        assert f'leadflow_command_failures_total{{agent="{agent}"}} 0.0' in text
    for event_type in WEBHOOK_EVENT_TYPES:
        assert f'leadflow_webhook_dead_letters_total{{event_type="{event_type}"}} 0.0' in text
    for reason in CRM_DEAD_LETTER_REASONS:
        assert f'leadflow_crm_dead_letters_total{{reason="{reason}"}} 0.0' in text


def test_the_configured_teams_sla_counters_are_at_zero() -> None:
    metrics = Metrics()
    metrics.configure_teams(["sdr", "ae"])
    text = _exposition(metrics)
    for team in ("sdr", "ae"):
        for line in (f'leadflow_sla_breaches_total{{team="{team}"}} 0.0',
                     f'leadflow_sla_outcomes_total{{outcome="met",team="{team}"}} 0.0',
                     f'leadflow_sla_outcomes_total{{outcome="missed",team="{team}"}} 0.0',
                     f'leadflow_leads_contacted_total{{team="{team}",within_sla="false"}} 0.0',
                     f'leadflow_sla_at_risk_total{{team="{team}"}} 0.0',
                     f'leadflow_leads_assigned_total{{team="{team}"}} 0.0',
                     f'leadflow_leads_queued_total{{team="{team}"}} 0.0'):
            assert line in text
        for action in ESCALATION_ACTIONS:
            assert f'leadflow_sla_escalations_total{{action="{action}",team="{team}"}} 0.0' in text
    metrics.configure_teams(["sdr"])  # again (a second start, a reload): nothing resets
    metrics.sla_breaches.labels("sdr").inc()
    metrics.configure_teams(["sdr"])
    assert 'leadflow_sla_breaches_total{team="sdr"} 1.0' in _exposition(metrics)


def _source(folder: str) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / folder).glob("*.py")))


def test_the_lists_name_every_agent_webhook_and_dead_letter_reason_the_code_uses() -> None:
    agents_code = _source("streams/agents")
    used_agents = (set(re.findall(r'command_failures\.labels\("(\w+)"\)', agents_code))
                   | set(re.findall(r'readable\(\w+, "(\w+)"\)', agents_code))
                   | set(re.findall(r'apply_batch\(\w+, "(\w+)"', agents_code)))
    assert {"lead", "team", "notifier", "crm"} <= used_agents
    assert used_agents <= set(AGENTS)
    rules_code = _source("rules")
    used_types = (set(re.findall(r'event_type="([a-z_.]+)"', rules_code))
                  | set(re.findall(r'notify_rep\(\w+, "([a-z_.]+)"', rules_code))
                  | set(re.findall(r'kind = "(lead\.\w+)" if .* else "(lead\.\w+)"', rules_code)[0]))
    assert {"lead.assigned", "lead.offered", "lead.reminder", "opportunity.created"} <= used_types
    assert used_types <= set(WEBHOOK_EVENT_TYPES)
    reasons = set(re.findall(r'kind="(\w+)"', (REPO / "streams/agents/crm.py").read_text(encoding="utf-8")))
    assert reasons == set(CRM_DEAD_LETTER_REASONS)


def test_the_escalation_actions_are_the_ladder_steps() -> None:
    from typing import get_args

    from sla.policy import StepKind

    assert set(get_args(StepKind)) == set(ESCALATION_ACTIONS)


async def test_a_worker_creates_its_configured_teams_counters_as_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from streams.agents import observe

    metrics = Metrics()
    config = SimpleNamespace(teams=[SimpleNamespace(id="sdr"), SimpleNamespace(id="queue-only")])
    monkeypatch.setattr(observe, "runtime", SimpleNamespace(metrics=metrics, config=config))
    monkeypatch.setattr(observe, "app", SimpleNamespace(should_stop=True))  # start, then stop at once
    await observe.refresh_gauges()
    assert metrics.registry.get_sample_value("leadflow_sla_breaches_total", {"team": "queue-only"}) == 0.0
    assert metrics.registry.get_sample_value("leadflow_sla_outcomes_total", {"team": "sdr", "outcome": "missed"}) == 0.0

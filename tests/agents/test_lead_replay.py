"""The lead agent skips a command read again after a crash: its state records where it read the last one."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from rules.capture import CapturedLead
from rules.commands import CaptureLead, DispositionLead, LeadAssigned, ReleaseLead, RouteLead, RoutingDecision
from rules.lead import LeadState
from streams.agents import lead
from streams.tables.lead_state import lead_state
from tests.agents.conftest import Published, replayed, until

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _capture(lead_id: str, capture_id: str, at: datetime) -> CaptureLead:
    return CaptureLead(lead_id=lead_id, capture_id=capture_id, captured_at=at,
                       lead=CapturedLead(email=f"{lead_id}@buyer.example", source="web"))


def _assigned(route: RouteLead, rep_id: str) -> LeadAssigned:
    decision = RoutingDecision(team_id=route.team_id, strategy="weighted_round_robin", candidates=(),
                               winner=rep_id, reason="test", decided_at=NOW)
    return LeadAssigned(lead_id=route.lead_id, route_id=route.route_id, team_id=route.team_id, rep_id=rep_id,
                        rep_name=rep_id, webhook_url=f"https://hooks.example/{rep_id}", webhook_secret=None,
                        decision=decision, assigned_at=NOW)


def lead_of(lead_id: str) -> LeadState:
    state = lead_state.get(lead_id)
    assert isinstance(state, LeadState)
    return state


async def closed_and_reopened(published: Published, monkeypatch: pytest.MonkeyPatch) -> tuple[str, DispositionLead]:
    """A lead whose ``lead.commands`` offsets 0-4 were: captured, assigned to ana, closed (the
    disposition returned), captured again (a new cycle), assigned to ben."""
    monkeypatch.setattr(lead, "publish", published)
    lead_id = f"ld-{uuid.uuid4().hex[:8]}"
    async with lead.run_leads.test_context() as agent:
        await agent.put(key=lead_id, value=_capture(lead_id, "c1", NOW))
        await until(lambda: len(published.values(RouteLead)) == 1)
        await agent.put(key=lead_id, value=_assigned(published.values(RouteLead)[0], "ana"))
        disposition = DispositionLead(lead_id=lead_id, status="nurture", reason=None, rep_id="ana", at=NOW)
        await agent.put(key=lead_id, value=disposition)
        await until(lambda: lead_of(lead_id).routing == "released")
        await agent.put(key=lead_id, value=_capture(lead_id, "c2", NOW + timedelta(days=30)))
        await until(lambda: len(published.values(RouteLead)) == 2)
        await agent.put(key=lead_id, value=_assigned(published.values(RouteLead)[1], "ben"))
        await until(lambda: lead_of(lead_id).routing == "assigned")
    return lead_id, disposition


async def test_a_disposition_read_again_after_the_lead_reopened_does_not_close_it_again(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker dies before committing offset 2 onwards: the disposition is read again.
    lead_id, disposition = await closed_and_reopened(published, monkeypatch)
    before = lead_of(lead_id)
    assert (before.cycle, before.assignment and before.assignment.rep_id) == (2, "ben")
    assert (before.applied_partition, before.applied_offset) == (0, 4)
    releases, skipped = len(published.values(ReleaseLead)), replayed("lead")

    async with lead.run_leads.test_context() as agent:  # the restarted worker, from offset 2
        agent.sent_offset = 2
        await agent.put(key=lead_id, value=disposition)
        await until(lambda: replayed("lead") > skipped or lead_of(lead_id) != before)
    assert lead_of(lead_id) == before, "the disposition was applied to the new cycle"
    assert len(published.values(ReleaseLead)) == releases, "ben's assignment was released"
    assert replayed("lead") == skipped + 1

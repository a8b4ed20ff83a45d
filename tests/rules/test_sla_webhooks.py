"""The SLA's webhooks carry the lead context ``lead.assigned`` carries (DESIGN §4): the lead,
enrichment, score, why this rep, the SLA deadline and the recent timeline; every
``lead.reassigned`` says why."""
from __future__ import annotations

from typing import Any

from rules.commands import Notify
from rules.lead import LeadPolicy
from tests.rules._sim import Bus, values
from tests.rules.test_sla_waiting import LADDER, MANAGER, POOL, TINY, capture, fire, fire_until, put_rep

POLICY = LeadPolicy(default_team=TINY, sla_policies=(LADDER,), managers={TINY: MANAGER},
                    overflow_teams={TINY: POOL})
CONTEXT = {"lead_id", "cycle", "lead", "enrichment", "rep", "team_id", "why", "sla_deadline", "attribution",
           "score", "timeline"}


def hooks(sent: list[Any], kind: str) -> list[Notify]:
    return [n for n in values(sent, "notifications", Notify) if n.event_type == kind]


def test_reminder_reassigned_and_escalated_carry_what_assigned_carries() -> None:
    bus = Bus(policy=POLICY)
    put_rep(bus, "gus", TINY)
    put_rep(bus, "hal", TINY)
    put_rep(bus, "pat", POOL)
    lead_id = capture(bus, 1)
    (assigned,) = hooks(bus.sent, "lead.assigned")
    context = assigned.payload["data"]
    assert set(context) == CONTEXT and context["score"] is not None and context["enrichment"] is not None
    sent = fire_until(bus, lead_id, 3)  # breach, reminder, reassigned to the other rep, manager alert
    (reminder,) = hooks(sent, "lead.reminder")
    (reassigned,) = hooks(sent, "lead.reassigned")
    (escalated,) = hooks(sent, "lead.escalated")
    for notice in (reminder, reassigned, escalated):
        data = notice.payload["data"]
        assert CONTEXT <= set(data), (notice.event_type, CONTEXT - set(data))
        # The same lead context, not a thinner copy of it.
        for key in ("lead_id", "cycle", "lead", "enrichment", "score", "attribution", "sla_deadline"):
            assert data[key] == context[key], (notice.event_type, key)
        assert data["timeline"] and data["timeline"][-1].keys() == {"at", "kind", "detail"}
    # The reminder and the reassignment notice are about the rep who got the lead first, and why.
    assert reminder.payload["data"]["rep"] == reassigned.payload["data"]["rep"] == context["rep"]
    assert reminder.payload["data"]["why"] == reassigned.payload["data"]["why"] == context["why"]
    assert reassigned.payload["data"]["reason"] == "reassign"
    # The manager hears who holds it now (the second rep) and why they got it.
    holder = bus.leads[lead_id].assignment
    assert holder is not None and escalated.payload["data"]["rep"] == {"rep_id": holder.rep_id, "name": holder.rep_name}
    assert escalated.payload["data"]["why"]["reason"] == holder.decision.reason
    sent = fire_until(bus, lead_id, 4)
    (released,) = hooks(sent, "lead.reassigned")
    assert released.payload["data"]["reason"] == "release_to_pool" and released.rep_id == holder.rep_id


def test_a_manager_alert_about_a_waiting_lead_has_its_context_and_no_rep() -> None:
    bus = Bus(policy=POLICY)
    put_rep(bus, "gus", TINY)
    capture(bus, 1)
    waiting = capture(bus, 2)
    (escalated,) = hooks(fire_until(bus, waiting, 3), "lead.escalated")
    data = escalated.payload["data"]
    assert CONTEXT <= set(data) and data["rep"] is None and data["why"] is None and data["rep_id"] is None
    assert data["routing"] == "queued" and data["score"] is not None and data["team_id"] == TINY


def test_every_reassigned_webhook_says_why() -> None:
    bus = Bus(policy=LeadPolicy(default_team=TINY, sla_policies=(LADDER,), offer_timeouts={TINY: 5.0}))
    put_rep(bus, "gus", TINY)
    put_rep(bus, "hal", TINY)
    lead_id = capture(bus, 1)
    _, sent = fire(bus, lead_id)  # the first offer lapses
    (lapsed,) = hooks(sent, "lead.reassigned")
    assert lapsed.payload["data"]["reason"] == "offer_expired"
    assert set(lapsed.payload["data"]) >= CONTEXT

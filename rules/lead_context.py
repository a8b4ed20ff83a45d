"""What every webhook about a lead tells its reader (pure): the lead, its enrichment and score,
why its rep got it, the SLA deadline, attribution and the recent timeline (DESIGN §4).

One builder for ``lead.assigned`` / ``lead.offered`` (``rules.lead``) and for the SLA's
``lead.reminder``, ``lead.reassigned`` and ``lead.escalated`` (``rules.lead_sla``), so a rep
reminded or a manager alerted reads the same context as the rep who was assigned the lead.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rules.lead_state import Assignment, LeadState

__all__ = ["TIMELINE_SHOWN", "lead_context"]

#: How many of the newest timeline entries a webhook carries (the full history is ``lead.events``).
TIMELINE_SHOWN = 10


def lead_context(state: LeadState, assignment: Assignment | None) -> dict[str, Any]:
    """The ``data`` of a webhook about ``state``, told about ``assignment`` (its rep and why).

    ``assignment`` is the one the webhook is about: the rep assigned, reminded or losing the
    lead; ``None`` when nobody holds it (a manager alerted about a queued lead): ``rep`` and
    ``why`` are then ``None`` and ``team_id`` is the lead's team.
    """
    # rules.lead_crm imports rules.lead_sla, which imports this module: imported here, not above.
    from rules.lead_crm import score_view

    return {
        "lead_id": state.lead_id,
        "cycle": state.cycle,
        "lead": asdict(state.lead),
        "enrichment": asdict(state.enrichment) if state.enrichment is not None else None,
        "rep": {"rep_id": assignment.rep_id, "name": assignment.rep_name} if assignment is not None else None,
        "team_id": assignment.team_id if assignment is not None else state.team_id,
        "why": ({"reason": assignment.decision.reason, "strategy": assignment.decision.strategy,
                 "candidates": [asdict(c) for c in assignment.decision.candidates]}
                if assignment is not None else None),
        "sla_deadline": state.sla_deadline,
        "attribution": {"first_touch": asdict(state.first_touch), "last_touch": asdict(state.last_touch),
                        "touches": state.touches},
        "score": score_view(state.score),
        "timeline": [asdict(e) for e in state.timeline[-TIMELINE_SHOWN:]],
    }

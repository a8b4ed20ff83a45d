"""The offer handshake and the queue overflow, both timed by the lead's own timer.

* **Offer** (teams with ``offer_timeout``): the chosen rep is *offered* the lead (a
  ``lead.offered`` webhook with the deadline) and holds it, capacity taken, until they accept
  (``POST /v1/leads/{id}/accept``), decline (``.../decline`` with a reason) or let the offer
  lapse. A decline or a lapse routes the lead to the next rep; whoever declined or let it lapse
  is never offered it again in this cycle.
* **Overflow** (teams with ``overflow_after`` and an ``overflow_team``): a lead still waiting in
  the team's queue after that long leaves it (``WithdrawLead``) and is routed to the overflow
  team.

Both deadlines ride on the lead's timer (``OFFER_STEP`` and ``OVERFLOW_STEP``); the lead
re-checks them when the timer fires, so a stale or replayed firing changes nothing.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from rules.commands import AnswerOffer, LeadQueued, Outgoing, SlaDue, WithdrawLead
from rules.lead_sla import notify_rep
from rules.lead_state import (
    OFFER_STEP,
    LeadPolicy,
    LeadState,
    LeadTransition,
    event,
    note,
    reroute,
    routing_latency,
)

__all__ = ["offer_problem", "answer_offer", "offer_due", "overflow_at", "overflow_due"]


def offer_problem(state: LeadState | None, rep_id: str) -> str | None:
    """Why ``rep_id`` cannot answer an offer of this lead now, or ``None`` when they can."""
    if state is None:
        return "no such lead"
    if state.routing != "offered" or state.assignment is None:
        return f"the lead has no open offer (it is {state.routing})"
    if state.assignment.rep_id != rep_id:
        return f"the lead is offered to another rep, not {rep_id}"
    return None


def answer_offer(state: LeadState, command: AnswerOffer, now: datetime, policy: LeadPolicy) -> LeadTransition:
    a = state.assignment
    if state.routing != "offered" or a is None or a.route_id != command.route_id or a.rep_id != command.rep_id:
        return _too_late(state, command, now, policy)
    if command.accepted:
        accepted = replace(state, routing="assigned", offer_expires_at=None)
        accepted, latency = routing_latency(accepted, command.at)
        accepted = note(accepted, policy, command.at, "accepted", rep_id=a.rep_id, team_id=a.team_id)
        published = event(accepted, "lead.assigned", command.at, {
            "rep_id": a.rep_id, "team_id": a.team_id, "route_id": a.route_id, "accepted": True,
            "decision": {"strategy": a.decision.strategy, "reason": a.decision.reason, "winner": a.rep_id},
            "sla_deadline": accepted.sla_deadline, **latency,
        })
        return LeadTransition(state=accepted, outgoing=(published,))
    declined = replace(state, declined_by=tuple(dict.fromkeys(state.declined_by + (a.rep_id,))))
    reason = f"declined by {a.rep_id}" + (f": {command.reason}" if command.reason else "")
    moved, outgoing = reroute(declined, now, policy, note_kind="declined", reason=reason,
                              detail={"declined_reason": command.reason})
    return LeadTransition(state=moved, outgoing=tuple(outgoing))


def _too_late(state: LeadState, command: AnswerOffer, now: datetime, policy: LeadPolicy) -> LeadTransition:
    """An answer to an offer that is gone: changes nothing, but is recorded with why.

    The API checks the offer before it accepts an answer, yet two answers sent at once (an accept
    and a decline), or an accept arriving as the offer lapses or is withdrawn, both pass that
    check; only the first to reach the lead counts. The other one is on the timeline
    (``offer_answer_rejected``) and on ``lead.events`` (``lead.offer_answer_rejected``), like the
    lead's other refused commands, so the rep and their manager can see what became of it.
    """
    a = state.assignment
    answer = "accept" if command.accepted else "decline"
    if a is not None and (a.route_id, a.rep_id) == (command.route_id, command.rep_id):
        if state.routing == "assigned" and command.accepted:
            return LeadTransition(state=state)  # accepted already (this answer again): the lead is theirs
        if state.routing in ("offered", "assigned"):
            why = f"{command.rep_id} already accepted the offer"
        else:
            why = f"the offer to {command.rep_id} is gone (the lead is {state.routing})"
    elif not command.accepted and command.rep_id in state.declined_by:
        return LeadTransition(state=state)  # declined already (this answer again): nothing more to say
    elif a is not None and a.route_id == command.route_id:
        why = f"the offer is to {a.rep_id}, not {command.rep_id}"
    else:
        why = f"the offer to {command.rep_id} is gone" + _what_happened(state, command.rep_id)
        if state.routing in ("offered", "assigned") and a is not None and a.rep_id != command.rep_id:
            why += f"; the lead is {state.routing} to {a.rep_id} now"
        elif state.routing not in ("offered", "assigned"):
            why += "; the lead is " + _NOW.get(state.routing, state.routing) + " now"
    detail = {"rep_id": command.rep_id, "answer": answer, "route_id": command.route_id, "answered_at": command.at,
              "why": why}
    if any(e.kind == "offer_answer_rejected" and {k: e.detail.get(k) for k in detail} == detail
           for e in state.timeline):
        return LeadTransition(state=state)  # recorded already (a replay)
    noted = note(state, policy, now, "offer_answer_rejected", **detail)
    return LeadTransition(state=noted, outgoing=(event(noted, "lead.offer_answer_rejected", now, detail),))


_NOW = {"routing": "being routed again", "queued": "waiting in its team's queue", "released": "released"}


def _what_happened(state: LeadState, rep_id: str) -> str:
    """``: <why the offer left rep_id>``, from the newest timeline entry that took it from them."""
    for entry in reversed(state.timeline):
        took = entry.kind in ("declined", "offer_expired", "reassigned", "escalated")
        if took and entry.detail.get("from_rep") == rep_id:
            return f": {entry.detail.get('reason') or entry.kind} (at {entry.at.isoformat()})"
    return ""


def offer_due(state: LeadState, command: SlaDue, now: datetime, policy: LeadPolicy) -> LeadTransition:
    a = state.assignment
    if (state.routing != "offered" or a is None or command.cycle != state.cycle
            or state.offer_expires_at is None or state.offer_expires_at > now):
        return LeadTransition(state=state)  # answered, moved on, or not due yet
    lapsed = replace(state, declined_by=tuple(dict.fromkeys(state.declined_by + (a.rep_id,))))
    told = notify_rep(lapsed, "lead.reassigned", OFFER_STEP, now, reason="offer_expired")
    moved, outgoing = reroute(lapsed, now, policy, note_kind="offer_expired",
                              reason=f"offer to {a.rep_id} not accepted in time")
    return LeadTransition(state=moved, outgoing=tuple(told + outgoing))


def overflow_at(state: LeadState, command: LeadQueued, policy: LeadPolicy) -> LeadState:
    """Plan the move to the overflow team when the lead starts waiting in a queue that has one."""
    after = policy.overflow_after.get(command.team_id)
    target = policy.overflow_teams.get(command.team_id)
    if after is None or target is None or target == command.team_id:
        return state
    return replace(state, overflow_at=command.queued_at + timedelta(seconds=after))


def overflow_due(state: LeadState, command: SlaDue, now: datetime, policy: LeadPolicy) -> LeadTransition:
    if (state.routing != "queued" or command.cycle != state.cycle
            or state.overflow_at is None or state.overflow_at > now):
        return LeadTransition(state=state)  # assigned meanwhile, moved on, or not due yet
    source = state.team_id
    target = policy.overflow_teams.get(source, source)
    withdraw = Outgoing(channel="team.commands", key=source, value=WithdrawLead(
        team_id=source, lead_id=state.lead_id, route_id=state.route_id, reason="overflow", at=now))
    waited = (now - state.overflow_at).total_seconds() + policy.overflow_after.get(source, 0.0)
    moved, outgoing = reroute(state, now, policy, note_kind="overflowed", team_id=target,
                              reason=f"waited {waited:.0f} s in {source}'s queue; overflow to {target}",
                              detail={"from_team": source})
    return LeadTransition(state=moved, outgoing=(withdraw, *outgoing))

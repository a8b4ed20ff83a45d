"""The lead hears how its webhooks went: delivered, failing (retries under way), or dead-lettered.

An assignment whose ``lead.assigned`` webhook was dead-lettered (``410 Gone``, a 4xx, or the
whole Standard Webhooks retry schedule failed) was never seen by its rep: the lead is taken
back and routed again in its team, never back to a rep who already had it in this cycle. An
open offer whose ``lead.offered`` webhook was dead-lettered is withdrawn the same way, at once,
rather than held for the whole offer timeout by a rep who cannot know of it.

The rep is set ``offline`` in their team first (``SetPresence``, on ``team.commands`` before the
lead's new ``RouteLead``, so the team applies it first): a rep whose endpoint is gone or has
failed for the whole schedule would otherwise be offered every next lead, each one lost to
the same dead letter before it is routed again. The rep, or their manager, sets them
``available`` again (``POST /v1/reps/{rep_id}/presence``) once the endpoint works.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from rules.commands import LeadAssigned, Outgoing, RecordDelivery, ReleaseLead, SetPresence
from rules.lead_state import LeadPolicy, LeadState, LeadTransition, event, note, route_command

__all__ = ["record_delivery", "unnotified"]


def record_delivery(state: LeadState, command: RecordDelivery, now: datetime, policy: LeadPolicy) -> LeadTransition:
    if command.delivered:
        kind = "notified"
    elif command.dead_lettered:
        kind = "notification_dead_lettered"
    else:
        kind = "notification_failed"
    if any(e.kind == kind and e.detail.get("webhook_id") == command.webhook_id for e in state.timeline):
        return LeadTransition(state=state)
    updated, extra = state, {}
    if command.delivered and state.notified_at is None and _tells_the_rep(state, command):
        # The cycle's rep told of the lead, once: capture -> webhook delivered (the notify-latency
        # sample), and the end of the system's part of speed-to-lead. Reminders, notices to a
        # previous rep or to the manager, and a re-touch of the same person are not this.
        updated = replace(updated, notified_at=command.at)
        extra = {"notify_seconds": (command.at - state.captured_at).total_seconds()}
    detail = {"webhook_id": command.webhook_id, "event_type": command.event_type, "rep_id": command.rep_id,
              "attempts": command.attempts, "status": command.status, "error": command.error}
    updated = note(updated, policy, command.at, kind, **detail)
    outgoing = [event(updated, f"lead.{kind}", command.at, {**detail, **extra})]
    if command.dead_lettered:
        updated, moved = _reassign_unreachable(updated, command, now, policy)
        outgoing += moved
    return LeadTransition(state=updated, outgoing=tuple(outgoing))


def _tells_the_rep(state: LeadState, command: RecordDelivery) -> bool:
    """``command`` reports the webhook that gave the current rep the lead (or its offer)."""
    a = state.assignment
    return (a is not None and command.webhook_id == a.webhook_id
            and command.event_type in ("lead.assigned", "lead.offered"))


def _reassign_unreachable(state: LeadState, command: RecordDelivery, now: datetime,
                          policy: LeadPolicy) -> tuple[LeadState, list[Outgoing]]:
    """Take the lead (or the offer) from a rep it never reached, and route it again."""
    a = state.assignment
    # Only the current assignment's or open offer's own webhook counts: a late report about an
    # older assignment, a reminder, a replay after the lead already moved, or the offer's
    # webhook after the rep accepted it (they saw it) changes nothing.
    current = {"assigned": "lead.assigned", "offered": "lead.offered"}.get(state.routing)
    if a is None or current is None or command.event_type != current or a.webhook_id != command.webhook_id:
        return state, []
    offered = state.routing == "offered"
    previous = tuple(dict.fromkeys((state.sla.previous_reps if state.sla else ()) + (a.rep_id,)))
    seq = state.route_seq + 1
    moved = replace(state, routing="routing", route_seq=seq, route_id=f"{state.lead_id}:{state.cycle}:{seq}",
                    assignment=None, offer_expires_at=None,
                    sla=replace(state.sla, previous_reps=previous) if state.sla else None)
    offer = {"offer_withdrawn": True} if offered else {}
    moved = note(moved, policy, now, "reassigned", from_rep=a.rep_id, team_id=moved.team_id,
                 reason="unreachable", **offer)
    excluded = tuple(dict.fromkeys(previous + state.declined_by))
    outgoing = [
        Outgoing(channel="team.commands", key=a.team_id, value=ReleaseLead(
            team_id=a.team_id, lead_id=state.lead_id, route_id=a.route_id, rep_id=a.rep_id,
            reason=f"{current} webhook dead-lettered: rep unreachable", at=now, returned=offered)),
        Outgoing(channel="team.commands", key=a.team_id, value=SetPresence(
            team_id=a.team_id, rep_id=a.rep_id, status="offline", at=now)),
        event(moved, "lead.reassigned", now, {"from_rep": a.rep_id, "team_id": moved.team_id,
                                              "reason": "unreachable", "excluded": list(excluded),
                                              "webhook_error": command.error, "rep_set_offline": True,
                                              **offer}),
        route_command(moved, excluded=excluded),
    ]
    return moved, outgoing


def unnotified(state: LeadState, command: LeadAssigned, now: datetime,
               policy: LeadPolicy) -> tuple[LeadState, tuple[Outgoing, ...]]:
    """A rep without a webhook gets the lead with no push: the timeline says so, and why.

    The assignment (or offer) stands: the rep sees the lead in their tools or through
    ``GET /v1/leads``, and the SLA ladder acts if nobody does.
    """
    if command.webhook_url and command.webhook_secret:
        return state, ()
    kind = "lead.offered" if state.routing == "offered" else "lead.assigned"
    why = (f"rep {command.rep_id} has no webhook_url" if not command.webhook_url
           else f"rep {command.rep_id} has no webhook secret")
    detail = {"rep_id": command.rep_id, "event_type": kind, "why": why}
    noted = note(state, policy, now, "not_notified", **detail)
    return noted, (event(noted, "lead.not_notified", now, {**detail, "team_id": command.team_id}),)

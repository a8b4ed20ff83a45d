"""The lead's SLA: plan the deadlines when a cycle starts, act once per due step, stop at first contact.

Pure: the timer index (in ``streams/``) only says "step N of cycle C may be due"; the lead
re-checks here and acts at most once per (lead, cycle, step):

* ``breach``: the first-contact deadline passed; recorded and published.
* ``remind``: a ``lead.reminder`` webhook to the rep who holds the lead. While nobody does (it
  waits in a queue) the step is *deferred*, not done: it fires as soon as a rep holds the lead.
* ``reassign``: the rep loses the lead (``lead.reassigned`` to them); it is routed again in the
  same team, never back to a rep who already had it in this cycle. Nobody holds it: skipped.
* ``alert_manager``: a ``lead.escalated`` webhook to the team's manager.
* ``release_to_pool``: the rep loses the lead, or the team's queue does (``WithdrawLead``); it
  goes to the team's overflow team (or back to the team's queue) excluding everyone who had it.

Every step says what it really did: the timeline's ``sla_escalated`` entry and ``lead.escalated``
carry ``outcome`` (``sent``, ``not_sent``, ``moved``, ``skipped``) and, when it did nothing, ``why``.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from rules.capture import attribute
from rules.commands import LeadQueued, Notify, Outgoing, RecordActivity, SlaDue, WithdrawLead
from rules.lead_context import lead_context
from rules.lead_state import (
    HELD,
    OFFER_STEP,
    OPEN,
    OVERFLOW_STEP,
    Assignment,
    LeadPolicy,
    LeadState,
    LeadTransition,
    SlaTimer,
    SlaTrack,
    event,
    holder_problem,
    note,
    reroute,
    webhook_id_for,
)
from sla.ladder import next_due, plan_deadlines
from sla.policy import select_policy

__all__ = ["CONTACT_TYPES", "start_sla", "sla_due", "activity_time_problem", "activity_rep_problem", "record_activity",
           "next_timer", "breach_risk", "notify_rep"]

#: Activity types that count as contacting the lead (a note does not).
CONTACT_TYPES = frozenset({"call", "email", "meeting", "sms"})


def start_sla(state: LeadState, started_at: datetime, policy: LeadPolicy) -> LeadState:
    """Plan the cycle's deadlines when the cycle starts (capture or reopen); reassignments keep them."""
    sla_policy = select_policy(policy.sla_policies, team=state.team_id, source=state.lead.source,
                               tier=attribute(state.lead.attributes, "tier"))
    calendar = policy.calendars.get(state.team_id, policy.default_calendar)
    deadlines = plan_deadlines(sla_policy, calendar, started_at)
    track = SlaTrack(policy=sla_policy.name, deadlines=deadlines, started_at=started_at)
    first = deadlines[0].due_at if deadlines else None
    return replace(state, sla=track, sla_deadline=first)


def next_timer(state: LeadState | None) -> SlaTimer | None:
    """The lead's next pending deadline (SLA step, offer expiry or queue overflow), or ``None``."""
    if state is None or state.routing not in OPEN:
        return None
    pending: list[tuple[datetime, int]] = []
    if state.routing == "offered" and state.offer_expires_at is not None:
        pending.append((state.offer_expires_at, OFFER_STEP))
    if state.routing == "queued" and state.overflow_at is not None:
        pending.append((state.overflow_at, OVERFLOW_STEP))
    if state.sla is not None and state.sla.stopped_at is None:
        # A deferred reminder waits (no timer) until a rep holds the lead, then fires at once.
        waiting = () if state.routing in HELD else state.sla.deferred
        due = next_due(state.sla.deadlines, frozenset(state.sla.done + waiting))
        if due is not None:
            pending.append((due.due_at, due.step))
    if not pending:
        return None
    due_at, step = min(pending)
    return SlaTimer(lead_id=state.lead_id, cycle=state.cycle, step=step, due_at=due_at)


def sla_due(state: LeadState, command: SlaDue, now: datetime, policy: LeadPolicy) -> LeadTransition:
    track = state.sla
    if (track is None or command.cycle != state.cycle or command.step in track.done
            or track.stopped_at is not None or state.routing not in OPEN):
        return LeadTransition(state=state)  # stale, already fired, or contacted: nothing to do
    deadline = next((d for d in track.deadlines if d.step == command.step), None)
    if deadline is None or deadline.due_at > now:
        return LeadTransition(state=state)  # not due (a timer ran early): it will come again
    kind = deadline.kind
    if kind == "remind" and state.routing not in HELD:
        return _defer_reminder(state, command.step, now, policy)
    was_deferred = command.step in track.deferred
    track = replace(track, done=track.done + (command.step,),
                    deferred=tuple(s for s in track.deferred if s != command.step))
    state = replace(state, sla=track)
    if kind == "breach":
        state = replace(state, sla=replace(track, breached_at=now))
        state = note(state, policy, now, "sla_breached", step=command.step, sla_policy=track.policy)
        return LeadTransition(state=state, outgoing=(event(state, "lead.sla_breached", now, {
            "step": command.step, "policy": track.policy, "team_id": state.team_id,
            "rep_id": state.assignment.rep_id if state.assignment else None}),))
    from_team = state.team_id
    outgoing: list[Outgoing] = []
    if kind == "remind":
        outgoing, outcome = _remind(state, command.step, now)
        if was_deferred:
            outcome["deferred_s"] = (now - deadline.due_at).total_seconds()  # it waited for a rep
    elif kind in ("reassign", "release_to_pool"):
        state, outgoing, outcome = _take_away(state, kind, command.step, now, policy)
    else:  # alert_manager
        outgoing = _notify_manager(state, command.step, now, policy)
        outcome = ({"outcome": "sent"} if outgoing
                   else {"outcome": "not_sent", "why": f"team {from_team} has no manager webhook"})
    # What the step really did: ``outcome`` is sent / not_sent (a webhook), moved / skipped (the lead).
    state = note(state, policy, now, "sla_escalated", step=command.step, action=kind, **outcome)
    outgoing.insert(0, event(state, "lead.escalated", now, {
        "step": command.step, "action": kind, "policy": track.policy, "team_id": from_team, **outcome}))
    return LeadTransition(state=state, outgoing=tuple(outgoing))


def _defer_reminder(state: LeadState, step: int, now: datetime, policy: LeadPolicy) -> LeadTransition:
    """A reminder due while nobody holds the lead waits for the rep who gets it (``next_timer``)."""
    track = state.sla
    assert track is not None
    if step in track.deferred:
        return LeadTransition(state=state)  # fired again while still waiting: already said
    state = replace(state, sla=replace(track, deferred=track.deferred + (step,)))
    why = (f"nobody holds the lead (it is {state.routing} in {state.team_id}): "
           "the reminder goes to the rep who gets it")
    state = note(state, policy, now, "sla_escalated", step=step, action="remind", outcome="deferred", why=why)
    return LeadTransition(state=state, outgoing=(event(state, "lead.escalation_deferred", now, {
        "step": step, "action": "remind", "policy": track.policy, "team_id": state.team_id, "why": why}),))


def _remind(state: LeadState, step: int, now: datetime) -> tuple[list[Outgoing], dict[str, Any]]:
    """The reminder to the rep who holds the lead (the caller checked that someone does)."""
    a = state.assignment
    assert a is not None
    sent = notify_rep(state, "lead.reminder", step, now)
    outcome: dict[str, Any] = {"outcome": "sent" if sent else "not_sent", "rep_id": a.rep_id}
    if not sent:
        outcome["why"] = f"{a.rep_id} has no webhook URL"
    return sent, outcome


def breach_risk(state: LeadState, command: LeadQueued, policy: LeadPolicy) -> tuple[LeadState, list[Outgoing]]:
    """Warn early, once per cycle, when the queue will likely keep the lead past its deadline.

    The team estimates the wait from its queue depth and recent drain rate; when the lead would
    still be waiting at its first-contact deadline, the manager is alerted now rather than after
    the breach, and ``lead.sla_at_risk`` is published.
    """
    track = state.sla
    if track is None or track.at_risk_at is not None or command.expected_wait_s is None or not track.deadlines:
        return state, []
    deadline = track.deadlines[0].due_at
    if command.queued_at >= deadline or track.breached_at is not None:
        return state, []  # too late to warn: the deadline passed, the breach and the ladder cover it
    expected = command.queued_at + timedelta(seconds=command.expected_wait_s)
    if expected <= deadline:
        return state, []
    now = command.queued_at
    state = replace(state, sla=replace(track, at_risk_at=now))
    state = note(state, policy, now, "sla_at_risk", expected_wait_s=round(command.expected_wait_s, 1),
                 depth=command.depth)
    outgoing = [event(state, "lead.sla_at_risk", now, {
        "team_id": command.team_id, "depth": command.depth, "expected_wait_s": command.expected_wait_s,
        "deadline": deadline, "expected_assignment": expected})]
    outgoing += _notify_manager(state, 0, now, policy, reason="at_risk")
    return state, outgoing


def _payload(state: LeadState, kind: str, now: datetime, assignment: Assignment | None,
             extra: dict[str, Any]) -> dict[str, Any]:
    """The body of an SLA webhook: the same lead context as ``lead.assigned`` (``lead_context``), plus ``extra``."""
    return {"type": kind, "timestamp": now, "data": {**lead_context(state, assignment), **extra}}


def notify_rep(state: LeadState, kind: str, step: int, now: datetime, reason: str | None = None) -> list[Outgoing]:
    """A webhook of ``kind`` to the rep who holds the lead (none when nobody does).

    ``lead.reassigned`` always says why (``reason``: ``reassign``, ``release_to_pool``,
    ``offer_expired``...).
    """
    a = state.assignment
    if state.routing not in HELD or a is None or not a.webhook_url or not a.webhook_secret:
        return []
    if kind == "lead.reassigned" and reason is None:
        raise ValueError("a lead.reassigned webhook needs a reason")
    extra: dict[str, Any] = {"step": step}
    if reason is not None:
        extra["reason"] = reason
    notify = Notify(webhook_id=webhook_id_for(a.route_id, f"{kind}.{step}"), event_type=kind,
                    lead_id=state.lead_id, rep_id=a.rep_id, url=a.webhook_url, secret=a.webhook_secret,
                    payload=_payload(state, kind, now, a, extra), created_at=now)
    return [Outgoing(channel="notifications", key=state.lead_id, value=notify)]


def _notify_manager(state: LeadState, step: int, now: datetime, policy: LeadPolicy,
                    reason: str = "escalation") -> list[Outgoing]:
    manager = policy.managers.get(state.team_id)
    if manager is None:
        return []
    held = state.assignment if state.assignment is not None and state.routing in HELD else None
    holder = held.rep_id if held is not None and state.routing == "assigned" else None
    notify = Notify(webhook_id=webhook_id_for(f"{state.lead_id}:{state.cycle}", f"lead.escalated.{step}.{reason}"),
                    event_type="lead.escalated", lead_id=state.lead_id, rep_id=None, url=manager.url,
                    secret=manager.secret, payload=_payload(state, "lead.escalated", now, held, {
                        "step": step, "reason": reason, "rep_id": holder, "routing": state.routing}),
                    created_at=now)
    return [Outgoing(channel="notifications", key=state.lead_id, value=notify)]


def _take_away(state: LeadState, kind: str, step: int, now: datetime,
               policy: LeadPolicy) -> tuple[LeadState, list[Outgoing], dict[str, Any]]:
    """Take the lead from its rep (or out of its team's queue) and route it again, excluding
    everyone who had it: ``reassign`` in the same team, ``release_to_pool`` in the overflow team."""
    target = policy.overflow_teams.get(state.team_id, state.team_id) if kind == "release_to_pool" else state.team_id
    a = state.assignment if state.routing in HELD else None
    if a is not None:
        told = notify_rep(state, "lead.reassigned", step, now, reason=kind)
        moved, outgoing = reroute(state, now, policy, reason=kind, team_id=target,
                                  note_kind="reassigned" if kind == "reassign" else "released_to_pool")
        return moved, told + outgoing, {"outcome": "moved", "from_rep": a.rep_id, "to_team": target}
    # Nobody holds it: it waits in the team's queue (or is on its way there).
    if kind == "reassign":
        where = "waits in" if state.routing == "queued" else "is on its way to"
        return state, [], {"outcome": "skipped", "why": (
            f"nobody holds the lead: it {where} {state.team_id}'s queue for the next eligible rep")}
    if target == state.team_id:
        return state, [], {"outcome": "skipped", "why": (
            f"team {state.team_id} has no overflow team: the lead stays in its queue")}
    # Out of the old team's queue first (its count and entries stay right; an entry it cannot
    # find yet is remembered as withdrawn and never assigned), then routed in the overflow team.
    source = state.team_id
    withdraw = Outgoing(channel="team.commands", key=source, value=WithdrawLead(
        team_id=source, lead_id=state.lead_id, route_id=state.route_id, reason=kind, at=now))
    moved, outgoing = reroute(state, now, policy, note_kind="released_to_pool", reason=kind, team_id=target,
                              detail={"from_team": source})
    return moved, [withdraw, *outgoing], {"outcome": "moved", "from_team": source, "to_team": target}


def activity_time_problem(state: LeadState, at: datetime) -> str | None:
    """Why an activity at ``at`` cannot belong to the lead's current cycle (``None``: it can).

    Work on a lead happens after it was captured: an earlier time is a mistake (or another
    cycle's), and as a first contact it would make speed-to-lead negative.
    """
    if at < state.captured_at:
        return f"is before the lead was captured ({state.captured_at.isoformat()}, cycle {state.cycle})"
    return None


def activity_rep_problem(state: LeadState, rep_id: str | None) -> str | None:
    """Why ``rep_id`` cannot report an activity on this lead now (``None``: they can).

    Exactly as qualification answers: a named rep must hold the lead (offered or assigned);
    an activity without a rep (synced from the CRM, logged by a manager) is not tied to a holder.
    """
    return holder_problem(state, rep_id)


def record_activity(state: LeadState, command: RecordActivity, now: datetime, policy: LeadPolicy) -> LeadTransition:
    if command.activity_id in state.recent_activities:
        return LeadTransition(state=state)
    problem = activity_rep_problem(state, command.rep_id)
    at_problem = activity_time_problem(state, command.at)
    if at_problem is not None:
        problem = f"at {at_problem}"
    if problem is not None:
        # The API refuses these up front; the lead checks again (it may have moved on since).
        return LeadTransition(state=state, outgoing=(event(state, "lead.activity_rejected", now, {
            "why": problem, "type": command.type, "rep_id": command.rep_id, "team_id": state.team_id}),))
    updated = replace(state, recent_activities=(state.recent_activities + (command.activity_id,))[-32:])
    detail: dict[str, Any] = {"type": command.type, "rep_id": command.rep_id, "outcome": command.outcome}
    outgoing: list[Outgoing] = []
    contact = command.type in CONTACT_TYPES and state.contacted_at is None
    first_contact = contact and state.routing in OPEN
    if contact and not first_contact:
        # A closed lead (disqualified, released, converted): the call is history, not a first
        # contact. Its speed-to-lead and SLA were settled when it closed.
        detail["counted_as_contact"] = False
        detail["why"] = f"the lead is closed ({state.status})"
    if first_contact:
        updated = replace(updated, contacted_at=command.at)
        if updated.sla is not None and updated.sla.stopped_at is None:
            updated = replace(updated, sla=replace(updated.sla, stopped_at=command.at))
        # Speed-to-lead, from the cycle's capture (when its SLA clock started), split into the
        # system's part (capture -> rep notified) and the rep's part.
        captured = state.captured_at
        notified = state.notified_at
        detail["system_delay_s"] = (notified - captured).total_seconds() if notified else None
        detail["rep_delay_s"] = (command.at - notified).total_seconds() if notified else None
        detail["speed_to_lead_s"] = (command.at - captured).total_seconds()
        # Judged by when the contact happened, not by whether the breach timer has fired yet.
        detail["within_sla"] = state.sla_deadline is None or command.at <= state.sla_deadline
        # A breach counted the lead as missed already: its late contact settles nothing more.
        detail["sla_breached"] = state.sla is not None and state.sla.breached_at is not None
        detail["team_id"] = state.team_id
    updated = note(updated, policy, command.at, "contacted" if first_contact else "activity", **detail)
    outgoing.append(event(updated, "lead.contacted" if first_contact else "lead.activity", command.at, detail))
    return LeadTransition(state=updated, outgoing=tuple(outgoing))

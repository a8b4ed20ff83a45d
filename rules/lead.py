"""The lead state machine: capture and merge, routing handshake, notification, disposition.

``apply`` is pure: ``(LeadState | None, command, now, policy) -> LeadTransition``. Every
command carries the ids (``capture_id``, ``route_id``, ``webhook_id``) that make a replay
after a crash harmless: an assignment the lead no longer wants is handed back to the team.
SLA steps and contact activities live in ``rules.lead_sla``.
"""
from __future__ import annotations

import unicodedata
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from rules.capture import CapturedLead, Touch, attribute, attribute_key, content_digest
from rules.enrichment import enrich
from rules.commands import (
    AnswerOffer,
    CaptureLead,
    DispositionLead,
    LeadAssigned,
    LeadCommand,
    LeadQueued,
    Notify,
    Outgoing,
    RecordActivity,
    RecordDelivery,
    ReleaseLead,
    SlaDue,
    WithdrawLead,
)
from rules.lead_delivery import record_delivery, unnotified
from rules.lead_context import lead_context
from rules.lead_crm import CRM_COMMANDS, after_activity, apply_crm, on_capture, rescore
from rules.lead_sla import breach_risk, next_timer, record_activity, sla_due, start_sla
from rules.lead_offer import answer_offer, offer_due, overflow_at, overflow_due
from rules.lead_state import (
    HELD,
    OFFER_STEP,
    OPEN,
    OVERFLOW_STEP,
    Assignment,
    LeadPolicy,
    LeadState,
    LeadTransition,
    RoutingStatus,
    SlaTimer,
    TimelineEntry,
    can_disposition,
    decision_digest,
    event,
    give_back,
    keep,
    note,
    route_command,
    routing_latency,
    webhook_id_for,
    why_excluded,
)
from rules.routing import facts_of, select_team
from rules.team_selection import tier_priority

__all__ = [
    "MAX_LEAD_ATTRIBUTES",
    "RoutingStatus",
    "OPEN",
    "Assignment",
    "TimelineEntry",
    "LeadState",
    "LeadPolicy",
    "LeadTransition",
    "SlaTimer",
    "apply",
    "next_timer",
    "webhook_id_for",
    "can_disposition",
]


#: The attributes a lead keeps across all its captures (one capture brings at most 50). Without a
#: bound, one person captured again and again with new attributes grew a lead past Kafka's 1 MB
#: record limit (20 captures of 50 new attributes: 1,019,715 bytes): the table then refused to
#: store it and its webhooks and opportunity were left out (session 17). 100 attributes of at most
#: 100 + 200 characters stay far below that.
MAX_LEAD_ATTRIBUTES = 100


def apply(state: LeadState | None, command: LeadCommand, now: datetime, policy: LeadPolicy) -> LeadTransition:
    """Apply one command to a lead."""
    if isinstance(command, CaptureLead):
        return _capture(state, command, now, policy)
    if state is None:
        # Commands about a lead we never captured (a stray replay): nothing to change, but an
        # assignment must still be handed back or the rep's capacity would leak.
        if isinstance(command, LeadAssigned):
            return LeadTransition(state=None, outgoing=(give_back(command, "unknown lead", now),))
        return LeadTransition(state=None)
    if isinstance(command, LeadAssigned):
        return _assigned(state, command, now, policy)
    if isinstance(command, LeadQueued):
        return _queued(state, command, now, policy)
    if isinstance(command, RecordDelivery):
        return record_delivery(state, command, now, policy)
    if isinstance(command, SlaDue):
        if command.step == OFFER_STEP:
            return offer_due(state, command, now, policy)
        if command.step == OVERFLOW_STEP:
            return overflow_due(state, command, now, policy)
        return sla_due(state, command, now, policy)
    if isinstance(command, RecordActivity):
        return after_activity(state, record_activity(state, command, now, policy), policy)
    if isinstance(command, CRM_COMMANDS):  # qualification, conversion, CRM outcomes: rules.lead_crm
        return apply_crm(state, command, now, policy)
    if isinstance(command, AnswerOffer):
        return answer_offer(state, command, now, policy)
    return _disposition(state, command, now, policy)


def _touch(command: CaptureLead) -> Touch:
    lead = command.lead
    return Touch(capture_id=command.capture_id, source=lead.source, channel=lead.channel,
                 campaign=lead.campaign, at=command.captured_at)


def _capture(state: LeadState | None, command: CaptureLead, now: datetime, policy: LeadPolicy) -> LeadTransition:
    touch = _touch(command)
    if state is not None and command.capture_id in state.recent_captures:
        # Replay of a capture already applied: only re-ask for routing, in case that send was lost.
        return LeadTransition(state=state, outgoing=(route_command(state),) if state.routing == "routing" else ())
    digest = content_digest(command.lead)
    if state is not None and _as_last_touched(state) and _resubmitted(state, digest, command.captured_at, policy):
        return LeadTransition(state=_resubmission(state, command, now, policy))
    spelling = _other_spelling(state, command.lead)
    if state is not None and (state.routing in OPEN or _in_a_deal(state)):
        merged_lead = _merge(state.lead, command.lead)
        merged = replace(
            state,
            lead=merged_lead,
            enrichment=enrich(merged_lead, command.findings, state.enrichment),
            account=command.account or state.account,
            last_touch=touch,
            last_capture_digest=digest,
            touches=state.touches + 1,
            recent_captures=(state.recent_captures + (command.capture_id,))[-policy.recent_capture_limit:],
        )
        merged = note(merged, policy, now, "touched", source=touch.source, channel=touch.channel, **spelling)
        published = event(merged, "lead.touched", now, {"source": touch.source, "channel": touch.channel,
                                                      "touches": merged.touches, **spelling})
        merged, rescored = rescore(merged, now, policy, publish=False)
        told = (_tell_owner(merged, command, now, spelling) if state.routing in OPEN
                else _tell_opportunity_owner(merged, command, now, policy, spelling))
        return LeadTransition(state=merged, outgoing=(published, *rescored) + told)
    routed = command.lead if state is None else _merge(state.lead, command.lead)
    tier = attribute(routed.attributes, "tier")
    earlier = None if state is None else state.enrichment
    team_id, why = select_team(facts=facts_of(routed, enrich(routed, command.findings, earlier), tier=tier), rules=policy.team_rules,
                               default_team=policy.default_team, account=command.account)
    cycle = 1 if state is None else state.cycle + 1
    route_id = f"{command.lead_id}:{cycle}:1"
    fresh = LeadState(
        lead_id=command.lead_id, cycle=cycle, status="new", routing="routing",
        lead=command.lead if state is None else _merge(state.lead, command.lead),
        team_id=team_id, route_id=route_id, route_seq=1, captured_at=command.captured_at,
        first_touch=touch if state is None else state.first_touch, last_touch=touch, last_capture_digest=digest,
        touches=1 if state is None else state.touches + 1,
        recent_captures=((() if state is None else state.recent_captures)
                         + (command.capture_id,))[-policy.recent_capture_limit:],
        timeline=() if state is None else state.timeline,
    )
    account = command.account
    fresh = replace(fresh, account=account, route_priority=tier_priority(
        policy.tier_priorities, account.tier if account is not None else None, tier))
    kind = "captured" if state is None else "reopened"
    fresh = note(fresh, policy, now, kind, source=touch.source, channel=touch.channel, team_id=team_id, why=why,
                 **spelling)
    # The SLA clock runs from the start of the cycle: a lead waiting in a queue rots too.
    fresh = start_sla(replace(fresh, enrichment=enrich(fresh.lead, command.findings, earlier)), command.captured_at, policy)
    published = event(fresh, f"lead.{kind}", now, {"source": touch.source, "channel": touch.channel,
                                                "team_id": team_id, "why_team": why, "lead": asdict(fresh.lead),
                                                "enrichment": _enrichment(fresh), **spelling})
    return on_capture(fresh, published, now, policy)  # scored, then routed or nurtured


def _in_a_deal(state: LeadState) -> bool:
    """Converted, with its opportunity still open: a capture is a touch on the deal, not a new cycle.

    A new cycle would hand a person in an open deal back to an SDR, and drop the opportunity from
    the lead, so the CRM's later won or lost would be refused. The AE hears of the touch instead.
    """
    opportunity = state.opportunity
    return state.status == "converted" and opportunity is not None and opportunity.status == "open"


def _as_last_touched(state: LeadState) -> bool:
    """Whether the lead is still where its last counted touch left it, so that a repeat of the touch
    is a resubmission: open, or nurtured by the MQL gate when that touch was captured.

    A nurtured lead is ``released``, and a capture of a released lead reopens it: a new cycle,
    one more touch and its points, so a double post of a lead just under the threshold would cross
    the gate and be routed. Not after a decision taken since the touch: a rep's disposition
    (which forgets the touch's digest, a rep's ``nurture`` included), a conversion, a won or lost
    deal. The same content then is the person asking again, and reopens the lead.
    """
    if _in_a_deal(state):  # a touch since the conversion, not the one the rep converted
        assert state.opportunity is not None
        return state.last_touch.at >= state.opportunity.created_at
    return state.routing in OPEN or state.status == "nurture"


def _resubmitted(state: LeadState, digest: str, captured_at: datetime, policy: LeadPolicy) -> bool:
    """Whether a capture repeats the lead's last counted touch: the same content, soon after it."""
    if state.last_capture_digest != digest:
        return False
    return abs((captured_at - state.last_touch.at).total_seconds()) <= policy.resubmission_window_s


def _resubmission(state: LeadState, command: CaptureLead, now: datetime, policy: LeadPolicy) -> LeadState:
    """The same form sent again (a double click, a retry without an idempotency key): no intent.

    It is not a touch: not counted, not scored, nobody told, no event. It shows on the timeline,
    where one entry counts a run of them, so a flood of resubmissions cannot push out the rest.
    """
    recent = (state.recent_captures + (command.capture_id,))[-policy.recent_capture_limit:]
    last = state.timeline[-1] if state.timeline else None
    if last is not None and last.kind == "resubmitted" and last.detail.get("of") == state.last_touch.capture_id:
        entry = replace(last, detail={**last.detail, "count": last.detail.get("count", 1) + 1,
                                      "last_captured_at": command.captured_at})
        return replace(state, recent_captures=recent, timeline=state.timeline[:-1] + (entry,))
    lead = command.lead
    return note(replace(state, recent_captures=recent), policy, now, "resubmitted", source=lead.source,
                channel=lead.channel, of=state.last_touch.capture_id, count=1, last_captured_at=command.captured_at)


def _tell_opportunity_owner(state: LeadState, command: CaptureLead, now: datetime, policy: LeadPolicy,
                            spelling: dict[str, str]) -> tuple[Outgoing, ...]:
    """The AE of an open deal hears that the person came back (the endpoint that got ``opportunity.created``)."""
    opportunity = state.opportunity
    endpoint = policy.account_executives.get(state.team_id or "") or policy.account_executives.get("*")
    if opportunity is None or endpoint is None:
        return ()
    body = _touched_body(state, now, spelling, {
        "opportunity": {"opportunity_id": opportunity.opportunity_id, "crm_id": opportunity.crm_id,
                        "stage": opportunity.stage, "rep_id": opportunity.rep_id},
        "team_id": state.team_id})
    notify = Notify(webhook_id=webhook_id_for(opportunity.opportunity_id, f"lead.touched|{command.capture_id}"),
                    event_type="lead.touched", lead_id=state.lead_id, rep_id=None, url=endpoint.url,
                    secret=endpoint.secret, payload=body, created_at=now)
    return (Outgoing(channel="notifications", key=state.lead_id, value=notify),)


def _touched_body(state: LeadState, now: datetime, spelling: dict[str, str], who: dict[str, Any]) -> dict[str, Any]:
    """A ``lead.touched`` webhook's body: the lead, its last touch (and ``spelling``), and ``who`` holds it."""
    touch = state.last_touch
    return {"type": "lead.touched", "timestamp": now, "data": {
        "lead_id": state.lead_id, "cycle": state.cycle, "lead": asdict(state.lead), **who,
        "touch": {"source": touch.source, "channel": touch.channel, "campaign": touch.campaign, "at": touch.at,
                  **spelling},
        "touches": state.touches}}


def _enrichment(state: LeadState) -> dict[str, Any] | None:
    return asdict(state.enrichment) if state.enrichment is not None else None


def _tell_owner(state: LeadState, command: CaptureLead, now: datetime,
                spelling: dict[str, str]) -> tuple[Outgoing, ...]:
    """The rep who holds the lead hears that the person came back (a new touch, no new assignment).

    ``spelling``: what the touch said that the lead did not take (another spelling of the e-mail,
    another person's name), shown on the touch so the rep can tell a second person on the line.
    """
    a = state.assignment
    if state.routing != "assigned" or a is None or not a.webhook_url or not a.webhook_secret:
        return ()
    body = _touched_body(state, now, spelling, {"rep": {"rep_id": a.rep_id, "name": a.rep_name}, "team_id": a.team_id,
                                                "sla_deadline": state.sla_deadline})
    notify = Notify(webhook_id=webhook_id_for(a.route_id, f"lead.touched|{command.capture_id}"),
                    event_type="lead.touched", lead_id=state.lead_id, rep_id=a.rep_id, url=a.webhook_url,
                    secret=a.webhook_secret, payload=body, created_at=now)
    return (Outgoing(channel="notifications", key=state.lead_id, value=notify),)


def _merge(old: CapturedLead, new: CapturedLead) -> CapturedLead:
    # Newer non-empty values win; identity fields never get erased by a sparser touch.
    changes = {name: value for name, value in asdict(new).items() if value not in (None, "", {}, ())}
    if _names_differ(old, new):
        # Another name behind the same key (a shared phone or role mailbox): perhaps another person,
        # so the lead keeps the name its rep knows; the other one is on the touch (``_other_spelling``).
        # The same full name split otherwise by another channel keeps the lead's split too.
        changes.pop("first_name", None)
        changes.pop("last_name", None)
    changes["attributes"] = merge_attributes(old.attributes, new.attributes)
    if new.phone:
        # A number and its extension travel together: a newer number without one drops the old one.
        changes["phone_extension"] = new.phone_extension
    if old.email:
        # The same lead_id means the same person; a later spelling (``+tag``, googlemail, dots) does
        # not replace the address the rep and the CRM already have. It stays on the touch's timeline.
        changes["email"] = old.email
    return replace(old, **changes)


def merge_attributes(old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """A lead's attributes after a capture: the capture's values win, and past
    ``MAX_LEAD_ATTRIBUTES`` the ones given longest ago are dropped (the order kept is the order in
    which each attribute was last given).

    A value given under another spelling of a name (``INDUSTRY`` for ``Industry``: the same
    ``attribute_key``) replaces the older spelling's: lookups read the first spelling they meet
    (``rules.capture.attribute``), so keeping both let the oldest value win (review s17-d)."""
    given = {attribute_key(name) for name, value in new.items() if value.strip()}
    merged = {name: value for name, value in old.items() if name not in new and attribute_key(name) not in given}
    merged.update(new)
    if len(merged) <= MAX_LEAD_ATTRIBUTES:
        return merged
    return dict(list(merged.items())[-MAX_LEAD_ATTRIBUTES:])


def _name_key(name: str | None) -> str:
    """A name as compared for sameness: without case, accents or extra spaces (``María`` is ``maria``)."""
    decomposed = unicodedata.normalize("NFKD", name or "")
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().split())


def _names_differ(old: CapturedLead, new: CapturedLead) -> bool:
    """Whether a first or last name both give is spelt differently (without case, accents, spaces)."""
    return any(_name_key(a) and _name_key(b) and _name_key(a) != _name_key(b)
               for a, b in ((old.first_name, new.first_name), (old.last_name, new.last_name)))


def _full_name_key(lead: CapturedLead) -> str:
    return _name_key(f"{lead.first_name or ''} {lead.last_name or ''}")


def _another_name(old: CapturedLead, new: CapturedLead) -> bool:
    """Whether ``new`` names someone else: a first or last name both give, and spell differently.

    A name given where the lead had none fills it in; the same name in other case or without its
    accents is the same name, and so is the same full name split otherwise (an API's ``Ana María``
    / ``García``, a form's full name split into ``Ana`` / ``María García``).
    """
    return _names_differ(old, new) and _full_name_key(old) != _full_name_key(new)


def _other_spelling(state: LeadState | None, new: CapturedLead) -> dict[str, str]:
    """What a capture said that the lead keeps otherwise, for its touch's timeline entry and event.

    ``email_as_captured`` when it spells the kept e-mail differently; ``name_as_captured`` when it
    gives another name than the lead's (which the lead keeps); ``{}`` when neither.
    """
    if state is None:
        return {}
    other: dict[str, str] = {}
    if state.lead.email and new.email and new.email != state.lead.email:
        other["email_as_captured"] = new.email
    if _another_name(state.lead, new):
        other["name_as_captured"] = " ".join(n for n in (new.first_name, new.last_name) if n)
    return other


def _assigned(state: LeadState, command: LeadAssigned, now: datetime, policy: LeadPolicy) -> LeadTransition:
    current = state.assignment
    if (state.routing in HELD and current is not None and current.route_id == command.route_id
            and current.rep_id == command.rep_id):
        # Replay of the assignment we accepted: re-send the same notification (same webhook-id,
        # so the rep's receiver dedups it) in case the first send was lost in a crash.
        return LeadTransition(state=state, outgoing=_notifications(state, command))
    held = _held_route(state, command.route_id)
    if held is not None:
        # The team decided this route again and chose another rep (a crash lost its first
        # decision): the lead stays with the rep it told, and the team moves the count to them.
        return LeadTransition(state=state, outgoing=(keep(state, held, now),))
    if state.routing not in ("routing", "queued") or command.route_id != state.route_id:
        return LeadTransition(state=state, outgoing=(give_back(command, "stale assignment", now),))
    offer_timeout = policy.offer_timeouts.get(command.team_id)
    kind = "lead.assigned" if offer_timeout is None else "lead.offered"
    assignment = Assignment(
        team_id=command.team_id, rep_id=command.rep_id, rep_name=command.rep_name,
        route_id=command.route_id, assigned_at=command.assigned_at,
        webhook_id=webhook_id_for(command.route_id, kind), decision=command.decision,
        webhook_url=command.webhook_url, webhook_secret=command.webhook_secret,
    )
    if offer_timeout is not None:
        # The offer handshake: the rep holds the lead until they accept, decline or let it lapse.
        expires = now + timedelta(seconds=offer_timeout)
        offered = replace(state, routing="offered", assignment=assignment, offer_expires_at=expires, overflow_at=None)
        offered = note(offered, policy, now, "offered", rep_id=command.rep_id, team_id=command.team_id,
                       why=command.decision.reason, expires_at=expires)
        published = event(offered, "lead.offered", now, {
            "rep_id": command.rep_id, "team_id": command.team_id, "route_id": command.route_id,
            "decision": asdict(command.decision), "expires_at": expires,
        })
        offered, untold = unnotified(offered, command, now, policy)  # no webhook: the timeline says so
        return LeadTransition(state=offered, outgoing=(published, *untold) + _notifications(offered, command))
    assigned = replace(state, routing="assigned", assignment=assignment, overflow_at=None)
    # Until the lead knew its rep: the team decides at the time its command was sent
    # (``assigned_at``), so that would leave out the time the command waited for the team.
    assigned, latency = routing_latency(assigned, now)
    deadline = assigned.sla_deadline
    assigned = note(assigned, policy, now, "assigned", rep_id=command.rep_id, team_id=command.team_id,
                     why=command.decision.reason, sla_deadline=deadline)
    published = event(assigned, "lead.assigned", now, {
        "rep_id": command.rep_id, "team_id": command.team_id, "route_id": command.route_id,
        "decision": asdict(command.decision), "sla_deadline": deadline, **latency,
    })
    assigned, untold = unnotified(assigned, command, now, policy)  # no webhook: the timeline says so
    return LeadTransition(state=assigned, outgoing=(published, *untold) + _notifications(assigned, command))


def _notifications(state: LeadState, command: LeadAssigned) -> tuple[Outgoing, ...]:
    if not command.webhook_url or not command.webhook_secret or state.assignment is None:
        return ()
    assignment = state.assignment
    kind = "lead.offered" if state.routing == "offered" else "lead.assigned"
    body: dict[str, Any] = {"type": kind, "timestamp": assignment.assigned_at, "data": lead_context(state, assignment)}
    if state.routing == "offered":
        body["data"]["offer"] = {"expires_at": state.offer_expires_at,
                                 "accept": f"/v1/leads/{state.lead_id}/accept",
                                 "decline": f"/v1/leads/{state.lead_id}/decline"}
    notify = Notify(webhook_id=assignment.webhook_id, event_type=kind, lead_id=state.lead_id,
                    rep_id=assignment.rep_id, url=command.webhook_url, secret=command.webhook_secret,
                    payload=body, created_at=assignment.assigned_at)
    return (Outgoing(channel="notifications", key=state.lead_id, value=notify),)


def _held_route(state: LeadState, route_id: str) -> Assignment | None:
    """The lead's assignment when it holds ``route_id`` (offered or assigned), else None."""
    a = state.assignment
    return a if state.routing in HELD and a is not None and a.route_id == route_id else None


def _queued(state: LeadState, command: LeadQueued, now: datetime, policy: LeadPolicy) -> LeadTransition:
    held = _held_route(state, command.route_id)
    if held is not None:
        # The team decided this route again and queued it: the lead is not waiting, it has a rep.
        return LeadTransition(state=state, outgoing=(keep(state, held, now),))
    if command.route_id == state.route_id and state.routing == "queued":
        return LeadTransition(state=state)  # the team saying again that it waits
    if state.routing != "routing" or command.route_id != state.route_id:
        # The lead has left this route (closed, or routed anew) and the team queued it late, as a
        # replay after a crash can: take it out rather than let a rep be assigned it for nothing.
        withdraw = WithdrawLead(team_id=command.team_id, lead_id=state.lead_id, route_id=command.route_id,
                                reason="stale queue entry", at=now)
        return LeadTransition(state=state, outgoing=(Outgoing(channel="team.commands", key=command.team_id,
                                                              value=withdraw),))
    queued = replace(state, routing="queued")
    # The decision travels with the entry (bounded), so GET /v1/leads/{id} says who could not
    # take the lead and why, not only lead.events.
    queued = note(queued, policy, command.queued_at, "queued", team_id=command.team_id, depth=command.depth,
                   expected_wait_s=command.expected_wait_s, why=command.decision.reason,
                   decision=decision_digest(command.decision, policy.timeline_candidates, why_excluded(state)))
    published = event(queued, "lead.queued", command.queued_at, {"team_id": command.team_id, "depth": command.depth,
                                                               "expected_wait_s": command.expected_wait_s,
                                                               "decision": asdict(command.decision)})
    queued, warnings = breach_risk(overflow_at(queued, command, policy), command, policy)
    return LeadTransition(state=queued, outgoing=(published, *warnings))


def _disposition(state: LeadState, command: DispositionLead, now: datetime, policy: LeadPolicy) -> LeadTransition:
    if state.routing not in OPEN:
        return LeadTransition(state=state)
    outgoing: list[Outgoing] = []
    if state.routing in HELD and state.assignment is not None:
        a = state.assignment
        outgoing.append(Outgoing(channel="team.commands", key=a.team_id, value=ReleaseLead(
            team_id=a.team_id, lead_id=state.lead_id, route_id=a.route_id, rep_id=a.rep_id,
            reason=f"disposition: {command.status}", at=now, returned=state.routing == "offered")))
    elif state.routing == "queued":
        # Out of the queue now, rather than assigned later only to be handed back.
        outgoing.append(Outgoing(channel="team.commands", key=state.team_id, value=WithdrawLead(
            team_id=state.team_id, lead_id=state.lead_id, route_id=state.route_id,
            reason=f"disposition: {command.status}", at=now)))
    # A decision after the last touch: the same content again is no longer a resubmission of it.
    closed = replace(state, routing="released", status=command.status, last_capture_digest=None)
    closed = note(closed, policy, now, "dispositioned", status=command.status, reason=command.reason,
                   rep_id=command.rep_id)
    outgoing.insert(0, event(closed, "lead.dispositioned", now, {"status": command.status, "reason": command.reason,
                                                                  "rep_id": command.rep_id}))
    return LeadTransition(state=closed, outgoing=tuple(outgoing))

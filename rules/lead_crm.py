"""Lead transitions for scoring, the MQL gate, qualification, conversion and CRM outcomes (pure).

* At capture the lead is scored (``lead.scored``). With an MQL threshold configured, a lead at
  or over it, or from a hot source, is an MQL (``lead.mql``) and routed; one below it goes to
  nurture (``lead.nurture``) and is not routed. Without a threshold every lead is routed.
* The first contact makes an MQL (or an ungated new lead) ``working`` (``lead.contacted`` says so).
* Qualification answers accumulate per framework (``lead.qualification``); when the SQL
  criteria are met the lead is an SQL (``lead.sql``) and converts at once: its rep's capacity is
  freed, ``opportunity.created`` is published and the opportunity goes to ``crm.outbox`` under a
  deterministic id, so replays upsert the same CRM record.
* The CRM agent reports the upsert (``RecordCrmSync``); the AE then gets a signed
  ``opportunity.created`` webhook with the history.
* CRM events move the opportunity: ``opportunity.stage_changed``, ``opportunity.won`` (the lead
  is ``won``), ``opportunity.lost`` (the lead is ``recycled`` to nurture with the reason, and
  routed again after ``recycle_after_s`` when configured, as a new cycle gated like a capture:
  ``new`` without a threshold). Won and lost feed the outcome board.
* A won or lost for a deal already closed the other way is a correction (the deal was reopened
  and won, or a stage was picked by mistake), taken while the lead is still in that deal's cycle:
  ``won`` → ``recycled`` as any loss (the recycle timer too), ``recycled`` → ``won`` (the pending
  return to routing then finds a won lead and does nothing). The event says ``corrects`` and
  ``from``, and the board moves the deal instead of counting a second one. Once the lead has
  started a new cycle (routed again, or captured again) the old deal is history: an event about
  it is refused, like any event naming an earlier cycle's ``opportunity_id``.
* A stage change of the cycle's closed deal is a reopen (Closed Lost → Negotiation in Salesforce,
  ``closedlost`` → a pipeline stage in HubSpot): the opportunity is open again at that stage and
  the lead back in it (``won`` or ``recycled`` → ``converted``), ``opportunity.reopened`` says so
  (``stage``, ``from`` the close), and the board takes the close off (a ``RecordOutcome`` with
  ``reopened``). A pending return to routing then finds a lead that is not ``recycled`` and does
  nothing; the deal's next won or lost is a close like the first. The same cycle rule applies,
  and a stage change to the very stage the deal closed at reopens nothing. Correcting, reopening
  and re-closing outcomes are numbered by ``Opportunity.corrections`` (``<op>:<kind>:<n>``; the
  first close is ``<op>:<kind>``), so each counts once and a replay is dropped by its id.
* Order: a won, lost or stage change that happened by the CRM's clock (``RecordCrmEvent.crm_at``)
  before the newest move applied (``Opportunity.crm_moved_at``) is stale, and a repeat of the
  close held at that close's own time is a repeat: a redelivery. It changes nothing and is said
  as ``opportunity.event_ignored`` (``stale_crm_event``). Without the CRM's times on both, or at
  the same time otherwise, events apply in arrival order.
* Attribution: an outcome is credited to the source and segment frozen on the opportunity when
  it was made: the lead's source then (its latest touch's, the one the score read the learned
  rate of) and its score's segment. So the board learns with the same keys scoring reads, for
  the cycle that converted; a touch during the open deal moves neither.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from rules.commands import (
    DeferCommand,
    Notify,
    Outgoing,
    RecordCrmEvent,
    RecordCrmSync,
    RecordQualification,
    ReleaseLead,
    ReturnToRouting,
    UpsertOpportunity,
    WithdrawLead,
)
from rules.capture import attribute
from rules.lead_sla import start_sla
from rules.lead_state import (
    HELD,
    LeadPolicy,
    LeadState,
    LeadTransition,
    event,
    holder_problem,
    note,
    route_command,
    webhook_id_for,
)
from rules.lifecycle import QUALIFIABLE, check
from rules.opportunity import Opportunity, Qualification, opportunity_id_for, revenue_counted
from rules.outcomes import CountedOutcome, RecordOutcome, reason_weight
from rules.qualification import check_answers, evaluate, find_framework
from rules.scoring import Score, score_lead
from rules.team_selection import facts_of, select_team, tier_priority

__all__ = [
    "CRM_COMMANDS",
    "OUTCOMES_KEY",
    "score_view",
    "rescore",
    "on_capture",
    "after_activity",
    "apply_crm",
    "can_qualify",
    "qualifier_problem",
    "can_take_crm_event",
    "stale_crm_event",
    "confirms_close",
    "opportunity_payload",
]

CRM_COMMANDS = (RecordQualification, RecordCrmSync, RecordCrmEvent, ReturnToRouting)
#: The one key of the ``outcomes`` topic: one owner folds every outcome into one board.
OUTCOMES_KEY = "board"


def score_view(score: Score | None) -> dict[str, Any] | None:
    if score is None:
        return None
    return {"value": score.value, "tier": score.tier, "fit": score.fit, "intent": score.intent,
            "outcomes": score.outcomes, "segment": score.segment, "reasons": list(score.reasons)}


def rescore(state: LeadState, now: datetime, policy: LeadPolicy, publish: bool = True,
            on_last_entry: bool = False) -> tuple[LeadState, tuple[Outgoing, ...]]:
    """Score the lead again; ``lead.scored`` when the score changed (a touch only updates the state:
    its ``lead.touched`` event already tells downstream, and the next cycle publishes the score).

    ``on_last_entry`` puts the score on the timeline entry just written (``captured``) instead of
    a ``scored`` entry of its own.
    """
    score = score_lead(state.lead, state.enrichment, state.touches, policy.scoring, policy.outcomes)
    if score == state.score:
        return state, ()
    state = replace(state, score=score)
    if on_last_entry and state.timeline:
        last = state.timeline[-1]
        entry = replace(last, detail={**last.detail, "score": score.value, "tier": score.tier})
        state = replace(state, timeline=state.timeline[:-1] + (entry,))
    else:
        state = note(state, policy, now, "scored", score=score.value, tier=score.tier, reasons=list(score.reasons))
    if not publish:
        return state, ()
    return state, (event(state, "lead.scored", now, {**(score_view(score) or {}), "team_id": state.team_id,
                                                     "source": state.lead.source}),)


def on_capture(fresh: LeadState, published: Outgoing, now: datetime, policy: LeadPolicy) -> LeadTransition:
    """A new cycle: score it, then route it (an MQL, or any lead when there is no gate) or nurture it."""
    state, scored = rescore(fresh, now, policy, on_last_entry=True)
    return _route_or_gate(state, (published, *scored), now, policy)


def _route_or_gate(state: LeadState, before: tuple[Outgoing, ...], now: datetime, policy: LeadPolicy,
                   via: str | None = None) -> LeadTransition:
    """Without an MQL threshold the lead is routed as it is (``new``); with one, the gate decides."""
    gate = policy.scoring.mql_threshold
    if gate is None:
        return LeadTransition(state=state, outgoing=(*before, route_command(state)))
    return _gate(state, before, now, policy, gate, via=via)


def _gate(state: LeadState, before: tuple[Outgoing, ...], now: datetime, policy: LeadPolicy,
          gate: int, via: str | None = None) -> LeadTransition:
    score = state.score
    value = score.value if score is not None else 0
    hot = state.lead.source in policy.scoring.hot_sources
    common = {"score": value, "tier": score.tier if score else None, "threshold": gate,
              "source": state.lead.source, "team_id": state.team_id}
    if value >= gate or hot:
        why = f"score {value} >= threshold {gate}" if value >= gate else f"hot source {state.lead.source}"
        mql = replace(state, status="mql")
        mql = note(mql, policy, now, "mql", why=why, **({"via": via} if via else {}))
        return LeadTransition(state=mql, outgoing=(*before, event(mql, "lead.mql", now, {
            **common, "why": why, **({"via": via} if via else {})}), route_command(mql)))
    why = f"score {value} below the MQL threshold {gate}"
    nurtured = replace(state, status="nurture", routing="released", sla=None, sla_deadline=None)
    nurtured = note(nurtured, policy, now, "nurture", why=why)
    return LeadTransition(state=nurtured, outgoing=(*before, event(nurtured, "lead.nurture", now, {
        **common, "why": why, "reasons": list(score.reasons) if score else []})))


def after_activity(before: LeadState, transition: LeadTransition, policy: LeadPolicy) -> LeadTransition:
    """The first contact of an MQL (or an ungated new lead) makes it ``working``."""
    state = transition.state
    if (state is None or before.contacted_at is not None or state.contacted_at is None
            or state.status not in ("new", "mql")):
        return transition
    # No event of its own: the lead.contacted event published with it says the same.
    working = note(replace(state, status="working"), policy, state.contacted_at, "working")
    return LeadTransition(state=working, outgoing=transition.outgoing)


def can_qualify(state: LeadState | None) -> str | None:
    """Why qualification answers cannot be recorded now, or ``None`` when they can."""
    if state is None:
        return "no such lead"
    if state.status not in QUALIFIABLE:
        return f"the lead is {state.status}; answers are taken while it is {', '.join(sorted(QUALIFIABLE))}"
    return None


def qualifier_problem(state: LeadState, rep_id: str | None) -> str | None:
    """Why ``rep_id`` cannot answer qualification for this lead, or ``None`` when they can: the
    rule of every report of a rep's work (``rules.lead_state.holder_problem``)."""
    return holder_problem(state, rep_id)


def can_take_crm_event(state: LeadState | None, kind: str, opportunity_id: str | None = None,
                       stage: str | None = None) -> str | None:
    """Why a CRM event cannot apply now, or ``None`` when it can.

    ``opportunity_id``, when the CRM names it, must be the lead's current opportunity. A won or a
    lost for an opportunity closed the other way is a correction and applies; the same close again
    (won after won) is refused: already counted. A stage change of a closed deal reopens it, unless
    ``stage`` is the one it closed at or the lead has moved on (a rep's disposition since).
    """
    if state is None:
        return "no such lead"
    opportunity = state.opportunity
    if opportunity_id is not None and (opportunity is None or opportunity.opportunity_id != opportunity_id):
        current = f"its current one is {opportunity.opportunity_id}" if opportunity else "it has none now"
        return (f"opportunity {opportunity_id} is not the lead's current opportunity ({current}): an event about "
                "an earlier cycle's deal is not applied to this one")
    if opportunity is None:
        return f"the lead has no opportunity (it is {state.status})"
    if opportunity.status != "open" and kind == "stage_changed":
        if stage is not None and stage == opportunity.stage:
            return f"the opportunity is already {opportunity.status} at stage {stage}"
        problem = check(state.status, "converted")
        return None if problem is None else f"the {opportunity.status} opportunity cannot be reopened: {problem}"
    if opportunity.status == kind:
        return f"the opportunity is already {opportunity.status}"
    if kind == "won":
        return check(state.status, "won")
    if kind == "lost":
        return check(state.status, "recycled")
    return None


def stale_crm_event(state: LeadState | None, crm_at: datetime | None, opportunity_id: str | None = None,
                    kind: str | None = None) -> str | None:
    """Why a won, lost or stage change that happened at ``crm_at`` by the CRM's clock changes
    nothing, or ``None`` when it applies (or is ``can_take_crm_event``'s to judge).

    Only the CRM's own times are compared (``RecordCrmEvent.crm_at`` against the opportunity's
    ``crm_moved_at``, the CRM time of the newest move applied), never an arrival time or a time
    clamped to leadflow's clock: if either is missing, the event applies in arrival order.

    * Stale: it happened before a move already applied. Salesforce retries outbound messages
      "independent of their order in the queue", and HubSpot retries a failed webhook for up to
      three days: applied, it would reopen or reverse a close, or put back an older stage, that
      the CRM never took back.
    * A repeat: the close held (won after won, lost after lost) at that very close's time.
      Salesforce redelivers a failed notification with the record's latest data, so this is
      what a redelivery sent after the close looks like.

    Either way the lead publishes ``opportunity.event_ignored`` and the API answers 200
    ``ignored``: a 2xx, so the CRM does not send it again (a 409 would have Salesforce redeliver
    it for 24 h). Another event at the very same time applies, in arrival order: time cannot
    order it. The close held sent with a later time confirms it (``confirms_close``). An event about another opportunity than the lead's
    current one is ``can_take_crm_event``'s to refuse.
    """
    opportunity = state.opportunity if state is not None else None
    if opportunity is None or (opportunity_id is not None and opportunity_id != opportunity.opportunity_id):
        return None
    moved = opportunity.crm_moved_at
    if crm_at is None or moved is None or crm_at > moved:
        return None
    if crm_at == moved:
        if kind != opportunity.status:
            return None  # a tie: applied in arrival order
        return (f"already {opportunity.status}: the CRM closed {opportunity.status} the opportunity at "
                f"{moved.isoformat()}, the time of this event; nothing changed")
    return (f"stale: it happened at {crm_at.isoformat()}, before the CRM's last move of the opportunity "
            f"(now {opportunity.status}, at stage {opportunity.stage}) at {moved.isoformat()}; nothing changed")


def confirms_close(state: LeadState | None, kind: str, crm_at: datetime | None,
                   opportunity_id: str | None = None) -> bool:
    """The close the deal holds (won after won, lost after lost), sent with a later CRM time than
    the newest move applied: the CRM says the deal was still so then. Taken (202): nothing
    changes but ``crm_moved_at``, so a move older than it, still on its way (a close or a reopen
    retried late), is stale. Without both CRM times it is a repeat leadflow cannot place: 409."""
    opportunity = state.opportunity if state is not None else None
    if opportunity is None or (opportunity_id is not None and opportunity_id != opportunity.opportunity_id):
        return False
    held = opportunity.crm_moved_at
    return kind == opportunity.status and crm_at is not None and held is not None and crm_at > held


def apply_crm(state: LeadState, command: Any, now: datetime, policy: LeadPolicy) -> LeadTransition:
    if isinstance(command, RecordQualification):
        return _qualify(state, command, now, policy)
    if isinstance(command, RecordCrmSync):
        return _synced(state, command, policy)
    if isinstance(command, RecordCrmEvent):
        return _crm_event(state, command, now, policy)
    return _return_to_routing(state, command, now, policy)


def _seen(state: LeadState, command_id: str) -> LeadState:
    return replace(state, recent_activities=(state.recent_activities + (command_id,))[-32:])


def _rejected(state: LeadState, event_kind: str, now: datetime, why: str, **detail: Any) -> LeadTransition:
    return LeadTransition(state=state, outgoing=(event(state, event_kind, now, {"why": why, **detail}),))


def _qualify(state: LeadState, command: RecordQualification, now: datetime, policy: LeadPolicy) -> LeadTransition:
    if command.qualification_id in state.recent_activities:
        return LeadTransition(state=state)  # a replay
    framework = find_framework(policy.frameworks, command.framework)
    problem = can_qualify(state) or qualifier_problem(state, command.rep_id)
    if framework is None:
        problem = f"unknown framework {command.framework!r}"
    elif problem is None and (wrong := check_answers(framework, command.answers)):
        problem = "; ".join(f"{field}: {reason}" for field, reason in wrong)
    if problem is not None or framework is None:
        return _rejected(state, "lead.qualification_rejected", now, problem or "", framework=command.framework)
    previous = state.qualification
    answers = dict(previous.answers) if previous is not None and previous.framework == framework.name else {}
    answers.update(command.answers)
    answers = {k: v for k, v in answers.items() if v is not None}  # null clears an answer
    verdict = evaluate(framework, answers)
    qualification = Qualification(framework=framework.name, answers=answers, met=verdict.met,
                                  missing=verdict.missing, sql=verdict.sql, reason=verdict.reason,
                                  updated_at=command.at, rep_id=command.rep_id)
    updated = _seen(replace(state, qualification=qualification), command.qualification_id)
    updated = note(updated, policy, command.at, "qualification", framework=framework.name, met=list(verdict.met),
                   missing=list(verdict.missing), sql=verdict.sql, rep_id=command.rep_id)
    outgoing = [event(updated, "lead.qualification", command.at, {
        "framework": framework.name, "answers": answers, "met": list(verdict.met), "missing": list(verdict.missing),
        "sql": verdict.sql, "reason": verdict.reason, "rep_id": command.rep_id, "team_id": updated.team_id})]
    if not verdict.sql or check(updated.status, "sql") is not None:
        return LeadTransition(state=updated, outgoing=tuple(outgoing))
    updated = note(replace(updated, status="sql"), policy, command.at, "sql", why=verdict.reason)
    outgoing.append(event(updated, "lead.sql", command.at, {
        "framework": framework.name, "why": verdict.reason, "team_id": updated.team_id,
        "source": updated.first_touch.source, "score": updated.score.value if updated.score else None}))
    return _convert(updated, outgoing, now, policy, command.rep_id)


def _convert(state: LeadState, outgoing: list[Outgoing], now: datetime, policy: LeadPolicy,
             rep_id: str | None) -> LeadTransition:
    """An SQL becomes an opportunity: the rep's capacity is freed and the CRM is asked to upsert it."""
    a = state.assignment
    if state.routing in HELD and a is not None:
        outgoing.append(Outgoing(channel="team.commands", key=a.team_id, value=ReleaseLead(
            team_id=a.team_id, lead_id=state.lead_id, route_id=a.route_id, rep_id=a.rep_id,
            reason="converted", at=now)))
    elif state.routing == "queued":
        outgoing.append(Outgoing(channel="team.commands", key=state.team_id, value=WithdrawLead(
            team_id=state.team_id, lead_id=state.lead_id, route_id=state.route_id, reason="converted", at=now)))
    # The attribution its outcome will be credited to, frozen now (see the module docstring).
    opportunity = Opportunity(opportunity_id=opportunity_id_for(state.lead_id, state.cycle), created_at=now,
                              rep_id=a.rep_id if a is not None else rep_id, source=state.lead.source,
                              segment=state.score.segment if state.score is not None else None)
    converted = replace(state, status="converted", routing="released", opportunity=opportunity)
    converted = note(converted, policy, now, "converted", opportunity_id=opportunity.opportunity_id)
    outgoing.append(event(converted, "opportunity.created", now, {
        "opportunity_id": opportunity.opportunity_id, "rep_id": opportunity.rep_id, "team_id": converted.team_id,
        "source": converted.first_touch.source, "segment": converted.score.segment if converted.score else None,
        "score": converted.score.value if converted.score else None}))
    outgoing.append(Outgoing(channel="crm.outbox", key=state.lead_id, value=UpsertOpportunity(
        opportunity_id=opportunity.opportunity_id, lead_id=state.lead_id,
        payload=opportunity_payload(converted), created_at=now)))
    return LeadTransition(state=converted, outgoing=tuple(outgoing))


def opportunity_payload(state: LeadState) -> dict[str, Any]:
    """What the CRM and the AE get: the lead, enrichment, score, answers, attribution and timeline."""
    opportunity = state.opportunity
    assert opportunity is not None
    lead = state.lead
    person = " ".join(p for p in (lead.first_name, lead.last_name) if p) or lead.email or lead.phone or state.lead_id
    company = lead.company or (state.enrichment.company_guess if state.enrichment else None)
    q = state.qualification
    a = state.assignment
    return {
        "opportunity_id": opportunity.opportunity_id, "lead_id": state.lead_id, "cycle": state.cycle,
        "name": f"{company} – {person}" if company else person, "stage": opportunity.stage,
        "created_at": opportunity.created_at, "source": state.first_touch.source,
        "lead": asdict(lead), "enrichment": asdict(state.enrichment) if state.enrichment else None,
        "score": score_view(state.score),
        "qualification": None if q is None else {"framework": q.framework, "answers": q.answers, "met": list(q.met),
                                                 "missing": list(q.missing), "reason": q.reason},
        "attribution": {"first_touch": asdict(state.first_touch), "last_touch": asdict(state.last_touch),
                        "touches": state.touches},
        "owner": {"rep_id": opportunity.rep_id, "rep_name": a.rep_name if a else None, "team_id": state.team_id},
        "timeline": [asdict(e) for e in state.timeline],
    }


def _synced(state: LeadState, command: RecordCrmSync, policy: LeadPolicy) -> LeadTransition:
    opportunity = state.opportunity
    if opportunity is None or opportunity.opportunity_id != command.opportunity_id:
        return LeadTransition(state=state)
    if opportunity.synced_at is not None or (not command.synced and opportunity.sync_failed is not None):
        return LeadTransition(state=state)  # already recorded: a replay
    first_report = opportunity.synced_at is None and opportunity.sync_failed is None
    if command.synced:
        opportunity = replace(opportunity, crm=command.crm, crm_id=command.crm_id, synced_at=command.at,
                              sync_failed=None)
        kind = "opportunity.synced"
    else:
        opportunity = replace(opportunity, crm=command.crm, sync_failed=command.error or "failed")
        kind = "opportunity.sync_failed"
    updated = replace(state, opportunity=opportunity)
    updated = note(updated, policy, command.at, kind.split(".")[1], crm=command.crm, crm_id=command.crm_id,
                   attempts=command.attempts, error=command.error)
    outgoing = [event(updated, kind, command.at, {
        "opportunity_id": opportunity.opportunity_id, "crm": command.crm, "crm_id": command.crm_id,
        "attempts": command.attempts, "error": command.error, "team_id": updated.team_id})]
    if first_report:
        outgoing += _notify_ae(updated, command, policy)
    return LeadTransition(state=updated, outgoing=tuple(outgoing))


def _notify_ae(state: LeadState, command: RecordCrmSync, policy: LeadPolicy) -> list[Outgoing]:
    """The AE hears once, after the CRM has it (or after it was dead-lettered, so a human acts)."""
    endpoint = policy.account_executives.get(state.team_id) or policy.account_executives.get("*")
    opportunity = state.opportunity
    if endpoint is None or opportunity is None:
        return []
    body = {"type": "opportunity.created", "timestamp": command.at, "data": {
        **opportunity_payload(state),
        "crm": {"name": command.crm, "id": command.crm_id, "status": "synced" if command.synced else "failed",
                "error": command.error}}}
    notify = Notify(webhook_id=webhook_id_for(opportunity.opportunity_id, "opportunity.created"),
                    event_type="opportunity.created", lead_id=state.lead_id, rep_id=None, url=endpoint.url,
                    secret=endpoint.secret, payload=body, created_at=command.at)
    return [Outgoing(channel="notifications", key=state.lead_id, value=notify)]


def _crm_event(state: LeadState, command: RecordCrmEvent, now: datetime, policy: LeadPolicy) -> LeadTransition:
    if command.event_id in state.recent_activities:
        return LeadTransition(state=state)  # a replay
    stale = stale_crm_event(state, command.crm_at, command.opportunity_id, command.kind)
    if stale is not None:  # an older move delivered late, or a repeat: no state change, said on lead.events
        assert state.opportunity is not None
        return _rejected(state, "opportunity.event_ignored", now, stale, event_id=command.event_id,
                         kind=command.kind, at=command.crm_at, opportunity_id=state.opportunity.opportunity_id,
                         moved_at=state.opportunity.crm_moved_at)
    if confirms_close(state, command.kind, command.crm_at, command.opportunity_id):
        assert state.opportunity is not None
        return LeadTransition(state=replace(_seen(state, command.event_id),
                                            opportunity=_moved(state.opportunity, command)))
    problem = can_take_crm_event(state, command.kind, command.opportunity_id, command.stage)
    if problem is not None:
        return _rejected(state, "opportunity.event_rejected", now, problem, event_id=command.event_id,
                         kind=command.kind)
    opportunity = state.opportunity
    assert opportunity is not None
    updated = _seen(state, command.event_id)
    common = {"opportunity_id": opportunity.opportunity_id, "crm_id": opportunity.crm_id,
              "team_id": state.team_id, "rep_id": opportunity.rep_id}
    if command.kind == "stage_changed" and opportunity.status != "open":
        return _reopen(updated, command, common, policy)
    if command.kind == "stage_changed":
        stage = command.stage or opportunity.stage
        updated = replace(updated, opportunity=replace(_moved(opportunity, command), stage=stage))
        updated = note(updated, policy, command.at, "opportunity_stage", stage=stage, previous=opportunity.stage)
        return LeadTransition(state=updated, outgoing=(event(updated, "opportunity.stage_changed", command.at, {
            **common, "stage": stage, "previous": opportunity.stage}),))
    won = command.kind == "won"
    earlier = opportunity.status  # "open", or the close this event corrects
    correcting = earlier != "open"
    source, segment = _credited(state)
    weight = None if won else reason_weight(command.reason, policy.scoring.learning)
    amount = command.amount if command.amount is not None else opportunity.amount
    # Revenue is a counter: a deal won again (after a correction to lost, or a reopen) adds only
    # what it won beyond what was counted already, never its amount twice.
    counted = revenue_counted(opportunity)
    revenue = max(0.0, (amount or 0.0) - counted) if won else 0.0
    closed = replace(_moved(opportunity, command), status="won" if won else "lost", closed_at=command.at,
                     amount=amount, stage=command.stage or ("closed_won" if won else "closed_lost"),
                     lost_reason=None if won else command.reason, source=source, segment=segment,
                     lost_weight=weight, corrections=opportunity.corrections + (1 if correcting else 0),
                     revenue_counted=counted + revenue)
    updated = replace(updated, opportunity=closed, status="won" if won else "recycled")
    correction: dict[str, Any] = {"corrects": earlier, "from": earlier} if correcting else {}
    updated = note(updated, policy, command.at, f"opportunity_{'won' if won else 'lost'}",
                   amount=closed.amount, reason=command.reason, **correction)
    outgoing = [event(updated, f"opportunity.{'won' if won else 'lost'}", command.at, {
        **common, "amount": closed.amount, "reason": command.reason, "source": state.first_touch.source,
        "segment": segment, "credited_source": source, **correction, **({"revenue": revenue} if won else {})})]
    # A correction moves the deal on the board: the outcome counted before comes off as this one counts.
    corrects = _counted(state) if correcting else None
    outgoing.append(Outgoing(channel="outcomes", key=OUTCOMES_KEY, value=RecordOutcome(
        outcome_id=_outcome_id(closed, command.kind), lead_id=state.lead_id,
        won=won, source=source, segment=segment, rep_id=opportunity.rep_id, reason=command.reason,
        at=command.at, weight=weight, corrects=corrects)))
    if not won:
        returns_at = None
        if policy.recycle_after_s is not None:
            returns_at = command.at + timedelta(seconds=policy.recycle_after_s)
            outgoing.append(Outgoing(channel="crm.outbox", key=state.lead_id, value=DeferCommand(
                lead_id=state.lead_id, defer_id=f"{state.lead_id}:{state.cycle}:recycle", due_at=returns_at,
                command=ReturnToRouting(lead_id=state.lead_id, cycle=state.cycle, at=returns_at))))
        updated = note(updated, policy, command.at, "recycled", reason=command.reason, returns_at=returns_at)
        outgoing.append(event(updated, "lead.recycled", command.at, {
            "to": "nurture", "reason": command.reason, "returns_to_routing_at": returns_at,
            "team_id": state.team_id, "source": state.first_touch.source}))
    return LeadTransition(state=updated, outgoing=tuple(outgoing))


def _moved(opportunity: Opportunity, command: RecordCrmEvent) -> Opportunity:
    """The opportunity with an applied won, lost or stage change's time: ``moved_at`` (its ``at``)
    and, if the CRM gave one, ``crm_moved_at`` (not stale, so never earlier than the one held)."""
    return replace(opportunity, moved_at=command.at, crm_moved_at=command.crm_at or opportunity.crm_moved_at)


def _credited(state: LeadState) -> tuple[str, str]:
    """The source and segment the board counts (or counted) the deal under: frozen at conversion;
    an opportunity made before that was kept is credited as it was then (first touch, the score's
    segment at close)."""
    opportunity = state.opportunity
    assert opportunity is not None
    source = opportunity.source or state.first_touch.source
    segment = opportunity.segment or (state.score.segment if state.score is not None else "unknown")
    return source, segment


def _counted(state: LeadState) -> CountedOutcome:
    """The close of the lead's opportunity as the board counted it: what a correction or a reopen takes off."""
    opportunity = state.opportunity
    assert opportunity is not None and opportunity.status != "open"
    source, segment = _credited(state)
    return CountedOutcome(won=opportunity.status == "won", source=source, segment=segment,
                          rep_id=opportunity.rep_id, reason=opportunity.lost_reason, weight=opportunity.lost_weight)


def _outcome_id(opportunity: Opportunity, kind: str) -> str:
    """``<op>:<kind>`` for the first close; ``<op>:<kind>:<n>`` once the deal was corrected or
    reopened (``n``: ``corrections``, which each correction and reopen raises by one), so every
    outcome of the deal has its own id: a close after a reopen at ``n`` is the only ``<kind>:<n>``."""
    n = opportunity.corrections
    return f"{opportunity.opportunity_id}:{kind}:{n}" if n else f"{opportunity.opportunity_id}:{kind}"


def _reopen(state: LeadState, command: RecordCrmEvent, common: dict[str, Any], policy: LeadPolicy) -> LeadTransition:
    """The CRM moved the cycle's closed deal back into a stage: the opportunity is open again, the
    lead back in it (``converted``), and the close comes off the board.

    The ``RecordOutcome`` counts nothing (``reopened``); its fields repeat the close it takes off.
    An outcomes agent older than ``reopened`` does not know the field and counts it as another
    close of the same kind (README, "Deploying": no CRM events during a rolling upgrade). A
    pending return to routing finds a ``converted`` lead and does nothing.
    """
    opportunity = state.opportunity
    assert opportunity is not None
    earlier = opportunity.status
    counted = _counted(state)
    stage = command.stage or opportunity.stage
    reopened = replace(_moved(opportunity, command), status="open", stage=stage, closed_at=None, lost_reason=None,
                       lost_weight=None, source=counted.source, segment=counted.segment,
                       corrections=opportunity.corrections + 1,
                       revenue_counted=revenue_counted(opportunity))  # open again, "won" no longer says it
    updated = replace(state, opportunity=reopened, status="converted")
    updated = note(updated, policy, command.at, "opportunity_reopened", stage=stage, previous=opportunity.stage,
                   **{"from": earlier})
    published = event(updated, "opportunity.reopened", command.at, {
        **common, "stage": stage, "previous": opportunity.stage, "from": earlier, "amount": opportunity.amount,
        "source": state.first_touch.source, "segment": counted.segment, "credited_source": counted.source})
    withdraw = RecordOutcome(
        outcome_id=_outcome_id(reopened, "reopened"), lead_id=state.lead_id, won=counted.won, source=counted.source,
        segment=counted.segment, rep_id=counted.rep_id, reason=counted.reason, at=command.at, weight=counted.weight,
        corrects=counted, reopened=True)
    return LeadTransition(state=updated, outgoing=(published, Outgoing(channel="outcomes", key=OUTCOMES_KEY,
                                                                        value=withdraw)))


def _return_to_routing(state: LeadState, command: ReturnToRouting, now: datetime,
                       policy: LeadPolicy) -> LeadTransition:
    """A recycled lead starts a new cycle: scored again (with what outcomes taught), then gated and routed."""
    if command.cycle != state.cycle or state.status != "recycled":
        return LeadTransition(state=state)
    cycle = state.cycle + 1
    # Like a fresh capture, the team is chosen again (account, routing rules, default team): the
    # team the last cycle ended in (a pool, an overflow team) says nothing about where it belongs.
    tier = attribute(state.lead.attributes, "tier")
    team_id, why = select_team(facts=facts_of(state.lead, state.enrichment, tier=tier), rules=policy.team_rules,
                               default_team=policy.default_team, account=state.account)
    account_tier = state.account.tier if state.account is not None else None
    fresh = LeadState(
        lead_id=state.lead_id, cycle=cycle, status="new", routing="routing", lead=state.lead,
        team_id=team_id, route_id=f"{state.lead_id}:{cycle}:1", route_seq=1, captured_at=now,
        first_touch=state.first_touch, last_touch=state.last_touch, touches=state.touches,
        recent_captures=state.recent_captures, timeline=state.timeline, enrichment=state.enrichment,
        account=state.account, recent_activities=state.recent_activities,
        route_priority=tier_priority(policy.tier_priorities, account_tier, tier),
    )
    fresh = start_sla(note(fresh, policy, now, "recycled", to="routing", cycle=cycle, team_id=team_id, why=why),
                      now, policy)
    published = event(fresh, "lead.recycled", now, {"to": "routing", "team_id": team_id, "why_team": why,
                                                    "previous_team_id": state.team_id,
                                                    "source": fresh.first_touch.source})
    fresh, scored = rescore(replace(fresh, score=None), now, policy)
    # A new cycle starts as a fresh lead: ``new``, an MQL only when a configured threshold says so.
    return _route_or_gate(fresh, (published, *scored), now, policy, via="recycled")

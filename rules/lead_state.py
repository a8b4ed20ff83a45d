"""The lead's state and the helpers every lead transition shares (pure)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, TypeAlias

from rules.accounts import Account
from rules.capture import CapturedLead, Touch, attribute
from rules.commands import KeepAssignment, LeadAssigned, Outgoing, ReleaseLead, RouteLead, RoutingDecision
from rules.eligibility import EXCLUDED
from rules.enrichment import Enrichment
from rules.opportunity import Opportunity, Qualification
from rules.outcomes import OutcomeBoard
from rules.qualification import DEFAULT_FRAMEWORKS, Framework
from rules.scoring import Score, ScoringModel, queue_priority
from rules.routing import TeamRule
from rules.territory import locate
from sla.calendar import BusinessCalendar
from sla.ladder import Deadline
from sla.policy import SlaPolicy

__all__ = [
    "routing_latency", "RoutingStatus", "OPEN", "HELD", "OFFER_STEP", "OVERFLOW_STEP", "Assignment", "TimelineEntry", "SlaTrack", "SlaTimer", "Endpoint", "LeadState",
    "LeadPolicy", "LeadTransition", "webhook_id_for", "can_disposition", "holder_problem", "event", "note",
    "decision_digest", "why_excluded",
    "route_command",
    "give_back", "keep", "reroute",
]

RoutingStatus: TypeAlias = Literal["routing", "queued", "offered", "assigned", "released"]
OPEN: frozenset[str] = frozenset({"routing", "queued", "offered", "assigned"})
#: Reps hold the lead in these states (their capacity is taken).
HELD: frozenset[str] = frozenset({"offered", "assigned"})

#: Timer steps that are not SLA ladder steps (those are >= 0): an offer's expiry, a queue overflow.
OFFER_STEP = -1
OVERFLOW_STEP = -2


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    team_id: str
    rep_id: str
    rep_name: str
    route_id: str
    assigned_at: datetime
    webhook_id: str
    decision: RoutingDecision
    # Kept for reminders and reassignment notices to this rep; never shown by the API.
    webhook_url: str | None = None
    webhook_secret: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEntry:
    at: datetime
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaTrack:
    """The SLA of one cycle: its deadlines (planned at the first assignment) and what fired.

    Step numbers are stable ids: each (lead, cycle, step) fires at most once, whatever the
    timers replay after a crash or a rebalance.
    """

    policy: str
    deadlines: tuple[Deadline, ...]
    done: tuple[int, ...] = ()
    started_at: datetime
    breached_at: datetime | None = None
    stopped_at: datetime | None = None
    previous_reps: tuple[str, ...] = ()
    #: When a queue estimate first said the deadline would be missed (the early warning fires once).
    at_risk_at: datetime | None = None
    #: ``remind`` steps that fell due while nobody held the lead: not done yet, they fire as soon
    #: as a rep holds it (``rules.lead_sla.next_timer``), so the reminder reaches that rep.
    deferred: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaTimer:
    """The next SLA deadline of a lead: the durable row the timer index is rebuilt from."""

    lead_id: str
    cycle: int
    step: int
    due_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """A webhook destination (a team manager's, for escalations)."""

    url: str
    secret: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadState:
    """What decisions about a lead need, plus a bounded recent timeline (the full one is ``lead.events``)."""

    lead_id: str
    cycle: int
    status: str
    routing: RoutingStatus
    lead: CapturedLead
    team_id: str
    route_id: str
    route_seq: int
    captured_at: datetime
    first_touch: Touch
    last_touch: Touch
    touches: int = 1
    assignment: Assignment | None = None
    sla_deadline: datetime | None = None
    #: When this cycle's rep was first told of the lead (their ``lead.assigned``/``lead.offered``
    #: webhook delivered): the system's part of speed-to-lead ends here.
    notified_at: datetime | None = None
    #: When a rep first had this cycle's lead (its first ``lead.assigned``, an accepted offer's
    #: included): the cycle's one routing-latency sample. Reassignments add none.
    routed_at: datetime | None = None
    recent_captures: tuple[str, ...] = ()
    #: ``capture_digest`` of the capture counted as ``last_touch``: the same content again soon
    #: after it is a resubmission (``LeadPolicy.resubmission_window_s``), not a new touch. ``None``
    #: once a rep dispositioned the lead after that touch: the person asking again reopens it.
    last_capture_digest: str | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    sla: SlaTrack | None = None
    #: Built-in enrichment of the merged lead (e-mail type, company, seniority, department...).
    enrichment: Enrichment | None = None
    #: The account the lead's domain matched at capture (owner, team, tier), if any.
    account: Account | None = None
    #: Queue priority for this cycle's routes (0 first; ``None``: RouteLead's default), from tiers.
    route_priority: int | None = None
    contacted_at: datetime | None = None
    recent_activities: tuple[str, ...] = ()
    #: Fit + intent score of the current cycle, with its tier and reasons (``rules.scoring``).
    score: Score | None = None
    #: Qualification answers of the current cycle and what they meet (``rules.qualification``).
    qualification: Qualification | None = None
    #: The opportunity this lead converted into, once it is an SQL.
    opportunity: Opportunity | None = None
    #: While ``routing == "offered"``: when the offer lapses and the lead goes to the next rep.
    offer_expires_at: datetime | None = None
    #: Reps who declined the lead (or let an offer lapse) in this cycle: never offered it again.
    declined_by: tuple[str, ...] = ()
    #: While ``routing == "queued"``: when the lead leaves for the team's overflow team.
    overflow_at: datetime | None = None
    #: Where the last command that changed this state was read (its topic partition and offset;
    #: -1: not known). Set by the lead agent, never by the rules: a command read again after a
    #: crash, at or below it, is already in this state and must not meet it a second time.
    applied_partition: int = -1
    applied_offset: int = -1

    def applied(self, partition: int, offset: int, end: int | None = None) -> bool:
        """Whether the command read at ``partition``/``offset`` is already in this state.

        ``end``: where that partition ends now (its high watermark; ``None``: not known). A mark
        at or past it was not read from this topic but from one deleted and made again, whose
        offsets began anew: the command is new, and is applied.
        """
        return (offset >= 0 and partition == self.applied_partition and offset <= self.applied_offset
                and (end is None or self.applied_offset < end))


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadPolicy:
    """The configuration lead decisions depend on."""

    default_team: str = "default"
    team_rules: tuple[TeamRule, ...] = ()
    timeline_limit: int = 50
    #: How many candidates a ``queued`` timeline entry lists (the rest are counted, not listed):
    #: a team may have many reps, and the whole timeline is rewritten with every change.
    timeline_candidates: int = 10
    recent_capture_limit: int = 32
    #: Seconds after a counted touch in which a capture with exactly the same content (every
    #: field, source, channel and campaign) is a resubmission: a double-clicked form, a feed
    #: retried without an idempotency key. It goes on the timeline only: not counted as a touch,
    #: not rescored, its owner not told. Later, the same content is a new touch again.
    resubmission_window_s: float = 600.0
    sla_policies: tuple[SlaPolicy, ...] = ()
    calendars: dict[str, BusinessCalendar] = field(default_factory=dict)
    #: The calendar of every team ``calendars`` does not name (a calendar without ``teams``):
    #: teams reached through an account or made with ``PUT /v1/reps`` only are such teams too.
    default_calendar: BusinessCalendar | None = None
    managers: dict[str, Endpoint] = field(default_factory=dict)
    overflow_teams: dict[str, str] = field(default_factory=dict)
    #: Scoring weights, the MQL threshold and hot sources (``rules.scoring``).
    scoring: ScoringModel = field(default_factory=ScoringModel)
    #: A snapshot of the won/lost table; the lead agent fills it in for each command.
    outcomes: OutcomeBoard | None = None
    #: Qualification frameworks by name (BANT, MEDDIC, CHAMP shipped).
    frameworks: dict[str, Framework] = field(default_factory=lambda: dict(DEFAULT_FRAMEWORKS))
    #: Who hears ``opportunity.created``: the AE endpoint by team id, ``*`` for every other team.
    account_executives: dict[str, Endpoint] = field(default_factory=dict)
    #: Seconds after a lost deal before the lead is routed again; ``None``: it stays in nurture.
    recycle_after_s: float | None = None
    #: Queue priority (0 first) by tier label, for the account's tier and the lead's tier.
    tier_priorities: dict[str, int] = field(default_factory=dict)
    #: Teams using the offer handshake: seconds a rep has to accept before the next rep is offered it.
    offer_timeouts: dict[str, float] = field(default_factory=dict)
    #: Seconds a lead may wait in a team's queue before it moves to the team's overflow team.
    overflow_after: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadTransition:
    state: LeadState | None
    outgoing: tuple[Outgoing, ...] = ()


def webhook_id_for(route_id: str, event_type: str) -> str:
    """Stable Standard Webhooks id for one event of one assignment (no dots, no user input)."""
    return "msg_" + hashlib.sha256(f"{route_id}|{event_type}".encode()).hexdigest()[:32]


def can_disposition(state: LeadState | None) -> str | None:
    """Why a disposition cannot apply now, or ``None`` when it can."""
    if state is None:
        return "no such lead"
    if state.routing not in OPEN:
        return f"the lead is already closed ({state.status})"
    return None


def holder_problem(state: LeadState, rep_id: str | None) -> str | None:
    """Why ``rep_id`` cannot act as the lead's rep now, or ``None`` when they can.

    A rep reports work (activities, qualification answers) only on a lead they hold (offered or
    assigned), as with an offer's accept and decline. Reports without a rep (the CRM, a manager)
    are not tied to a holder.
    """
    if rep_id is None:
        return None
    a = state.assignment
    if state.routing not in HELD or a is None:
        return f"{rep_id} does not hold the lead: no rep does (it is {state.routing})"
    if a.rep_id != rep_id:
        return f"the lead is held by another rep, not {rep_id}"
    return None


def event(state: LeadState, kind: str, at: datetime, data: dict[str, Any]) -> Outgoing:
    # ``first_source``: the source marketing credits the lead to (its first touch), on every event,
    # so a reader of any window attributes a lead captured before it.
    value = {"type": kind, "lead_id": state.lead_id, "cycle": state.cycle, "at": at,
             "first_source": state.first_touch.source, "data": data}
    return Outgoing(channel="lead.events", key=state.lead_id, value=value)


def note(state: LeadState, policy: LeadPolicy, at: datetime, kind: str, **detail: Any) -> LeadState:
    timeline = (state.timeline + (TimelineEntry(at=at, kind=kind, detail=detail),))[-policy.timeline_limit:]
    return replace(state, timeline=timeline)


#: Timeline entries that took the lead from a rep (``from_rep``), and how the exclusion reads.
_TOOK_FROM = {"declined": "declined the offer", "offer_expired": "let the offer lapse"}


def why_excluded(state: LeadState) -> dict[str, str]:
    """Why each rep this cycle excludes is excluded, from the lead's own timeline.

    The team knows only that a rep is excluded; the lead knows whether they declined the offer,
    let it lapse, or held the lead before it was taken from them (and why). Newest entry wins.
    """
    excluded = set(state.declined_by) | set(state.sla.previous_reps if state.sla is not None else ())
    why: dict[str, str] = {}
    for entry in reversed(state.timeline):
        rep_id = entry.detail.get("from_rep")
        if rep_id not in excluded or rep_id in why:
            continue
        if entry.kind in _TOOK_FROM:
            why[rep_id] = _TOOK_FROM[entry.kind]
        elif entry.detail.get("reason"):
            why[rep_id] = f"had the lead ({entry.kind}: {entry.detail['reason']})"
    for rep_id in excluded - why.keys():  # older than the timeline keeps
        why[rep_id] = "declined the offer or let it lapse" if rep_id in state.declined_by else "had the lead"
    return why


def routing_latency(state: LeadState, at: datetime) -> tuple[LeadState, dict[str, float]]:
    """The lead after a rep has it at ``at``, and ``lead.assigned``'s ``routing_seconds`` if this is
    the cycle's first: capture -> a rep has the lead, once per lead and cycle, from the cycle's
    capture (a later touch of the same person does not restart it)."""
    if state.routed_at is not None:
        return state, {}
    return replace(state, routed_at=at), {"routing_seconds": (at - state.captured_at).total_seconds()}


def decision_digest(decision: RoutingDecision, limit: int, why: dict[str, str] | None = None) -> dict[str, Any]:
    """A routing decision small enough for the timeline: the strategy, the reason and the first
    ``limit`` candidates with their reasons; ``candidates_left_out`` counts the others (the full
    record is on ``lead.events``). ``why`` (``why_excluded``) says what "excluded" means for each
    rep. Lists, not tuples: the entry reads back the same from the table."""
    shown = decision.candidates[:max(limit, 0)]

    def reasons(rep_id: str, given: tuple[str, ...]) -> list[str]:
        known = (why or {}).get(rep_id)
        return [f"{r}: {known}" if r == EXCLUDED and known else r for r in given]

    return {"strategy": decision.strategy, "winner": decision.winner, "reason": decision.reason,
            "candidates": [{"rep_id": c.rep_id, "eligible": c.eligible, "reasons": reasons(c.rep_id, c.reasons)}
                           for c in shown],
            "candidates_left_out": len(decision.candidates) - len(shown)}


def route_command(state: LeadState, excluded: tuple[str, ...] = ()) -> Outgoing:
    attributes = state.lead.attributes
    skills = tuple(s.strip() for s in (attribute(attributes, "skills") or "").split(",") if s.strip())
    # Where the lead is, read exactly as team selection read it: the reps' territories must
    # judge the same state the routing rule matched (``state: CA`` and ``region: CA`` alike).
    where = locate(state.lead.country, attributes, state.enrichment)
    value = RouteLead(team_id=state.team_id, lead_id=state.lead_id, route_id=state.route_id,
                      requested_at=state.last_touch.at, excluded_reps=excluded,
                      # What the team's eligibility filters match reps against (empty: no requirement).
                      country=where.country, region=where.state,
                      language=attribute(attributes, "language"), required_skills=skills,
                      account_owner=state.account.owner if state.account is not None else None)
    if state.route_priority is not None:
        value = replace(value, priority=state.route_priority)
    elif state.score is not None:  # the lead's score tier: A first, then B, then the rest
        value = replace(value, priority=queue_priority(state.score))
    return Outgoing(channel="team.commands", key=state.team_id, value=value)


def reroute(state: LeadState, now: datetime, policy: LeadPolicy, *, note_kind: str, reason: str,
            team_id: str | None = None, detail: dict[str, Any] | None = None) -> tuple[LeadState, list[Outgoing]]:
    """Route the lead again (a new route id), taking it from the rep who holds it, if anyone.

    The rep who held it joins the cycle's previous reps: neither they nor anyone who declined
    the lead in this cycle is offered it again. ``note_kind`` names the timeline entry and
    ``reason`` says why, in the timeline, ``lead.reassigned`` and the rep's release.
    """
    a = state.assignment if state.routing in HELD else None
    outgoing: list[Outgoing] = []
    previous = state.sla.previous_reps if state.sla is not None else ()
    if a is not None:
        outgoing.append(Outgoing(channel="team.commands", key=a.team_id, value=ReleaseLead(
            team_id=a.team_id, lead_id=state.lead_id, route_id=a.route_id, rep_id=a.rep_id, reason=reason, at=now,
            returned=state.routing == "offered")))
        previous = tuple(dict.fromkeys(previous + (a.rep_id,)))
    seq = state.route_seq + 1
    moved = replace(state, routing="routing", team_id=team_id or state.team_id, route_seq=seq,
                    route_id=f"{state.lead_id}:{state.cycle}:{seq}", assignment=None,
                    offer_expires_at=None, overflow_at=None,
                    sla=replace(state.sla, previous_reps=previous) if state.sla is not None else None)
    excluded = tuple(dict.fromkeys(previous + state.declined_by))
    from_rep = a.rep_id if a is not None else None
    moved = note(moved, policy, now, note_kind, from_rep=from_rep, team_id=moved.team_id, reason=reason)
    outgoing.append(event(moved, "lead.reassigned", now, {"from_rep": from_rep, "team_id": moved.team_id,
                                                          "reason": reason, "excluded": list(excluded),
                                                          **(detail or {})}))
    outgoing.append(route_command(moved, excluded=excluded))
    return moved, outgoing


def give_back(command: LeadAssigned, reason: str, now: datetime) -> Outgoing:
    value = ReleaseLead(team_id=command.team_id, lead_id=command.lead_id, route_id=command.route_id,
                        rep_id=command.rep_id, reason=reason, at=now)
    return Outgoing(channel="team.commands", key=command.team_id, value=value)


def keep(state: LeadState, assignment: Assignment, now: datetime) -> Outgoing:
    """Tell the team the lead keeps ``assignment``: its route was decided again, differently."""
    value = KeepAssignment(team_id=assignment.team_id, lead_id=state.lead_id, route_id=assignment.route_id,
                           rep_id=assignment.rep_id, assigned_at=assignment.assigned_at, at=now)
    return Outgoing(channel="team.commands", key=assignment.team_id, value=value)

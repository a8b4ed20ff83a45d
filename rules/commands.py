"""Commands and notifications on the wire: what one entity asks of another.

Commands are imperative (``RouteLead``) or report a fact to the owner (``LeadAssigned``);
every one carries the ids that make replaying it harmless. Events for the public
``lead.events`` topic are plain dicts built by the lead transition.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

from rules.accounts import Account
from rules.capture import CapturedLead
from rules.enrichment import ProviderFindings

__all__ = [
    "Presence",
    "RepProfile",
    "Candidate",
    "RoutingDecision",
    "CaptureLead",
    "LeadAssigned",
    "LeadQueued",
    "RecordDelivery",
    "DispositionLead",
    "RecordActivity",
    "SlaDue",
    "RouteLead",
    "ReleaseLead",
    "KeepAssignment",
    "UpsertRep",
    "RemoveRep",
    "SetHeldElsewhere",
    "SetPresence",
    "PutRep",
    "ChangePresence",
    "ReportHeld",
    "ReportJoin",
    "RetireRep",
    "ApplyRoster",
    "Notify",
    "LeadCommand",
    "TeamCommand",
    "RepCommand",
    "RecordQualification",
    "RecordCrmSync",
    "RecordCrmEvent",
    "ReturnToRouting",
    "UpsertOpportunity",
    "DeferCommand",
    "CrmCommand",
    "Channel",
    "Outgoing",
]

Presence: TypeAlias = Literal["available", "busy", "offline"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RepProfile:
    """A rep as RevOps defines them (the API's ``PUT /v1/reps/{rep_id}`` body)."""

    rep_id: str
    team_id: str
    name: str = ""
    capacity: int = 5
    daily_cap: int | None = None
    weight: int = 1
    skills: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    territories: tuple[str, ...] = ()
    timezone: str = "UTC"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    email: str | None = None
    #: Most leads assigned per ISO week in the rep's time zone (``None``: no cap).
    weekly_cap: int | None = None
    #: Weekly hours in ``timezone``, e.g. ``{"mon-fri": ("09:00-17:00",)}``; empty: always on.
    working_hours: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: ISO 3166-1 country whose public holidays the rep takes off (``None``: none).
    holidays_country: str | None = None
    #: The team's routing strategy, carried by config-born upserts; ``None`` keeps the team's.
    team_strategy: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One rep considered for a lead, and why they could or could not take it."""

    rep_id: str
    eligible: bool
    reasons: tuple[str, ...] = ()
    open_leads: int = 0
    capacity: int = 0
    weight: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingDecision:
    """The explainable record of one routing decision: candidates, strategy and winner."""

    team_id: str
    strategy: str
    candidates: tuple[Candidate, ...]
    winner: str | None
    reason: str
    decided_at: datetime


# --- lead.commands (key: lead_id) -----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureLead:
    """A lead arrived (new person, or a new touch of a known one)."""

    lead_id: str
    capture_id: str
    captured_at: datetime
    lead: CapturedLead
    #: The account the lead's domain matched (set by the account agent on the way in; ``None``: none).
    account: Account | None = None
    #: What the HTTP enrichment providers said, looked up by the intake within its time budget.
    findings: tuple[ProviderFindings, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadAssigned:
    """The team agent gave the lead to a rep (the lead checks it still wants it)."""

    lead_id: str
    route_id: str
    team_id: str
    rep_id: str
    rep_name: str
    webhook_url: str | None
    webhook_secret: str | None
    decision: RoutingDecision
    assigned_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadQueued:
    """Nobody in the team could take the lead now; it waits in the team's queue."""

    lead_id: str
    route_id: str
    team_id: str
    depth: int
    decision: RoutingDecision
    queued_at: datetime
    #: How long the lead will likely wait, from the team's recent drain rate (None: no data yet).
    expected_wait_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDelivery:
    """The notifier's outcome for one webhook."""

    lead_id: str
    webhook_id: str
    event_type: str
    rep_id: str | None
    delivered: bool
    attempts: int
    status: int | None
    error: str | None
    at: datetime
    #: The message will never be delivered (``410 Gone``, another 4xx, or the retry schedule ran
    #: out); an undeliverable ``lead.assigned`` makes the lead look for another rep.
    dead_lettered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DispositionLead:
    """The rep closed the lead (disqualified, nurture, ...): their capacity is released."""

    lead_id: str
    status: str
    reason: str | None
    rep_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordActivity:
    """The rep (or the CRM) worked the lead: the first contact stops the SLA clock."""

    lead_id: str
    activity_id: str
    type: Literal["call", "email", "meeting", "sms", "note"]
    rep_id: str | None
    at: datetime
    outcome: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaDue:
    """A timer says an SLA deadline of this lead has come (``due_at``: when it fired); the lead
    re-checks against its own deadlines and acts at most once per (cycle, step)."""

    lead_id: str
    cycle: int
    step: int
    due_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerOffer:
    """The rep's answer to an offer (teams with the accept handshake): accept, or decline with a reason."""

    lead_id: str
    rep_id: str
    route_id: str
    accepted: bool
    reason: str | None = None
    at: datetime


# --- lead.commands: qualification, the CRM handoff and what the CRM reports back -------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordQualification:
    """The rep's answers to a qualification framework (merged with earlier ones of the same framework)."""

    lead_id: str
    qualification_id: str
    framework: str
    answers: dict[str, Any]
    rep_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordCrmSync:
    """The CRM agent's outcome for an opportunity: upserted (with the CRM's id) or dead-lettered."""

    lead_id: str
    opportunity_id: str
    synced: bool
    crm: str
    crm_id: str | None
    attempts: int
    error: str | None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordCrmEvent:
    """The CRM says the opportunity moved: a stage change, won, or lost with a reason."""

    lead_id: str
    event_id: str
    kind: Literal["stage_changed", "won", "lost"]
    stage: str | None = None
    amount: float | None = None
    reason: str | None = None
    at: datetime
    #: The opportunity the CRM names (leadflow's ``op_…`` id), checked by the lead against its
    #: current one, so a late event about an earlier cycle's deal is not applied to this cycle's.
    #: ``None``: not named (a CRM integration that does not send it; commands from older workers).
    opportunity_id: str | None = None
    #: When it happened by the CRM's own clock: the event's ``timestamp`` as sent (Salesforce's
    #: ``LastModifiedDate``, HubSpot's stage time), not clamped to now as ``at`` is. The only time
    #: CRM events are ordered by (``rules.lead_crm.stale_crm_event``). ``None``: the CRM sent none
    #: (``at`` is then the arrival), or a command from an older worker: applied in arrival order.
    crm_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnToRouting:
    """A recycled lead's wait is over: it starts a new cycle and is routed again (once per cycle)."""

    lead_id: str
    cycle: int
    at: datetime


# --- crm.outbox (key: lead_id) ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UpsertOpportunity:
    """Create or update the lead's opportunity in the CRM, keyed by leadflow's ``opportunity_id``."""

    opportunity_id: str
    lead_id: str
    payload: dict[str, Any]
    created_at: datetime
    #: Attempts already made (the CRM agent's durable retries re-send it with the count).
    attempt: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DeferCommand:
    """Send ``command`` to the lead when ``due_at`` comes (durably: the CRM agent keeps it in a table)."""

    lead_id: str
    defer_id: str
    due_at: datetime
    command: ReturnToRouting


CrmCommand: TypeAlias = UpsertOpportunity | DeferCommand


LeadCommand: TypeAlias = (
    CaptureLead | LeadAssigned | LeadQueued | RecordDelivery | DispositionLead | RecordActivity | SlaDue
    | AnswerOffer
    | RecordQualification | RecordCrmSync | RecordCrmEvent | ReturnToRouting
)


# --- team.commands (key: team_id) -----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteLead:
    """Find a rep for this lead (``route_id`` identifies this routing attempt)."""

    team_id: str
    lead_id: str
    route_id: str
    requested_at: datetime
    excluded_reps: tuple[str, ...] = ()
    # What the lead asks of a rep; empty means no requirement, so routing works without them.
    #: Skills the rep must all have (e.g. ``("enterprise", "spanish-market")``).
    required_skills: tuple[str, ...] = ()
    #: Language the rep must speak (BCP 47, only the primary subtag is compared: ``es-MX`` ~ ``es``).
    language: str | None = None
    #: ISO 3166-1 alpha-2 country of the lead (else its phone's), matched against the reps' territories.
    country: str | None = None
    #: The lead's state, ISO 3166-2 (``US-CA``; ``rules.territory.locate``). Entries queued before
    #: states were prefixed may hold the bare suffix (``CA``): eligibility normalizes both alike.
    region: str | None = None
    #: Queue priority: 0 is served first; leads of one priority wait in arrival order (tier, then age).
    priority: int = 2
    #: The rep who owns the lead's account (lead-to-account match): preferred when eligible.
    account_owner: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseLead:
    """Free the rep's capacity held by this assignment."""

    team_id: str
    lead_id: str
    route_id: str
    rep_id: str
    reason: str
    at: datetime
    #: The rep never took the lead: an offer they declined, let lapse, or never received. The
    #: assignment then leaves their daily and weekly caps too (a plain release stays counted).
    returned: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAssignment:
    """The lead holds this route with ``rep_id``: count it there, whatever the team decided since.

    A team batch tells the lead its decision before the team's record reaches the changelog, so a
    crash between the two makes the restarted team decide the route again. A decision that depends
    on the clock (working hours, a daily cap) can then come out different: another rep, or the
    queue. The lead keeps the rep it already told and sends this instead of a plain release; the
    team moves the route's holding to that rep (above their capacity, if they filled up since).
    """

    team_id: str
    lead_id: str
    route_id: str
    rep_id: str
    #: When the lead was assigned (the first decision), for the rep's daily and weekly counts.
    assigned_at: datetime
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class UpsertRep:
    """Create or update a rep of this team (presence and open leads are kept)."""

    team_id: str
    profile: RepProfile
    at: datetime
    #: Leads the rep still holds in teams they left, which count against their capacity here too
    #: (the rep directory's count, absolute: see ``SetHeldElsewhere``).
    held_elsewhere: int = 0
    #: A team the rep left has not yet said how many leads the rep holds there: not eligible yet.
    awaiting_handover: bool = False
    #: ``RepProfile`` fields to take from the rep's current profile in this team, if they have one
    #: (``PutRep.keep``, when the directory had no profile of the rep to fill them from).
    keep: tuple[str, ...] = ()
    #: The directory's question number (``RepEntry.moves``), which the team's answer (``ReportJoin``)
    #: carries back: a rep moving in leaves their team only once this team has taken them in, and a
    #: new rep or a change in the rep's team shows as taken only once it has been. 0: no answer (not
    #: sent by the directory).
    join: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveRep:
    """Take a rep out of this team (moved elsewhere, or retired); their open leads stay with them.

    The team answers with ``ReportHeld`` (how many leads the rep still holds here) to the rep
    directory, and again each time one of them is released, until none is left.
    """

    team_id: str
    rep_id: str
    reason: str
    at: datetime
    #: The directory's move number (``RepEntry.moves``): the team's reports carry it back, so a
    #: report about an earlier departure from this team is told apart from one about this one.
    move: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SetHeldElsewhere:
    """How many leads one of this team's reps holds in teams they left (from the rep directory).

    Absolute, not a difference: a replay or a repeat sets the same number again.
    """

    team_id: str
    rep_id: str
    open_leads: int
    #: Every team the rep left has reported: until then the rep is not eligible here.
    settled: bool
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPresence:
    """The rep's presence changed."""

    team_id: str
    rep_id: str
    status: Presence
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawLead:
    """The lead left this team's queue unassigned (it overflowed to another team after waiting)."""

    team_id: str
    lead_id: str
    route_id: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainQueue:
    """Look at the waiting leads again: time alone may have made some assignable (working hours
    opened, a daily cap reset). Sent periodically for teams with a queue."""

    team_id: str
    at: datetime


TeamCommand: TypeAlias = (
    RouteLead | ReleaseLead | KeepAssignment | UpsertRep | RemoveRep | SetPresence | WithdrawLead | DrainQueue
    | SetHeldElsewhere
)


# --- rep.commands (key: rep_id) -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PutRep:
    """Create or update a rep; the directory knows which team owns them."""

    rep_id: str
    profile: RepProfile
    at: datetime
    #: Seeded from the YAML at a worker's start: applied only when the YAML's entry changed, so
    #: a restart never undoes what the API changed since.
    from_config: bool = False
    #: ``RepProfile`` fields the request left out: an existing rep keeps their current value
    #: (``PUT /v1/reps`` changes what it names; a new rep gets the defaults).
    keep: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangePresence:
    """A rep's presence changed; the directory forwards it to the rep's team."""

    rep_id: str
    status: Presence
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportHeld:
    """A team a rep left says how many leads the rep still holds there (sent by the team agent).

    Absolute, so a replay changes nothing; ``move`` is the ``RemoveRep.move`` it answers.
    """

    rep_id: str
    team_id: str
    open_leads: int
    move: int
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportJoin:
    """A team answers an ``UpsertRep`` the directory numbered (``join``): taken in, or refused and why.

    Sent by the team agent. For a move, the directory moves the rep (``RemoveRep`` to the team they
    leave) only on a yes; on a no the rep stays where they were. For a new rep or a change in the
    rep's team, the directory shows what the team holds (``member``, ``profile``). Replays answer
    the same again.
    """

    rep_id: str
    team_id: str
    move: int
    #: Why the team refused the rep (counts and bounds only, as ``RepRefusal.reason``); ``None``: taken in.
    refused: str | None
    at: datetime
    #: Whether the team holds the rep as a member after this command (not departed); ``None``: a
    #: worker older than this field, which said only yes or no.
    member: bool | None = None
    #: The rep's profile as the team holds it after this command (``None``: not a member).
    profile: RepProfile | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetireRep:
    """Retire a rep (``DELETE /v1/reps/{rep_id}``): no new leads; the leads they hold stay theirs.

    The directory takes the rep out of their team as a move does (``RemoveRep``: the team keeps
    them, departed, until their last lead is released). A later ``PutRep`` brings them back.
    """

    rep_id: str
    at: datetime
    reason: str = "retired"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyRoster:
    """The reps a worker's YAML names, sent at its start to every partition of ``rep.commands``.

    Each partition's directory retires the reps it holds that the YAML seeded (and nothing changed
    through the API since) and that ``rep_ids`` no longer lists. Never sent by a worker without a
    config file or whose file defines no teams: an empty roster would retire every seeded rep.
    """

    rep_ids: tuple[str, ...]
    #: ``streams.app.config_digest`` of the file, for the record (the log and the ``RemoveRep`` reason).
    config_digest: str
    at: datetime


RepCommand: TypeAlias = PutRep | ChangePresence | ReportHeld | ReportJoin | RetireRep | ApplyRoster


# --- notifications (key: lead_id) -----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """A webhook to deliver; ``webhook_id`` is stable across retries and replays."""

    webhook_id: str
    event_type: str
    lead_id: str
    rep_id: str | None
    url: str
    secret: str
    payload: dict[str, Any]
    created_at: datetime


Channel: TypeAlias = Literal[
    "lead.commands", "team.commands", "rep.commands", "notifications", "lead.events", "team.signals",
    "account.commands", "crm.outbox", "outcomes", "outcomes.board"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """A message a transition wants sent; the agent maps ``channel`` to the real topic."""

    channel: Channel
    key: str
    value: Any = field(default=None)

"""leadflow's Prometheus metrics, declared once; base units, low-cardinality labels only.

The registry is injected so tests get a fresh one. Never label by lead id, e-mail or phone:
labels are teams, configured sources, channels, event types, outcomes and topics.

Gauges about a team or a partition (queue depth, open leads, overdue leads, consumer lag) are
reported only by the worker that owns that team's or partition's state right now, so
``sum by (team)`` over every worker is correct however many workers run. Counters are per
worker and restart at zero with it: always query them through ``rate()``/``increase()``.
docs/OBSERVABILITY.md lists every metric with the question it answers.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

__all__ = ["LATENCY_BUCKETS", "SPEED_BUCKETS", "LIFECYCLE", "FIRST_TOUCH_EVENTS", "OTHER_SOURCE", "SLA_OUTCOMES",
           "AGENTS", "PUBLISHED_CHANNELS", "WEBHOOK_EVENT_TYPES", "CRM_DEAD_LETTER_REASONS", "ESCALATION_ACTIONS",
           "AUTH_FAILURE_REASONS",
           "PROVIDER_UNAVAILABLE_REASONS", "Metrics",
           "TeamFigures", "funnel_move", "escalation_took_effect", "sla_outcome"]

#: Lead latency buckets in seconds. 60 s is an exact boundary, so "share of leads in front of a
#: rep within 60 s" is ``bucket{le="60"} / count`` without interpolation.
LATENCY_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: Speed-to-lead buckets in seconds (capture → first contact is minutes to hours; 60 s, 5 min
#: and 1 h are exact boundaries, the thresholds sales teams quote).
SPEED_BUCKETS: Final = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
                        14400.0, 28800.0, 86400.0)

#: Lifecycle stage moves by ``lead.events`` type: ``(from, to)``. An event may name its own
#: ``from``/``to`` in its data (the lifecycle code knows where a lead came from); these are the
#: defaults for the funnel lead → MQL → SQL → opportunity → won / lost. ``funnel_move`` applies
#: them (use it, not this table): it also knows the re-engaged cycles.
#:
#: ``lead`` counts people: only a first capture. A known person starting a new cycle (a touch on a
#: closed lead: ``lead.reopened``; a lost deal routed again: ``lead.recycled`` with ``to:
#: routing``) is ``reengaged``, never a lead again, and the MQL gate of such a cycle moves
#: ``from="reengaged"``, so lead → MQL stays the conversion of new leads (docs/OBSERVABILITY.md).
LIFECYCLE: Final[Mapping[str, tuple[str, str]]] = {
    "lead.captured": ("none", "lead"),
    "lead.reopened": ("closed", "reengaged"),
    "lead.mql": ("lead", "mql"),
    "lead.nurture": ("lead", "nurture"),
    "lead.sql": ("mql", "sql"),
    "opportunity.created": ("sql", "opportunity"),
    "opportunity.won": ("opportunity", "won"),
    "opportunity.lost": ("opportunity", "lost"),
    # The CRM reopened a closed deal: its data's ``from`` is the close (won or lost) it undoes.
    "opportunity.reopened": ("closed", "reopened"),
}

#: The gate of a cycle: where a lead goes once scored (its ``from`` is how the cycle began).
_GATE: Final = frozenset({"lead.mql", "lead.nurture"})

#: ``lead.events`` types whose ``data.source`` is the lead's first touch. The others that carry a
#: source (``lead.reopened``, ``lead.touched``, ``lead.scored``, ``lead.mql``, ``lead.nurture``)
#: carry the touch at hand or the lead's latest source, which the funnel never credits.
FIRST_TOUCH_EVENTS: Final = frozenset({"lead.captured", "lead.sql", "opportunity.created", "opportunity.won",
                                       "opportunity.lost", "lead.recycled"})


def escalation_took_effect(data: Mapping[str, object]) -> bool:
    """Whether a ``lead.escalated`` event's step did something: a webhook sent or the lead moved.

    A step that found nothing to do (a reassign on a queued lead, a team without a manager
    webhook) is recorded with ``outcome: skipped`` or ``not_sent`` and its why; it is no
    escalation. Events written before steps had an outcome count as taken.
    """
    return data.get("outcome", "sent") in ("sent", "moved")


# Label values created at 0 when the metrics are (``Metrics.__init__``, ``Metrics.configure_teams``):
# a series born at 1 has no earlier sample, so ``increase()`` and ``rate()`` read a lone first
# failure or dead letter as no change, and an alert on it never fires.

#: Every agent that counts ``leadflow_command_failures_total`` (tests/ops check the agents' code).
AGENTS: Final = ("lead", "team", "rep", "account", "notifier", "crm", "outcomes", "team_stats")

#: Every webhook the notifier delivers (``Notify.event_type``).
WEBHOOK_EVENT_TYPES: Final = ("lead.assigned", "lead.offered", "lead.touched", "lead.reminder", "lead.reassigned",
                              "lead.escalated", "opportunity.created")

#: Every channel ``streams.topics.publish`` writes to (``streams.topics.CHANNELS``; a test keeps them equal).
PUBLISHED_CHANNELS: Final = ("lead.commands", "team.commands", "rep.commands", "account.commands", "notifications",
                             "lead.events", "team.signals", "crm.outbox", "crm.outbox.dead", "outcomes",
                             "outcomes.board", "notifications.dead")

#: Why an opportunity was dead-lettered: the CRM refused it, or its retry schedule ran out.
CRM_DEAD_LETTER_REASONS: Final = ("refused", "gave_up")

#: The escalation ladder's steps (``sla.policy.StepKind``).
ESCALATION_ACTIONS: Final = ("remind", "reassign", "alert_manager", "release_to_pool")

#: Why the API refused a request's authentication (``connectors.api.context.guard_failed_auth``): no
#: key (401), a key that is none of ours (401), a key without the route's scope (403), or a client
#: address over its failed authentications (429).
AUTH_FAILURE_REASONS: Final = ("missing_key", "invalid_key", "scope_refused", "blocked")

#: Why a lead provider's webhook was answered 503, so that the provider redelivers it, by provider
#: (``connectors/api/providers.py``): its section missing from this worker's config; Facebook leads
#: without answers and no access token to read them, or a token the Graph API refuses; the Graph API
#: failing or too slow.
PROVIDER_UNAVAILABLE_REASONS: Final[Mapping[str, tuple[str, ...]]] = {
    "facebook": ("unconfigured", "token_missing", "token_refused", "graph_unavailable"),
    "typeform": ("unconfigured",),
}

#: A lead-cycle's first-contact SLA outcome: met (first contact by the deadline) or missed.
SLA_OUTCOMES: Final = ("met", "missed")


def sla_outcome(event_type: str, data: Mapping[str, object]) -> str | None:
    """The first-contact SLA outcome one ``lead.events`` record settles: ``met``, ``missed`` or ``None``.

    Each lead-cycle counts once, so SLA compliance is ``met / (met + missed)`` per lead, whether
    the lead was ever contacted or not: ``missed`` at the breach (``lead.sla_breached``, also for
    a lead nobody held: queued or offered), or at a late first contact when no breach came
    before it; ``met`` at a first contact by the deadline. A first contact after the breach
    (``data.sla_breached``) settles nothing: the breach counted the lead already, even when the
    call, synced late, happened in time. The one reading that /metrics
    (``leadflow_sla_outcomes_total``), ``leadflow report`` and the team windows share.
    """
    if event_type == "lead.sla_breached":
        return "missed"
    if event_type != "lead.contacted" or data.get("sla_breached"):
        return None
    return "met" if data.get("within_sla") else "missed"


def funnel_move(event_type: str, data: Mapping[str, object], cycle: int = 1) -> tuple[str, str] | None:
    """The funnel's ``(from, to)`` for one ``lead.events`` record, or ``None`` if it moves no stage.

    The one reading of the funnel that /metrics (the lead agent) and ``leadflow report`` (from
    ``lead.events``) share, so the two can never disagree. ``cycle`` is the record's ``cycle``:
    1 for a lead's first, more after a re-engagement.
    """
    if event_type == "lead.recycled":
        # A lost deal's lead routed again after crm.recycle_after starts a new cycle; its other
        # ``lead.recycled`` (back to nurture) is no stage move (``opportunity.lost`` counted that).
        return ("recycled", "reengaged") if data.get("to") == "routing" else None
    move = LIFECYCLE.get(event_type)
    if move is None:
        return None
    frm = "reengaged" if event_type in _GATE and cycle > 1 else move[0]
    return str(data.get("from") or frm), str(data.get("to") or move[1])


#: The ``source`` label of a lead whose source is not a configured one (labels stay bounded).
OTHER_SOURCE: Final = "other"


class TeamFigures:
    """What a team gauge reports, computed by the worker that owns the team."""

    __slots__ = ("queue_depth", "open_leads", "capacity", "reps_available", "oldest_queued_age_s", "total_capacity",
                 "free_slots", "reps_eligible")

    def __init__(self, *, queue_depth: int, open_leads: int, capacity: int, reps_available: int,
                 total_capacity: int, oldest_queued_age_s: float, free_slots: int = 0, reps_eligible: int = 0) -> None:
        self.queue_depth = queue_depth
        self.open_leads = open_leads
        #: The capacity of the available reps (their open leads not taken off).
        self.capacity = capacity
        self.reps_available = reps_available
        self.total_capacity = total_capacity
        self.oldest_queued_age_s = oldest_queued_age_s
        #: Leads the available reps can take now: capacity minus open leads, rep by rep
        #: (GET /v1/teams/{id} ``available_capacity``).
        self.free_slots = free_slots
        #: Reps who could take a lead now: present, on shift (working hours, no holiday), under
        #: capacity and caps. A lead's own needs (skills, language, territory) are not counted.
        self.reps_eligible = reps_eligible

    @property
    def utilization(self) -> float:
        """Open leads over the capacity of the whole roster (0 with no capacity at all)."""
        return self.open_leads / self.total_capacity if self.total_capacity else 0.0


class Metrics:
    """Every metric the worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        #: Sources allowed as a label value (configured spend sources, API key names); see ``source``.
        self.known_sources: frozenset[str] = frozenset()

        # --- capture
        self.leads_captured = Counter(
            "leadflow_leads_captured_total", "Leads accepted for processing, by source (the API key name, or kafka-feed) and channel.",
            ["source", "channel"], registry=r)
        self.leads_rejected = Counter(
            "leadflow_leads_rejected_total", "Inbound leads rejected, by channel and reason.",
            ["channel", "reason"], registry=r)
        self.leads_duplicate = Counter(
            "leadflow_leads_merged_total",
            "Captures of an already known person (the API answers duplicate): a new touch on an open lead, "
            "or a closed lead reopened for a new cycle (re-engaged).",
            registry=r)

        # --- routing and speed
        self.leads_assigned = Counter(
            "leadflow_leads_assigned_total", "Leads assigned to a rep, by team.", ["team"], registry=r)
        self.leads_queued = Counter(
            "leadflow_leads_queued_total", "Leads that had to wait in a team queue, by team.", ["team"], registry=r)
        self.routing_latency = Histogram(
            "leadflow_lead_routing_seconds", "Time from capture to assignment.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.notify_latency = Histogram(
            "leadflow_lead_notify_seconds", "Time from capture to the rep's webhook being delivered.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.speed_to_lead = Histogram(
            "leadflow_speed_to_lead_seconds", "Speed-to-lead: capture to the rep's first contact, by team.",
            ["team"], buckets=SPEED_BUCKETS, registry=r)
        self.system_delay = Histogram(
            "leadflow_speed_to_lead_system_seconds",
            "The system's part of speed-to-lead: capture to the rep's webhook delivered, by team.",
            # Sub-second to minutes, as notify_latency (the same span): SPEED_BUCKETS start at 5 s.
            ["team"], buckets=LATENCY_BUCKETS, registry=r)
        self.rep_delay = Histogram(
            "leadflow_speed_to_lead_rep_seconds",
            "The rep's part of speed-to-lead: webhook delivered to first contact, by team.",
            ["team"], buckets=SPEED_BUCKETS, registry=r)
        self.leads_contacted = Counter(
            "leadflow_leads_contacted_total", "First contacts, by team and whether they met the SLA (within_sla).",
            ["team", "within_sla"], registry=r)

        # --- SLA
        self.sla_breaches = Counter(
            "leadflow_sla_breaches_total", "Leads not contacted by their first-contact deadline, by team.",
            ["team"], registry=r)
        self.sla_escalations = Counter(
            "leadflow_sla_escalations_total",
            "SLA escalation steps taken, by team and step (action: remind, reassign, alert_manager, release_to_pool).",
            ["team", "action"], registry=r)
        self.sla_outcomes = Counter(
            "leadflow_sla_outcomes_total",
            "Lead-cycles whose first-contact SLA was settled, by team and outcome: met (contacted by the "
            "deadline) or missed (breached, or contacted late without a breach first); once per lead-cycle.",
            ["team", "outcome"], registry=r)
        self.sla_at_risk = Counter(
            "leadflow_sla_at_risk_total", "Queued leads estimated to miss their first-contact deadline, by team.",
            ["team"], registry=r)
        self.sla_overdue = Gauge(
            "leadflow_sla_overdue_leads",
            "Open leads past their first-contact deadline and still uncontacted, by team (owning worker only).",
            ["team"], registry=r)

        # --- capacity (reported by the worker that owns the team)
        self.team_queue_depth = Gauge(
            "leadflow_team_queue_depth", "Leads waiting in a team's queue (reported by the owning worker).",
            ["team"], registry=r)
        self.team_oldest_queued = Gauge(
            "leadflow_team_oldest_queued_age_seconds",
            "Age of the longest-waiting lead in a team's queue; 0 when empty (owning worker only).",
            ["team"], registry=r)
        self.team_open_leads = Gauge(
            "leadflow_team_open_leads", "Open leads held by a team's reps (reported by the owning worker).",
            ["team"], registry=r)
        self.team_capacity = Gauge(
            "leadflow_team_capacity", "Sum of the capacity of a team's available reps.", ["team"], registry=r)
        self.team_free_slots = Gauge(
            "leadflow_team_free_slots",
            "Leads a team's available reps can take now: each one's capacity minus their open leads "
            "(GET /v1/teams available_capacity; owning worker only).",
            ["team"], registry=r)
        self.team_reps_eligible = Gauge(
            "leadflow_team_reps_eligible",
            "Reps of a team who could take a lead now: available, inside working hours, not on holiday, under "
            "capacity and their daily and weekly caps (a lead's skills, language, territory aside; owning worker "
            "only).", ["team"], registry=r)
        self.team_reps_available = Gauge(
            "leadflow_team_reps_available", "Reps whose presence is available, by team (owning worker only).",
            ["team"], registry=r)
        self.team_utilization = Gauge(
            "leadflow_team_utilization_ratio",
            "Open leads over the capacity of the team's whole roster, 0..1 (owning worker only).",
            ["team"], registry=r)

        # --- funnel and marketing
        self.lifecycle = Counter(
            "leadflow_lifecycle_transitions_total",
            "Lifecycle stage moves (lead: a new person; reengaged: a known person's new cycle; mql, sql, "
            "opportunity, won, lost, nurture; from lost to won or won to lost: the CRM corrected a close; "
            "reopened, from won or lost: the CRM reopened a closed deal), "
            "by the lead's first-touch source.",
            ["source", "from", "to"], registry=r)
        self.won_revenue = Counter(
            "leadflow_won_revenue_total",
            "Amounts of won opportunities as the CRM reports them (in the configured marketing currency), "
            "by the lead's first-touch source.",
            ["source"], registry=r)
        self.source_spend = Gauge(
            "leadflow_source_monthly_spend",
            "Configured monthly spend of a lead source, in the configured currency (every worker reports it).",
            ["source", "currency"], registry=r)

        # --- delivery
        self.webhook_attempts = Counter(
            "leadflow_webhook_deliveries_total",
            "Webhook delivery attempts by event type and outcome: delivered, failed (retried later), "
            "deferred (endpoint's circuit open), dead_lettered.",
            ["event_type", "outcome"], registry=r)
        self.webhook_duration = Histogram(
            "leadflow_webhook_delivery_seconds", "Time spent delivering one webhook, retries included.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.webhook_requests = Counter(
            "leadflow_webhook_requests_total", "HTTP requests sent to webhook endpoints (attempts, retries included).",
            ["event_type"], registry=r)
        self.webhook_retries_pending = Gauge(
            "leadflow_webhook_retries_pending",
            "Webhook messages waiting for their next delivery attempt, in the partitions this worker owns.",
            registry=r)
        self.webhook_dead_letters = Counter(
            "leadflow_webhook_dead_letters_total", "Webhook messages given up on (dead-lettered), by event type.",
            ["event_type"], registry=r)
        self.crm_calls = Counter(
            "leadflow_crm_calls_total", "Calls to the CRM by operation and outcome (ok, transient, permanent).",
            ["operation", "outcome"], registry=r)
        self.crm_duration = Histogram(
            "leadflow_crm_call_seconds", "Time spent on one CRM call.", buckets=LATENCY_BUCKETS, registry=r)
        self.crm_retries_pending = Gauge(
            "leadflow_crm_retries_pending",
            "Opportunity upserts waiting for their next CRM attempt, in the partitions this worker owns.",
            registry=r)
        self.messages_too_large = Counter(
            "leadflow_messages_too_large_total",
            "Messages Kafka refused for their size (producer or topic limit) and publish left out so that "
            "their partition goes on, by channel; each is logged as an ERROR with its kind and key.",
            ["channel"], registry=r)
        self.crm_dead_letters = Counter(
            "leadflow_crm_dead_letters_total",
            "Opportunities the CRM never took (crm.outbox.dead), by reason: refused (a permanent error) "
            "or gave_up (the retry schedule ran out).",
            ["reason"], registry=r)

        # --- engine health
        self.http_requests = Counter(
            "leadflow_http_requests_total", "API requests by route and status code.",
            ["route", "status"], registry=r)
        self.auth_failures = Counter(
            "leadflow_api_auth_failures_total",
            "API requests refused at authentication, by reason: missing_key or invalid_key (401), scope_refused "
            "(403), blocked (429: the client address is over its failed authentications a minute).",
            ["reason"], registry=r)
        self.provider_unavailable = Counter(
            "leadflow_provider_webhooks_unavailable_total",
            "Lead provider webhooks answered 503 (the provider redelivers them), by provider and reason: "
            "unconfigured, token_missing, token_refused, graph_unavailable.",
            ["provider", "reason"], registry=r)
        self.redis_degraded = Counter(
            "leadflow_redis_degraded_total", "Operations that went on without Redis, by operation.",
            ["operation"], registry=r)
        self.redis_degraded_mode = Gauge(
            "leadflow_redis_degraded_mode", "1 while Redis does not answer and the worker runs without it.",
            registry=r)
        self.enrichment_lookups = Counter(
            "leadflow_enrichment_lookups_total",
            "HTTP enrichment lookups by provider and outcome (hit, miss, timeout, error, degraded).",
            ["provider", "outcome"], registry=r)
        self.commands_processed = Counter(
            "leadflow_commands_processed_total", "Commands applied by each entity agent.",
            ["agent", "command"], registry=r)
        self.commands_replayed = Counter(
            "leadflow_commands_replayed_total",
            "Commands skipped because the agent's table already applied them (read again after a crash).",
            ["agent"], registry=r)
        self.reps_retired = Counter(
            "leadflow_reps_retired_total",
            "Reps retired, by their team and by whom: config (the YAML a worker started with no longer "
            "names them) or api (DELETE /v1/reps).",
            ["team", "by"], registry=r)
        self.command_failures = Counter(
            "leadflow_command_failures_total", "Commands an agent could not apply (dead-lettered).",
            ["agent"], registry=r)
        self.consumer_lag = Gauge(
            "leadflow_consumer_lag_messages",
            "Messages not yet consumed on this worker's assigned partitions, by topic.",
            ["topic"], registry=r)
        self.partitions_assigned = Gauge(
            "leadflow_partitions_assigned", "Topic partitions assigned to this worker.", registry=r)
        self.event_loop_lag = Gauge(
            "leadflow_event_loop_lag_seconds", "How late the event loop ran a timer at the last probe.",
            registry=r)
        self.kafka_writes_refused = Gauge(
            "leadflow_kafka_writes_refused_seconds",
            "Seconds since Kafka stopped taking this worker's writes (0 while it takes them): captures and "
            "API commands answer 503 and /readyz is 503 meanwhile.", registry=r)
        self.rebalance_seconds = Gauge(
            "leadflow_rebalance_seconds",
            "How long this worker's current rebalance has lasted, from its start until the tables are settled "
            "again (0 when settled): past 60 s /readyz answers 503.", registry=r)
        self.recovery_in_progress = Gauge(
            "leadflow_table_recovery_in_progress", "1 while this worker recovers tables from their changelogs.",
            registry=r)
        self.recovery_duration = Gauge(
            "leadflow_table_recovery_seconds",
            "Duration of the current table recovery, or of the last one when none runs.", registry=r)
        for agent in AGENTS:
            self.command_failures.labels(agent)
        for event_type in WEBHOOK_EVENT_TYPES:
            self.webhook_dead_letters.labels(event_type)
        for reason in CRM_DEAD_LETTER_REASONS:
            self.crm_dead_letters.labels(reason)
        for channel in PUBLISHED_CHANNELS:
            self.messages_too_large.labels(channel)
        for reason in AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason)
        for provider, reasons in PROVIDER_UNAVAILABLE_REASONS.items():
            for reason in reasons:
                self.provider_unavailable.labels(provider, reason)
        # The client's standard process metrics (Linux): process_start_time_seconds tells
        # ``leadflow report --metrics`` what span the counters cover; memory, CPU and fds are for SRE.
        ProcessCollector(registry=r)
        self.config_info = Gauge(
            "leadflow_config_info",
            "Always 1, labelled with a digest of this worker's config: every worker of a deployment "
            "must show the same one.", ["digest"], registry=r)
        self.lead_id_key_info = Gauge(
            "leadflow_lead_id_key_info",
            "Always 1, labelled with a fingerprint of LEADFLOW_LEAD_ID_KEY (none: unset): workers with "
            "different keys give one person two lead ids.", ["fingerprint"], registry=r)

    # --- helpers that keep label values bounded and gauges consistent

    def configure_sources(self, spend: Mapping[str, tuple[float, str]], extra: Iterable[str] = ()) -> None:
        """Set the spend gauges and the sources allowed as a label value (others become ``other``)."""
        self.known_sources = frozenset(spend) | frozenset(extra)
        for source, (amount, currency) in spend.items():
            self.source_spend.labels(source, currency).set(amount)
            # At 0 from the start: a source with spend and no win yet shows a return of 0, and
            # increase() sees a first win as an increase rather than as the series' first value.
            self.won_revenue.labels(source)

    def configure_teams(self, teams: Iterable[str]) -> None:
        """Create the configured teams' routing and SLA counters at 0, so ``increase()`` sees their
        first breach, contact or assignment (a team the config does not name starts at its first count)."""
        for team in teams:
            for counter in (self.leads_assigned, self.leads_queued, self.sla_breaches, self.sla_at_risk):
                counter.labels(team)
            for within_sla in ("true", "false"):
                self.leads_contacted.labels(team, within_sla)
            for outcome in SLA_OUTCOMES:
                self.sla_outcomes.labels(team, outcome)
            for action in ESCALATION_ACTIONS:
                self.sla_escalations.labels(team, action)

    def source(self, source: str | None) -> str:
        """``source`` as a label value: a configured source, else ``other`` (never free text)."""
        return source if source and source in self.known_sources else OTHER_SOURCE

    def lifecycle_move(self, event_type: str, data: Mapping[str, object], source: str | None,
                       cycle: int = 1) -> bool:
        """Count a lifecycle transition if the event is one (``funnel_move``); returns whether it counted.

        ``source`` is the lead's first-touch source, whatever the event's data says.
        """
        move = funnel_move(event_type, data, cycle)
        if move is None:
            return False
        self.lifecycle.labels(self.source(source), *move).inc()
        return True

    def count_sla_outcome(self, event_type: str, data: Mapping[str, object]) -> str | None:
        """Count the SLA outcome a ``lead.events`` record settles (``sla_outcome``); returns it."""
        outcome = sla_outcome(event_type, data)
        if outcome is not None:
            self.sla_outcomes.labels(str(data.get("team_id") or "unknown"), outcome).inc()
        return outcome

    def won(self, amount: object, source: str | None) -> None:
        """Add a won opportunity's amount (none or negative: nothing) to its first-touch source's revenue."""
        if isinstance(amount, (int, float)) and not isinstance(amount, bool) and 0 < amount < math.inf:
            self.won_revenue.labels(self.source(source)).inc(float(amount))

    def report_teams(self, figures: Mapping[str, TeamFigures]) -> None:
        """Replace every team gauge with ``figures``: the teams this worker owns right now.

        Teams that moved to another worker disappear from this worker's scrape, so a sum over
        workers never counts a team twice.
        """
        gauges = (self.team_queue_depth, self.team_oldest_queued, self.team_open_leads, self.team_capacity,
                  self.team_free_slots, self.team_reps_available, self.team_reps_eligible, self.team_utilization)
        for gauge in gauges:
            gauge.clear()
        for team, f in figures.items():
            self.report_team(team, f)

    def report_team(self, team: str, f: TeamFigures) -> None:
        self.team_queue_depth.labels(team).set(f.queue_depth)
        self.team_oldest_queued.labels(team).set(f.oldest_queued_age_s)
        self.team_open_leads.labels(team).set(f.open_leads)
        self.team_capacity.labels(team).set(f.capacity)
        self.team_free_slots.labels(team).set(f.free_slots)
        self.team_reps_available.labels(team).set(f.reps_available)
        self.team_reps_eligible.labels(team).set(f.reps_eligible)
        self.team_utilization.labels(team).set(f.utilization)

    def report_overdue(self, by_team: Mapping[str, int]) -> None:
        """Replace the overdue gauge with the counts of the lead partitions this worker owns."""
        self.sla_overdue.clear()
        for team, count in by_team.items():
            self.sla_overdue.labels(team).set(count)

    def report_lag(self, by_topic: Mapping[str, int]) -> None:
        self.consumer_lag.clear()
        for topic, lag in by_topic.items():
            self.consumer_lag.labels(topic).set(lag)

"""leadflow's Prometheus metrics, declared once; base units, low-cardinality labels only.

The registry is injected so tests get a fresh one. Never label by lead id, e-mail or phone.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LATENCY_BUCKETS", "Metrics"]

#: Lead latency buckets in seconds. 60 s is an exact boundary, so "share of leads in front of a
#: rep within 60 s" is ``bucket{le="60"} / count`` without interpolation.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """Every metric the worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.leads_captured = Counter(
            "leadflow_leads_captured_total", "Leads accepted for processing, by source (the API key name, or kafka-feed) and channel.",
            ["source", "channel"], registry=r)
        self.leads_rejected = Counter(
            "leadflow_leads_rejected_total", "Inbound leads rejected, by channel and reason.",
            ["channel", "reason"], registry=r)
        self.leads_duplicate = Counter(
            "leadflow_leads_merged_total", "Captures of an already known person merged as a new touch.",
            registry=r)
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
        self.webhook_attempts = Counter(
            "leadflow_webhook_deliveries_total", "Webhook deliveries by event type and outcome.",
            ["event_type", "outcome"], registry=r)
        self.webhook_duration = Histogram(
            "leadflow_webhook_delivery_seconds", "Time spent delivering one webhook, retries included.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.http_requests = Counter(
            "leadflow_http_requests_total", "API requests by route and status code.",
            ["route", "status"], registry=r)
        self.redis_degraded = Counter(
            "leadflow_redis_degraded_total", "Operations that went on without Redis, by operation.",
            ["operation"], registry=r)
        self.commands_processed = Counter(
            "leadflow_commands_processed_total", "Commands applied by each entity agent.",
            ["agent", "command"], registry=r)
        self.command_failures = Counter(
            "leadflow_command_failures_total", "Commands an agent could not apply (dead-lettered).",
            ["agent"], registry=r)
        self.sla_breaches = Counter(
            "leadflow_sla_breaches_total", "Leads not contacted by their first-contact deadline, by team.",
            ["team"], registry=r)
        self.sla_escalations = Counter(
            "leadflow_sla_escalations_total", "SLA escalation steps taken, by team and action.",
            ["team", "action"], registry=r)
        self.sla_at_risk = Counter(
            "leadflow_sla_at_risk_total", "Queued leads estimated to miss their first-contact deadline, by team.",
            ["team"], registry=r)
        self.team_queue_depth = Gauge(
            "leadflow_team_queue_depth", "Leads waiting in a team's queue (reported by the owning worker).",
            ["team"], registry=r)
        self.team_open_leads = Gauge(
            "leadflow_team_open_leads", "Open leads held by a team's reps (reported by the owning worker).",
            ["team"], registry=r)
        self.team_capacity = Gauge(
            "leadflow_team_capacity", "Sum of the capacity of a team's available reps.", ["team"], registry=r)

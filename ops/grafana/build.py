"""Generate the three Grafana dashboards in ``dashboards/`` from the compact panel lists below.

    python -m ops.grafana.build          # rewrite ops/grafana/dashboards/*.json
    python -m ops.grafana.build --check  # exit 1 if the committed files are stale (writes nothing)

The JSON files are committed (Grafana provisions them as they are); tests/ops/test_prometheus_stack_files.py
fails when they differ from what this module generates, so edit here and re-run. Every
expression's metric is declared in ``ops/metrics.py``; the integration test evaluates every
expression against a real Prometheus scraping a real worker.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["DATASOURCE_UID", "DASHBOARDS", "Panel", "render", "write_all", "stale", "main"]

DATASOURCE_UID: Final = "leadflow-prometheus"
_DS: Final = {"type": "prometheus", "uid": DATASOURCE_UID}
OUT: Final = Path(__file__).resolve().parent / "dashboards"


@dataclass(frozen=True)
class Panel:
    title: str
    #: ``(expr, legend)`` pairs: one query each.
    queries: tuple[tuple[str, str], ...]
    kind: str = "timeseries"  # timeseries | stat | bargauge | table
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    #: Stat thresholds: ``((value, color), ...)`` above a green base.
    thresholds: tuple[tuple[float, str], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    tags: tuple[str, ...]
    variables: tuple[tuple[str, str, str], ...]  # (name, label, query)
    rows: tuple[tuple[str, tuple[Panel, ...]], ...]


def _rate(metric: str, by: str, selector: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{selector}[$__rate_interval]))"


def _quantile(q: float, metric: str, by: str = "le", selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{selector}[$__rate_interval])))"


_TEAM = '{team=~"$team"}'
_SRC = 'source=~"$source"'

SLA = Dashboard(
    uid="leadflow-sla",
    title="leadflow — SLA and speed-to-lead",
    description="For sales ops: how fast leads reach a rep and get contacted, SLA compliance, queues and capacity.",
    tags=("leadflow", "ops", "sla"),
    # Every team the workers own reports its queue depth (0 when empty), whether it ever assigns,
    # queues or offers: a counter such as leads_assigned_total leaves out teams that only queue.
    variables=(("team", "Team", "label_values(leadflow_team_queue_depth, team)"),),
    rows=(
        ("Right now", (
            Panel("Routed to a rep within 60 s", ((
                'sum(increase(leadflow_lead_routing_seconds_bucket{le="60.0"}[$__range]))'
                " / sum(increase(leadflow_lead_routing_seconds_count[$__range]))", "within 60 s"),),
                kind="stat", unit="percentunit", width=6, height=5,
                description="Share of leads assigned within 60 s of capture (60 s is an exact histogram bucket)."),
            Panel("Rep notified within 60 s", ((
                'sum(increase(leadflow_lead_notify_seconds_bucket{le="60.0"}[$__range]))'
                " / sum(increase(leadflow_lead_notify_seconds_count[$__range]))", "within 60 s"),),
                kind="stat", unit="percentunit", width=6, height=5,
                description="Share of leads whose assignment webhook reached the rep within 60 s of capture."),
            Panel("SLA compliance (leads contacted in time)", ((
                '(sum(increase(leadflow_sla_outcomes_total{outcome="met",team=~"$team"}[$__range])) or vector(0))'
                ' / sum(increase(leadflow_sla_outcomes_total{team=~"$team"}[$__range]))', "SLA met"),),
                kind="stat", unit="percentunit", width=6, height=5,
                description="Leads whose first contact was by the deadline, over every lead whose SLA was settled: "
                            "met, or missed (breached, whether anyone called later or not; or called late). "
                            "Each lead counts once per cycle."),
            Panel("Leads overdue now", (('sum(leadflow_sla_overdue_leads{team=~"$team"}) or vector(0)', "overdue"),),
                  kind="stat", width=6, height=5, thresholds=((1, "orange"), (10, "red")),
                  description="Open leads past their first-contact deadline that nobody has contacted yet."),
        )),
        ("Speed", (
            Panel("Capture → assigned (routing latency)", (
                (_quantile(0.5, "leadflow_lead_routing_seconds"), "p50"),
                (_quantile(0.9, "leadflow_lead_routing_seconds"), "p90"),
                (_quantile(0.99, "leadflow_lead_routing_seconds"), "p99"),
            ), unit="s"),
            Panel("Capture → rep notified (webhook delivered)", (
                (_quantile(0.5, "leadflow_lead_notify_seconds"), "p50"),
                (_quantile(0.99, "leadflow_lead_notify_seconds"), "p99"),
            ), unit="s"),
            Panel("Speed-to-lead (capture → first contact), median by team", (
                (_quantile(0.5, "leadflow_speed_to_lead_seconds", "le, team", _TEAM), "{{team}}"),
            ), unit="s"),
            Panel("Speed-to-lead split: system delay vs rep delay (median)", (
                (_quantile(0.5, "leadflow_speed_to_lead_system_seconds", "le", _TEAM), "system (capture → notified)"),
                (_quantile(0.5, "leadflow_speed_to_lead_rep_seconds", "le", _TEAM), "rep (notified → contact)"),
            ), unit="s"),
        )),
        ("SLA", (
            Panel("SLA breaches and breach-risk warnings by team", (
                (_rate("leadflow_sla_breaches_total", "team", _TEAM), "breach {{team}}"),
                (_rate("leadflow_sla_at_risk_total", "team", _TEAM), "at risk {{team}}"),
            ), unit="reqps"),
            Panel("Escalation steps by team and step", (
                (_rate("leadflow_sla_escalations_total", "team, action", _TEAM), "{{team}} {{action}}"),
            ), unit="reqps"),
            Panel("Overdue (uncontacted past deadline) by team", (
                ('sum by (team) (leadflow_sla_overdue_leads{team=~"$team"})', "{{team}}"),
            )),
            Panel("SLA met or missed by team (once per lead)", (
                (_rate("leadflow_sla_outcomes_total", "team, outcome", _TEAM), "{{team}} {{outcome}}"),
            ), unit="reqps"),
            Panel("First contacts by team, in SLA or late", (
                (_rate("leadflow_leads_contacted_total", "team, within_sla", _TEAM), "{{team}} in SLA={{within_sla}}"),
            ), unit="reqps"),
        )),
        ("Capacity", (
            Panel("Queue depth by team", (('sum by (team) (leadflow_team_queue_depth{team=~"$team"})', "{{team}}"),)),
            Panel("Oldest queued lead by team", (
                ('max by (team) (leadflow_team_oldest_queued_age_seconds{team=~"$team"})', "{{team}}"),), unit="s"),
            Panel("Reps available vs eligible now by team", (
                ('sum by (team) (leadflow_team_reps_available{team=~"$team"})', "available {{team}}"),
                ('sum by (team) (leadflow_team_reps_eligible{team=~"$team"})', "eligible now {{team}}"),
            ), description="Available: presence only. Eligible now: also inside working hours, not on holiday, "
                           "under capacity and caps; who could take a lead this minute."),
            Panel("Utilization (open leads / roster capacity) by team", (
                ('max by (team) (leadflow_team_utilization_ratio{team=~"$team"})', "{{team}}"),), unit="percentunit"),
            Panel("Assigned vs queued", (
                (_rate("leadflow_leads_assigned_total", "team", _TEAM), "assigned {{team}}"),
                (_rate("leadflow_leads_queued_total", "team", _TEAM), "queued {{team}}"),
            ), unit="reqps"),
            Panel("Open leads vs free slots", (
                ('sum by (team) (leadflow_team_open_leads{team=~"$team"})', "open {{team}}"),
                ('sum by (team) (leadflow_team_free_slots{team=~"$team"})', "free slots {{team}}"),
            ), description="Free slots: leads the team's available reps can take now (capacity minus open leads, "
                           "rep by rep), as available_capacity in GET /v1/teams/{id}."),
        )),
    ),
)


def _stage(to: str, window: str = "$__range", frm: str | None = None) -> str:
    """Stage moves to ``to`` (from ``frm`` only, when given) by source. ``lead`` counts new people;
    a known person's new cycle is ``reengaged`` (docs/OBSERVABILITY.md, "What the funnel counts")."""
    since = f'from="{frm}",' if frm else ""
    return f'sum by (source) (increase(leadflow_lifecycle_transitions_total{{{since}to="{to}",{_SRC}}}[{window}]))'


def _closed(close: str) -> str:
    """Deals closed ``won`` or ``lost`` by source in the range, net of the ones the CRM took back:
    a transition out of that close (``from="won"``: corrected to lost, or reopened). ``or … * 0``:
    a source without any such transition keeps its closes (``a - b`` alone drops it). Never
    below 0 (a close before the range taken back inside it)."""
    other = "lost" if close == "won" else "won"
    taken_back = (f'sum by (source) (increase(leadflow_lifecycle_transitions_total{{from="{close}",'
                  f'to=~"{other}|reopened",{_SRC}}}[$__range]))')
    return f"clamp_min({_stage(close)} - ({taken_back} or {_stage(close)} * 0), 0)"


_SPEND = f"max by (source) (leadflow_source_monthly_spend{{{_SRC}}})"
_REVENUE_30D = f"sum by (source) (increase(leadflow_won_revenue_total{{{_SRC}}}[30d]))"


FUNNEL = Dashboard(
    uid="leadflow-funnel",
    title="leadflow — funnel and source ROI",
    description="For marketing leadership: volume by source, lead → MQL → SQL → opportunity → won conversion, "
                "cost per qualified lead from the configured monthly spend, won revenue and ROI by source. "
                "Sources are first touches; a lead is a new person, a known person's new cycle is re-engaged.",
    tags=("leadflow", "marketing", "funnel"),
    variables=(("source", "Source", "label_values(leadflow_lifecycle_transitions_total, source)"),),
    rows=(
        ("Volume", (
            Panel("Funnel in the selected range", (
                (f'sum by (to) (increase(leadflow_lifecycle_transitions_total{{{_SRC}}}[$__range]))', "{{to}}"),
            ), kind="bargauge", width=12),
            Panel("New leads and re-engaged people by source", (
                (f'sum by (source) (rate(leadflow_lifecycle_transitions_total{{to="lead",{_SRC}}}[$__rate_interval]))',
                 "new {{source}}"),
                (f'sum by (source) (rate(leadflow_lifecycle_transitions_total{{to="reengaged",{_SRC}}}'
                 '[$__rate_interval]))', "re-engaged {{source}}"),
            ), unit="reqps",
                description="New: a person's first capture. Re-engaged: a known person starting a new cycle "
                            "(a new touch after nurture or a disposition, or a lost deal routed again), "
                            "under the source of their first touch."),
            Panel("Captured by channel (API key / feed and channel)", (
                (_rate("leadflow_leads_captured_total", "source, channel"), "{{source}} {{channel}}"),), unit="reqps"),
            Panel("Rejected by channel and reason; duplicates merged", (
                (_rate("leadflow_leads_rejected_total", "channel, reason"), "rejected {{channel}} {{reason}}"),
                ("sum(rate(leadflow_leads_merged_total[$__rate_interval]))", "known people back (merged)"),
            ), unit="reqps"),
        )),
        ("Conversion by source", (
            Panel("Lead → MQL", (
                (f"{_stage('mql', frm='lead')} / {_stage('lead')}", "{{source}}"),
                (f"{_stage('mql', frm='reengaged')} / {_stage('reengaged')}", "re-engaged {{source}}"),
            ), unit="percentunit", width=6,
                description="MQLs of new leads over new leads; re-engaged people's MQLs over re-engaged people."),
            Panel("MQL → SQL", ((f"{_stage('sql')} / {_stage('mql')}", "{{source}}"),), unit="percentunit", width=6),
            Panel("SQL → opportunity", ((f"{_stage('opportunity')} / {_stage('sql')}", "{{source}}"),),
                  unit="percentunit", width=6),
            Panel("Win rate (won / closed)", ((f"{_closed('won')} / ({_closed('won')} + {_closed('lost')})",
                                               "{{source}}"),),
                  unit="percentunit", width=6,
                  description="Deals won over deals closed, net of the closes the CRM took back: a close corrected "
                              "the other way (lost then won counts one won, no lost) or reopened (counts until it "
                              "closes again)."),
        )),
        ("Cost (monthly spend over the last 30 days' volume)", (
            Panel("Monthly spend by source", (
                ('max by (source, currency) (leadflow_source_monthly_spend{source=~"$source"})', "{{source}} {{currency}}"),
            ), kind="table", width=6),
            Panel("Cost per lead", ((f'{_SPEND} / {_stage("lead", "30d")}', "{{source}}"),), kind="bargauge", width=6,
                  description="A month's spend over the new people of the last 30 days (re-engaged people excluded)."),
            Panel("Cost per MQL", ((f'{_SPEND} / {_stage("mql", "30d")}', "{{source}}"),), kind="bargauge", width=6,
                  description="A month's spend over the MQLs of the last 30 days, re-engaged cycles included."),
            Panel("Cost per SQL", ((f'{_SPEND} / {_stage("sql", "30d")}', "{{source}}"),), kind="bargauge", width=6),
        )),
        ("Return (won revenue over the last 30 days against a month's spend)", (
            Panel("Won revenue by source", ((_REVENUE_30D, "{{source}}"),), kind="bargauge", width=12,
                  description="Amounts of the opportunities won in the last 30 days, in the configured currency, "
                              "by the first touch's source."),
            Panel("ROI by source ((won revenue − spend) / spend)", ((f"({_REVENUE_30D} - {_SPEND}) / {_SPEND}",
                                                                    "{{source}}"),),
                  kind="bargauge", unit="percentunit", width=12,
                  description="-100%: nothing won yet; 0: break-even. Deals close weeks after their leads came "
                              "in: a running indicator, not a cohort's lifetime value."),
        )),
    ),
)

HEALTH = Dashboard(
    uid="leadflow-health",
    title="leadflow — pipeline health",
    description="For SRE: workers, consumer lag, event loop, table recovery, Redis, webhook and CRM delivery.",
    tags=("leadflow", "sre"),
    variables=(),
    rows=(
        ("Workers", (
            Panel("Workers up", (('sum(up{job="leadflow"})', "up"),), kind="stat", width=4, height=5),
            Panel("Redis degraded (workers without Redis)", (("sum(leadflow_redis_degraded_mode)", "degraded"),),
                  kind="stat", width=4, height=5, thresholds=((1, "red"),)),
            Panel("Workers recovering tables", (("sum(leadflow_table_recovery_in_progress)", "recovering"),),
                  kind="stat", width=4, height=5, thresholds=((1, "orange"),)),
            Panel("Dead-lettered webhooks (range)", (
                ("sum(increase(leadflow_webhook_dead_letters_total[$__range])) or vector(0)", "dead letters"),),
                kind="stat", width=4, height=5, thresholds=((1, "red"),)),
            Panel("Webhook retries pending", (("sum(leadflow_webhook_retries_pending)", "pending"),),
                  kind="stat", width=4, height=5, thresholds=((10, "orange"),)),
            Panel("Partitions per worker", (("sum by (instance) (leadflow_partitions_assigned)", "{{instance}}"),),
                  kind="stat", width=4, height=5),
        )),
        ("Stream processing", (
            Panel("Consumer lag by topic", (("sum by (topic) (leadflow_consumer_lag_messages)", "{{topic}}"),)),
            Panel("Event-loop lag by worker", (("max by (instance) (leadflow_event_loop_lag_seconds)", "{{instance}}"),),
                  unit="s"),
            Panel("Commands processed by agent", (
                (_rate("leadflow_commands_processed_total", "agent"), "{{agent}}"),
                (_rate("leadflow_command_failures_total", "agent"), "failed {{agent}}"),
                (_rate("leadflow_commands_replayed_total", "agent"), "replayed {{agent}} (skipped)"),
            ), unit="reqps"),
            Panel("Table recovery duration by worker", (
                ("max by (instance) (leadflow_table_recovery_seconds)", "{{instance}}"),), unit="s", width=6,
                description="How long the current table recovery has run, or the last one took."),
            Panel("Recovering tables now, by worker", (
                ("max by (instance) (leadflow_table_recovery_in_progress)", "{{instance}}"),), width=6,
                description="1 while the worker recovers its tables from the changelogs (not ready), else 0."),
        )),
        ("Delivery", (
            Panel("Webhook deliveries by outcome", (
                (_rate("leadflow_webhook_deliveries_total", "event_type, outcome"), "{{event_type}} {{outcome}}"),
            ), unit="reqps"),
            Panel("Webhook failure ratio", ((
                '(sum(rate(leadflow_webhook_deliveries_total{outcome="failed"}[$__rate_interval])) or vector(0))'
                ' / sum(rate(leadflow_webhook_deliveries_total{outcome=~"delivered|failed"}[$__rate_interval]))', "failed"),),
                unit="percentunit"),
            Panel("Webhook delivery time (retries included)", (
                (_quantile(0.5, "leadflow_webhook_delivery_seconds"), "p50"),
                (_quantile(0.99, "leadflow_webhook_delivery_seconds"), "p99"),
            ), unit="s"),
            Panel("HTTP requests per webhook delivery attempt", ((
                "sum(rate(leadflow_webhook_requests_total[$__rate_interval])) / "
                'sum(rate(leadflow_webhook_deliveries_total{outcome=~"delivered|failed"}[$__rate_interval]))',
                "HTTP requests per delivery attempt"),), width=6,
                description="A ratio: 1 when every attempt is one request."),
            Panel("Webhook dead letters by event type", (
                (_rate("leadflow_webhook_dead_letters_total", "event_type"), "{{event_type}}"),), unit="reqps", width=6),
            Panel("CRM calls by operation and outcome", (
                (_rate("leadflow_crm_calls_total", "operation, outcome"), "{{operation}} {{outcome}}"),
            ), unit="reqps", width=6),
            Panel("CRM call time", (
                (_quantile(0.5, "leadflow_crm_call_seconds"), "p50"),
                (_quantile(0.99, "leadflow_crm_call_seconds"), "p99"),
            ), unit="s", width=6),
            Panel("CRM upserts waiting to retry", (("sum(leadflow_crm_retries_pending)", "pending"),), width=6),
            Panel("CRM dead letters by reason", (
                (_rate("leadflow_crm_dead_letters_total", "reason"), "{{reason}}"),), unit="reqps", width=6),
            Panel("API requests by status; Redis fallbacks", (
                (_rate("leadflow_http_requests_total", "status"), "HTTP {{status}}"),
                (_rate("leadflow_redis_degraded_total", "operation"), "without Redis: {{operation}}"),
            ), unit="reqps"),
            Panel("API authentications refused by reason", (
                (_rate("leadflow_api_auth_failures_total", "reason"), "{{reason}}"),), unit="reqps", width=6,
                description="missing_key and invalid_key (401), scope_refused (403), blocked (429: a client address "
                            "over 30 failed authentications a minute; LeadflowAuthFailuresBlocked)."),
            Panel("Provider webhooks answered 503", (
                (_rate("leadflow_provider_webhooks_unavailable_total", "provider, reason"), "{{provider}} {{reason}}"),),
                unit="reqps", width=6,
                description="Lead webhooks refused so that the provider redelivers them: no lead of that provider "
                            "gets in meanwhile (LeadflowProviderWebhooksUnavailable)."),
        )),
    ),
)

DASHBOARDS: Final = {"sla.json": SLA, "funnel.json": FUNNEL, "health.json": HEALTH}


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in panel.thresholds]
    out: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": _DS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": panel.options or ({"reduceOptions": {"calcs": ["lastNotNull"]}} if panel.kind != "timeseries"
                                     else {"legend": {"displayMode": "list", "placement": "bottom"}}),
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": _DS, "expr": expr, "legendFormat": legend,
             **({"instant": True, "format": "table"} if panel.kind == "table" else {})}
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }
    return out


def render(d: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y, pid = 0, 1
    for title, row in d.rows:
        panels.append({"id": pid, "type": "row", "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y, x, line = pid + 1, y + 1, 0, 0
        for panel in row:
            if x + panel.width > 24:
                x, y = 0, y + line
                line = 0
            panels.append(_panel(panel, pid, x, y))
            pid, x, line = pid + 1, x + panel.width, max(line, panel.height)
        y += line
    variables = [{"name": name, "label": label, "type": "query", "datasource": _DS,
                  "query": {"query": query, "refId": "var"}, "definition": query, "refresh": 2,
                  "includeAll": True, "multi": True, "allValue": ".*",
                  "current": {"text": "All", "value": "$__all"}} for name, label, query in d.variables]
    return {
        "uid": d.uid, "title": d.title, "description": d.description, "tags": list(d.tags),
        "timezone": "browser", "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1,
        "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables}, "annotations": {"list": []}, "links": [], "panels": panels,
    }


def dump(d: Dashboard) -> str:
    return json.dumps(render(d), indent=2, ensure_ascii=False) + "\n"


def write_all(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, d in DASHBOARDS.items():
        path = out / name
        path.write_text(dump(d), encoding="utf-8")
        written.append(path)
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.grafana.build",
        description="Generate the Grafana dashboards (" + ", ".join(DASHBOARDS) + ") from the panel "
                    "lists in ops/grafana/build.py and write them as JSON. The JSON files are committed and "
                    "provisioned as they are; a test fails when they differ from what this generates, so "
                    "edit build.py, run this, and commit both.",
        epilog="examples:\n"
               "  python -m ops.grafana.build               rewrite ops/grafana/dashboards/*.json\n"
               "  python -m ops.grafana.build --check       exit 1 if a committed dashboard is stale\n"
               "  python -m ops.grafana.build --out /tmp/d  write them elsewhere",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR",
                        help="the folder to write the dashboards to (default: ops/grafana/dashboards)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; list the dashboards in --out that differ from what would be "
                             "generated, and exit 1 if any does")
    return parser


def stale(out: Path = OUT) -> list[Path]:
    """The dashboards in ``out`` that are missing or differ from what ``write_all`` would write."""
    found = []
    for name, d in DASHBOARDS.items():
        path = out / name
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != dump(d):
            found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards (or, with ``--check``, only compare them); argparse handles ``--help``."""
    args = _parser().parse_args(argv)
    if args.check:
        outdated = stale(args.out)
        for path in outdated:
            print(f"{path}: stale (run `python -m ops.grafana.build` and commit the result)", file=sys.stderr)
        return 1 if outdated else 0
    for path in write_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

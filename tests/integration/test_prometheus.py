"""A real Prometheus (Debian's binary) scrapes a real worker that has processed leads; every
PromQL expression of the dashboards and the alert rules, read from the files, returns data;
``leadflow report`` then tells the same story from ``lead.events``.

The scenario drives the states the expressions need: a lead contacted at once (speed-to-lead),
one nobody calls (breach, reminder, overdue), one that waits behind a full rep long enough to be
flagged at risk (queue depth, oldest queued age), one whose rep's endpoint refuses the webhook
(failure, dead letter) and that comes back through another source once disqualified (a
re-engagement, never a second lead), one that qualifies and is won (SQL, opportunity, won
revenue, ROI), a duplicate and an invalid lead. The few expressions this scenario
cannot feed are listed in ``NEEDS_OTHER_STATE`` with the reason; for those the test still
checks that Prometheus parses them and that the worker declares every metric they read.
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from standardwebhooks import Webhook

from leadflow.cli import main as cli_main
from ops.prometheus import RULES, find_tool
from ops.prometheus.expressions import (
    Expression,
    alert_expressions,
    dashboard_expressions,
    data_parts,
    metric_names,
    substitute,
    variable_queries,
    without_fallbacks,
)
from ops.prometheus.server import LocalPrometheus
from ops.report import from_kafka
from tests.integration.harness import Receiver, SECRET, Worker, WorkerSpec, eventually


#: Metrics this scenario cannot move, and why. An expression reading one of them may come back
#: empty; it must still parse, and the worker must declare the metric.
NEEDS_OTHER_STATE = {
    "leadflow_crm_calls_total": "CRM calls need a CRM adapter; this worker has none (its SQL's opportunity "
                                "is kept without a call)",
    "leadflow_crm_call_seconds": "CRM calls need a CRM adapter; this worker has none (its SQL's opportunity "
                                 "is kept without a call)",
    "leadflow_crm_dead_letters_total": "needs a CRM that refuses an opportunity or stays down for the whole "
                                       "retry schedule (tests/integration/test_crm_lifecycle.py drives it)",
    "leadflow_redis_degraded_total": "needs a Redis outage (tests/connectors count it with Redis stopped)",
    "leadflow_command_failures_total": "needs a transition that raises, i.e. a bug",
    "leadflow_commands_replayed_total": "needs a worker killed after a team batch's record and before its "
                                        "offsets' commit (tests/integration/test_team_crash.py)",
}
#: No deal is lost here (the buyer's is won): win rate needs a loss of the same source.
LATER_STAGES = re.compile(r'to="lost"')


def _config(receiver: Receiver) -> str:
    return f"""
routing:
  default_team: sdr
  rules:
    - {{team: broken, sources: [partner]}}
    - {{team: closers, sources: [webinar]}}
scoring:
  mql_threshold: 0  # a gate every lead passes: MQLs (and a re-engaged MQL) without leaving anyone unrouted
marketing:
  currency: EUR
  sources:
    - {{name: google-ads, monthly_spend: 12000}}
    - {{name: partner, monthly_spend: 3000}}
    - {{name: website, monthly_spend: 500}}
    - {{name: webinar, monthly_spend: 2000}}
sla:
  policies:
    - name: relaxed
      sources: [website]
      first_contact: 120
    - name: fast
      first_contact: 1
      steps: [{{kind: remind, after: 0}}]
teams:
  - id: sdr
    manager: {{webhook_url: "{receiver.url}/hooks/manager", webhook_secret: "{SECRET}"}}
    reps:
      - {{id: ana, capacity: 2, webhook_url: "{receiver.url}/hooks/ana", webhook_secret: "{SECRET}"}}
  - id: broken
    reps:
      - {{id: bob, capacity: 5, webhook_url: "{receiver.url}/hooks/bob", webhook_secret: "{SECRET}"}}
  - id: closers
    reps:
      - {{id: cara, capacity: 5, webhook_url: "{receiver.url}/hooks/cara", webhook_secret: "{SECRET}"}}
"""

#: Signs ``POST /v1/crm/events`` (the worker reads it from LEADFLOW_CRM_EVENTS_SECRET, the default).
CRM_EVENTS_SECRET = SECRET
BANT = {"budget": "approved", "authority": "decision_maker", "need": "leads wait two days",
        "timeline": "this_quarter"}


async def _crm_won(api: aiohttp.ClientSession, worker: Worker, lead_id: str, amount: float) -> None:
    raw = orjson.dumps({"type": "opportunity.won", "data": {"lead_id": lead_id, "amount": amount}})
    at, msg_id = datetime.now(UTC), f"evt-won-{lead_id}"
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
               "webhook-signature": Webhook(CRM_EVENTS_SECRET).sign(msg_id, at, raw.decode()),
               "Content-Type": "application/json"}
    async with api.post(f"{worker.url}/v1/crm/events", data=raw, headers=headers) as r:
        assert r.status == 202, await r.text()


async def _routing_is(api: aiohttp.ClientSession, worker: Worker, lead_id: str, *, routing: str | None = None,
                      status: str | None = None) -> bool:
    async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
        view = await r.json() if r.status == 200 else {}
    return (routing is None or view.get("routing") == routing) and (status is None or view.get("status") == status)


async def _post_lead(api: aiohttp.ClientSession, worker: Worker, body: dict[str, Any], status: int = 202) -> Any:
    async with api.post(f"{worker.url}/v1/leads", json=body) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def _query(session: aiohttp.ClientSession, prom: LocalPrometheus, expr: str) -> dict[str, Any]:
    async with session.get(f"{prom.api_url}/query", params={"query": expr}) as r:
        body: dict[str, Any] = await r.json()
        return body


async def _has_data(session: aiohttp.ClientSession, prom: LocalPrometheus, expr: str) -> bool:
    body = await _query(session, prom, expr)
    return body.get("status") == "success" and bool(body["data"]["result"])


@pytest.fixture
def prometheus(tmp_path: Path) -> Any:
    try:
        find_tool("prometheus")
    except Exception as exc:  # noqa: BLE001 - any failure to install must fail, loudly
        pytest.fail(f"Debian's prometheus package is required and could not be installed: {exc}")
    started: list[LocalPrometheus] = []

    def start(targets: list[str]) -> LocalPrometheus:
        prom = LocalPrometheus(targets, tmp_path / "prometheus")
        prom.start()
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


@pytest.mark.timeout(240)
async def test_every_dashboard_and_alert_expression_returns_data(
    spec: WorkerSpec, receiver: Receiver, api: aiohttp.ClientSession, prometheus: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec.config_yaml = _config(receiver)
    monkeypatch.setenv("LEADFLOW_CRM_EVENTS_SECRET", CRM_EVENTS_SECRET)
    receiver.secrets.update({"ana": SECRET, "cara": SECRET, "manager": SECRET})  # not bob: his endpoint answers 401
    worker = Worker(spec)
    prom = None
    try:
        prom = prometheus([f"127.0.0.1:{worker.port}"])
        await worker.wait_ready()
        started = time.monotonic()

        contacted = (await _post_lead(api, worker, {"email": "fast.reply@obs.example", "source": "website"}))["lead_id"]
        await eventually(lambda: receiver.for_lead(contacted), what="the first assignment webhook")
        async with api.post(f"{worker.url}/v1/leads/{contacted}/activities",
                            json={"type": "call", "rep_id": "ana", "outcome": "connected"}) as r:
            assert r.status == 202, await r.text()
        ignored = (await _post_lead(api, worker, {"email": "nobody.calls@obs.example", "source": "google-ads"}))["lead_id"]
        await eventually(lambda: receiver.for_lead(ignored), what="the second assignment webhook")
        # Ana is full now (capacity 2). The next lead waits; with two assignments some seconds
        # apart, the team's drain rate says it will wait past its 1 s deadline: at risk.
        await asyncio.sleep(3)
        await _post_lead(api, worker, {"email": "waits.in.queue@obs.example", "source": "google-ads"})
        partner = (await _post_lead(api, worker, {"email": "partner.lead@obs.example", "source": "partner"}))["lead_id"]
        # The same person again, from another campaign: a touch, merged (an identical resubmission
        # within minutes would be no touch at all).
        await _post_lead(api, worker, {"email": "fast.reply@obs.example", "source": "website", "campaign": "webinar-follow-up"})
        await _post_lead(api, worker, {"email": "not-an-email"}, status=422)
        # A webinar lead qualifies (SQL, opportunity) and the CRM reports it won: revenue, ROI.
        buyer = (await _post_lead(api, worker, {"email": "buyer@obs.example", "source": "webinar"}))["lead_id"]
        await eventually(lambda: receiver.for_lead(buyer), what="the buyer's assignment webhook")
        async with api.post(f"{worker.url}/v1/leads/{buyer}/qualification",
                            json={"framework": "BANT", "answers": BANT, "rep_id": "cara"}) as r:
            assert r.status == 202 and (await r.json())["sql"] is True, await r.text()
        await eventually(lambda: _routing_is(api, worker, buyer, status="converted"), what="the opportunity")
        await _crm_won(api, worker, buyer, 25000.0)
        # The partner lead is disqualified, then the person comes back through another source:
        # a re-engagement of a partner lead (its first touch), not a new website lead.
        async with api.post(f"{worker.url}/v1/leads/{partner}/disposition",
                            json={"status": "disqualified", "reason": "bad fit"}) as r:
            assert r.status == 202, await r.text()
        await eventually(lambda: _routing_is(api, worker, partner, routing="released"), what="the disposition")
        back = await _post_lead(api, worker, {"email": "partner.lead@obs.example", "source": "website"})
        assert back == {"lead_id": partner, "status": "duplicate"}

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            # Let the states show up in Prometheus: the slowest are the 5 s gauge refresh and
            # the rate() windows, which need two scrapes after a series first appears.
            for sentinel in ("rate(leadflow_sla_at_risk_total[1m])", "leadflow_sla_overdue_leads > 0",
                             "rate(leadflow_webhook_dead_letters_total[1m])", "leadflow_team_queue_depth > 0",
                             "rate(leadflow_speed_to_lead_seconds_count[1m])", "leadflow_consumer_lag_messages",
                             "rate(leadflow_sla_escalations_total[1m])", "leadflow_won_revenue_total > 0",
                             'leadflow_lifecycle_transitions_total{to="reengaged"}'):
                await eventually(lambda s=sentinel: _has_data(session, prom, s), timeout=60,  # type: ignore[misc]
                                 what=f"Prometheus to see {sentinel}")
            await asyncio.sleep(2)

            async with session.get(f"{worker.url}/metrics") as r:
                scrape = await r.text()
            declared = set(re.findall(r"^# HELP (\w+)", scrape, re.M)) | {"up"}
            declared |= {n + "_total" for n in declared}  # the client names a counter's HELP without _total

            expressions = dashboard_expressions() + [
                Expression(f"{e.where} (compared part)", part)
                for e in alert_expressions(RULES) for part in data_parts(e.expr)]
            whole_alerts = alert_expressions(RULES)
            empty, excused = [], []
            for e in expressions:
                expr = without_fallbacks(substitute(e.expr))
                body = await _query(session, prom, expr)
                assert body.get("status") == "success", f"{e.where}: Prometheus refused {expr!r}: {body}"
                names = metric_names(expr)
                assert names <= declared, f"{e.where}: the worker does not declare {names - declared}"
                if body["data"]["result"]:
                    continue
                reasons = [NEEDS_OTHER_STATE[n] for n in names if n in NEEDS_OTHER_STATE]
                if LATER_STAGES.search(expr):
                    reasons.append("a lost deal needs the CRM to report a loss")
                (excused if reasons else empty).append((e.where, expr, reasons))
            assert empty == [], "expressions without data:\n" + "\n".join(f"  {w}: {x}" for w, x, _ in empty)
            print("\nexcused:\n" + "\n".join(f"  {w}: {', '.join(rs)}" for w, _, rs in excused))
            # Most of what people look at is fed by this scenario; the rest is named above.
            assert len(excused) <= len(expressions) // 4, excused

            for e in whole_alerts:  # the whole alert expressions parse and evaluate
                body = await _query(session, prom, e.expr)
                assert body.get("status") == "success", f"{e.where}: {body}"
            for where, metric, label in variable_queries():
                assert await _has_data(session, prom, f"count by ({label}) ({metric})"), where

            async def evaluated() -> list[dict[str, Any]] | None:
                async with session.get(f"{prom.api_url}/rules") as r:
                    groups = (await r.json())["data"]["groups"]
                rules = [rule for g in groups for rule in g["rules"]]
                done = all(rule.get("lastEvaluation", "").startswith("2") and rule["health"] != "unknown"
                           for rule in rules)
                return rules if done else None

            rules = await eventually(evaluated, what="every rule evaluated once")
            assert len(rules) == len(whole_alerts)
            assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]

        # promtool lints the worker's real exposition.
        lint = subprocess.run([str(find_tool("promtool")), "check", "metrics"], input=scrape.encode(),
                              capture_output=True, check=False, timeout=30)
        assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), (lint.stdout + lint.stderr).decode()

        # The funnel and cost figures are labelled by the configured sources, never free text.
        assert 'leadflow_source_monthly_spend{currency="EUR",source="google-ads"} 12000.0' in scrape
        assert 'leadflow_lifecycle_transitions_total{from="none",source="google-ads",to="lead"} 2.0' in scrape
        assert 'leadflow_lifecycle_transitions_total{from="none",source="website",to="lead"} 1.0' in scrape
        assert 'leadflow_lifecycle_transitions_total{from="none",source="partner",to="lead"} 1.0' in scrape
        assert 'leadflow_lifecycle_transitions_total{from="closed",source="partner",to="reengaged"} 1.0' in scrape
        assert 'leadflow_leads_merged_total 2.0' in scrape  # the touch on an open lead and the re-engagement
        assert 'leadflow_lifecycle_transitions_total{from="opportunity",source="webinar",to="won"} 1.0' in scrape
        assert 'leadflow_won_revenue_total{source="webinar"} 25000.0' in scrape
        # Every lead passes the gate: MQLs of new leads, and the re-engaged cycle's own MQL.
        assert 'leadflow_lifecycle_transitions_total{from="lead",source="partner",to="mql"} 1.0' in scrape
        assert 'leadflow_lifecycle_transitions_total{from="reengaged",source="partner",to="mql"} 1.0' in scrape
        assert 'leadflow_won_revenue_total{source="partner"} 0.0' in scrape  # spend, nothing won: ROI -100%
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            roi = next(e.expr for e in dashboard_expressions() if "ROI" in e.where)
            body = await _query(session, prom, substitute(roi))
            by_source = {row["metric"]["source"]: float(row["value"][1]) for row in body["data"]["result"]}
            # 25,000 won against a month's 2,000; Prometheus extrapolates increase() a little.
            assert by_source["partner"] == -1.0 and by_source["webinar"] == pytest.approx(11.5, rel=0.2), by_source
        assert 'leadflow_leads_contacted_total{team="sdr",within_sla="true"} 1.0' in scrape
        # `leadflow report` reads the same story back from lead.events (a bounded window).
        page_path = spec.tmp / "report.html"
        argv = ["report", "--broker", spec.stack.kafka_url, "--topic", f"{spec.app_id}.lead.events",
                "--since", "10m", "-o", str(page_path)]
        monkeypatch.setenv("LEADFLOW_CONFIG", str(spec.tmp / f"{spec.app_id}.yaml"))  # the spend, as the workers read it
        assert await asyncio.to_thread(cli_main, argv) == 0
        page = page_path.read_text()
        assert "Funnel by source" in page and "google-ads" in page and page.count("<svg") >= 5
        assert "Cost and return by source" in page and "25,000.00 EUR" in page
        summary = await from_kafka(spec.stack.kafka_url, f"{spec.app_id}.lead.events", since_s=600)
        assert (summary.captured, summary.new_leads, summary.merged, summary.contacts_in_sla) == (7, 5, 2, 1)
        assert summary.breaches.get("sdr", 0) >= 2 and summary.at_risk >= 1
        assert {src: c.get("lead") for src, c in summary.funnel.items()} == {
            "google-ads": 2, "website": 1, "partner": 1, "webinar": 1}
        assert summary.funnel["partner"].get("reengaged") == 1 and summary.won_revenue == {"webinar": 25000.0}
        assert next(r for r in summary.load if r.name == "ana").assigned >= 2
        print(f"\n{len(expressions)} expressions evaluated, {len(excused)} excused "
              f"({sorted({r for *_, rs in excused for r in rs})}); {time.monotonic() - started:.1f} s after ready")
    finally:
        worker.stop()
        if prom is not None:
            prom.stop()

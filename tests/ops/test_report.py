"""``leadflow report``: the summary from events and from metrics, the HTML page, and the CLI."""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from leadflow.cli import main
from ops.metrics import SPEED_BUCKETS, Metrics, TeamFigures
from ops.report import (
    Distribution,
    TopicNotFound,
    lead_events_topics,
    parse_window,
    render_html,
    resolve_broker,
    summarize_events,
    summarize_scrapes,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def _ev(kind: str, lead: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "lead_id": lead, "cycle": 1, "at": NOW.isoformat(), "data": data}


EVENTS = [
    _ev("lead.captured", "l1", source="google-ads", channel="api", team_id="sdr"),
    _ev("lead.captured", "l2", source="google-ads", channel="api", team_id="sdr"),
    _ev("lead.captured", "l3", source="partner", channel="csv", team_id="sdr"),
    _ev("lead.assigned", "l1", rep_id="ana", team_id="sdr", routing_seconds=0.2),
    _ev("lead.assigned", "l2", rep_id="ana", team_id="sdr", routing_seconds=45.0),
    _ev("lead.assigned", "l3", rep_id="ben", team_id="sdr", routing_seconds=0.3),
    _ev("lead.contacted", "l1", rep_id="ana", team_id="sdr", within_sla=True, speed_to_lead_s=40.0,
        system_delay_s=0.5, rep_delay_s=39.5),
    _ev("lead.contacted", "l3", rep_id="ben", team_id="sdr", within_sla=False, speed_to_lead_s=4000.0,
        system_delay_s=1.0, rep_delay_s=3999.0),
    _ev("lead.sla_breached", "l2", team_id="sdr", step=0),
    _ev("lead.sla_breached", "l3", team_id="sdr", step=0),
    _ev("lead.escalated", "l2", team_id="sdr", action="remind", step=1),
    _ev("lead.sla_at_risk", "l2", team_id="sdr"),
    _ev("lead.touched", "l1", source="google-ads", channel="api"),
    _ev("lead.mql", "l1"),  # lifecycle events carry no source: the lead's capture tells it
    _ev("lead.sql", "l1"),
    _ev("lead.mql", "l9"),  # captured before the window
]


def test_a_summary_from_events_counts_speed_sla_funnel_and_load() -> None:
    s = summarize_events(EVENTS, origin="test")
    assert (s.captured, s.new_leads, s.merged, s.events) == (4, 3, 1, len(EVENTS))
    # l1 met; l2 breached, never contacted; l3 contacted late (its breach after it is the same miss).
    assert (s.contacts_in_sla, s.contacts_late, s.sla_met, s.sla_missed) == (1, 1, 1, 2)
    assert s.compliance == pytest.approx(1 / 3)
    assert s.breaches == {"sdr": 2} and s.escalations == {"remind": 1} and s.at_risk == 1
    assert s.speed_to_lead.total == 2 and s.speed_to_lead.share_within(60.0) == 0.5
    assert s.routing.share_within(60.0) == 1.0 and s.routing.share_within(1.0) == pytest.approx(2 / 3)
    assert s.funnel == {"google-ads": {"lead": 2, "mql": 1, "sql": 1}, "partner": {"lead": 1}, "unknown": {"mql": 1}}
    assert [(r.name, r.assigned, r.contacted) for r in s.load] == [("ana", 2, 1), ("ben", 1, 1)]


def _cycle(event: dict[str, Any], cycle: int) -> dict[str, Any]:
    return {**event, "cycle": cycle}


def test_a_lead_captured_before_the_window_is_credited_to_no_touch_it_did_not_start_with() -> None:
    # Only the re-engagement is in the window: its touch (google-ads) is not the person's first.
    events = [_cycle(_ev("lead.reopened", "l7", source="google-ads"), 2),
              _cycle(_ev("lead.nurture", "l7", source="google-ads"), 2),
              _ev("opportunity.won", "l8", source="webinar", amount=900.0)]  # carries the first touch
    s = summarize_events(events, origin="test")
    assert s.funnel == {"unknown": {"reengaged": 1, "nurture": 1}, "webinar": {"won": 1}}
    assert (s.new_leads, s.merged, s.captured) == (0, 1, 1) and s.won_revenue == {"webinar": 900.0}


SPEND = {"google-ads": (3000.0, "EUR"), "partner": (600.0, "EUR")}
WON = [_ev("lead.captured", "w1", source="partner"), _ev("lead.mql", "w1"), _ev("lead.sql", "w1", source="partner"),
       _ev("opportunity.created", "w1", source="partner"),
       _ev("opportunity.won", "w1", source="partner", amount=1000.0),
       _ev("opportunity.won", "w1", source="partner", amount=None)]  # the CRM gave no amount: no revenue


def test_costs_from_events_prorate_the_monthly_spend_to_the_window() -> None:
    s = summarize_events(EVENTS + WON, origin="test", spend=SPEND, window_s=3 * 86400)  # a tenth of a month
    rows = {r.source: r for r in s.costs}
    assert s.currency == "EUR" and set(rows) == {"google-ads", "partner"}
    ads, partner = rows["google-ads"], rows["partner"]
    assert ads.spend == pytest.approx(300.0)
    assert (ads.per_lead, ads.per_mql, ads.per_sql) == (pytest.approx(150.0), pytest.approx(300.0), pytest.approx(300.0))
    assert ads.won_revenue == 0 and ads.roi == pytest.approx(-1.0)
    assert partner.spend == pytest.approx(60.0) and (partner.leads, partner.mql, partner.sql) == (2, 1, 1)
    assert partner.won_revenue == 1000.0 and partner.roi == pytest.approx((1000 - 60) / 60)
    # Without spend no rows; without a window no cost (the spend over an unknown span means nothing).
    assert summarize_events(EVENTS, origin="test").costs == []
    assert summarize_events(EVENTS, origin="test", spend=SPEND).costs[0].per_lead is None


def test_costs_from_metrics_cover_the_time_since_the_earliest_worker_started() -> None:
    texts = []
    for started_ago in (3 * 86400.0, 86400.0):
        m = Metrics()
        m.configure_sources(SPEND)
        m.lifecycle_move("lead.captured", {}, "partner")
        m.lifecycle_move("lead.reopened", {}, "partner", cycle=2)  # a known person: no lead, no cost share
        m.lifecycle_move("lead.mql", {}, "partner", cycle=2)
        m.won(500.0, "partner")
        texts.append(re.sub(r"^process_start_time_seconds .*$", f"process_start_time_seconds {1_000_000.0 - started_ago}",
                            generate_latest(m.registry).decode(), flags=re.M))
    s = summarize_scrapes(texts, origin="test", now_s=1_000_000.0)
    assert s.window_s == pytest.approx(3 * 86400) and s.currency == "EUR" and s.spend == {k: v for k, (v, _) in SPEND.items()}
    partner = next(r for r in s.costs if r.source == "partner")
    assert (partner.leads, partner.mql, partner.won_revenue) == (2, 2, 1000.0)
    assert partner.per_lead == pytest.approx(30.0) and partner.roi == pytest.approx((1000 - 60) / 60)
    assert s.new_mql == {} and s.funnel["partner"] == {"lead": 2, "reengaged": 2, "mql": 2}
    assert summarize_scrapes(texts, origin="test").costs[0].spend is None  # no "now": no window


def test_the_page_shows_cost_and_return_by_source() -> None:
    page = render_html(summarize_events(EVENTS + WON, origin="test", spend=SPEND, window_s=3 * 86400), NOW)
    parsed = _Collect()
    parsed.feed(page)
    text = " ".join(parsed.text)
    assert "Cost and return by source" in text and "cost per MQL" in text and "ROI" in text
    assert "150.00 EUR" in text and "1,000.00 EUR" in text and "1567%" in text
    assert "No spend configured" in render_html(summarize_events(EVENTS, origin="test"), NOW)


def test_distribution_quantiles_and_shares_use_the_bucket_bounds() -> None:
    d = Distribution(SPEED_BUCKETS)
    for value in (3, 50, 60, 61, 100_000):
        d.add(value)
    assert d.share_within(60.0) == 3 / 5  # 60 is an exact bound: 60 s itself is within
    assert d.quantile(0.5) == 60.0 and d.quantile(1.0) == math.inf
    assert Distribution(SPEED_BUCKETS).quantile(0.5) is None


def test_the_biggest_sources_are_kept_and_the_rest_summed() -> None:
    events = [_ev("lead.captured", f"l{i}", source=f"s{i % 15}") for i in range(60)]
    funnel = summarize_events(events, "t", top_sources=12).funnel
    assert len(funnel) == 13 and funnel["other sources"] == {"lead": 12}


def test_a_summary_from_two_workers_metrics_adds_them_up() -> None:
    texts = []
    for team, speed in (("sdr", 40.0), ("ae", 4000.0)):
        m = Metrics()
        m.configure_sources({"google-ads": (100.0, "USD")})
        m.leads_captured.labels("api", "api").inc(3)
        m.leads_assigned.labels(team).inc(2)
        m.routing_latency.observe(0.2)
        m.speed_to_lead.labels(team).observe(speed)
        m.leads_contacted.labels(team, "true" if speed < 60 else "false").inc()
        m.sla_breaches.labels(team).inc()
        m.sla_outcomes.labels(team, "met" if speed < 60 else "missed").inc()
        m.lifecycle_move("lead.captured", {}, "google-ads")
        m.report_teams({team: TeamFigures(queue_depth=0, open_leads=2, capacity=4, reps_available=1,
                                          total_capacity=4, oldest_queued_age_s=0)})
        texts.append(generate_latest(m.registry).decode())
    s = summarize_scrapes(texts, origin="test")
    assert s.captured == 6 and s.compliance == 0.5
    assert s.speed_to_lead.total == 2 and s.speed_to_lead.share_within(60.0) == 0.5
    assert s.routing.total == 2
    assert s.breaches == {"sdr": 1, "ae": 1}
    assert s.funnel == {"google-ads": {"lead": 2}}
    assert {(r.name, r.assigned, r.open_leads, r.free_slots, r.utilization) for r in s.load} == {
        ("sdr", 2, 2, 0, 0.5), ("ae", 2, 2, 0, 0.5)}


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_page_has_every_section_with_charts_and_escapes_text() -> None:
    events = EVENTS + [_ev("lead.captured", "lx", source="<script>alert(1)</script>")]
    page = render_html(summarize_events(events, origin="lead.events & more"), NOW)
    assert "<script>" not in page and "&lt;script&gt;" in page
    parsed = _Collect()
    parsed.feed(page)
    text = " ".join(parsed.text)
    for heading in ("Speed-to-lead", "SLA compliance", "Funnel by source", "Rep load"):
        assert heading in text
    assert parsed.tags.count("svg") >= 5
    assert "SLA met (per lead)" in text and "33%" in text
    # Every chart is well-formed SVG on its own.
    for chunk in page.split("<svg")[1:]:
        ET.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")


def test_an_empty_window_still_renders() -> None:
    page = render_html(summarize_events([], origin="nothing"), NOW)
    assert "no observations" in page and "No lifecycle transitions" in page


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("15", 15),
                                                  ("1d12h", 129600)])
def test_windows_parse(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1h", "0", "inf", "-5"])
def test_bad_windows_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_window(text)


def test_help_teaches_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for needle in ("--since", "--metrics", "lead.events", "examples:", "exit status"):
        assert needle in out


def test_the_cli_writes_a_page_from_a_saved_scrape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = Metrics()
    m.speed_to_lead.labels("sdr").observe(30.0)
    m.leads_contacted.labels("sdr", "true").inc()
    scrape = tmp_path / "scrape.txt"
    scrape.write_bytes(generate_latest(m.registry))
    out = tmp_path / "r.html"
    assert main(["report", "--metrics", str(scrape), "-o", str(out)]) == 0
    page = out.read_text()
    assert "<svg" in page and "100%" in page  # one contact, in SLA


def test_the_cli_says_what_it_could_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--since", "whenever"]) == 2
    assert "--since 'whenever'" in capsys.readouterr().err
    assert main(["report", "--metrics", "http://127.0.0.1:9/metrics", "-o", str(tmp_path / "x.html")]) == 2
    assert "could not read the metrics" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_a_missing_topic_names_the_lead_events_topics_that_exist_newest_first() -> None:
    topics = {"demo20260301090000.lead.events", "demo20260302090000.lead.events", "leadflow.leads.inbound",
              "it1234.lead.events", "demo20260302090000.leads.inbound"}
    found = lead_events_topics(topics)
    assert found == ["demo20260302090000.lead.events", "demo20260301090000.lead.events", "it1234.lead.events"]
    message = str(TopicNotFound("leadflow.lead.events", "127.0.0.1:9092", found))
    assert "\n" not in message
    assert message.startswith("topic leadflow.lead.events does not exist on 127.0.0.1:9092; pass --topic")
    assert message.endswith("demo20260302090000.lead.events, demo20260301090000.lead.events, it1234.lead.events")
    # Many topics of other deployments (a broker shared with tests) do not push the demo's out of sight.
    crowded = lead_events_topics({f"it{i:04x}.lead.events" for i in range(40)} | {"demo20260302090000.lead.events"})
    assert str(TopicNotFound("x", "b", crowded)).split(": ", 1)[1].startswith("demo20260302090000.lead.events, it0000")
    many = [f"demo2026030209{m:02d}00.lead.events" for m in range(8)]
    assert str(TopicNotFound("x", "b", many)).endswith("demo20260302090400.lead.events (and 3 more)")
    assert "has a worker run against this broker?" in str(TopicNotFound("x", "b", []))


@pytest.mark.parametrize(("given", "environ", "expected"), [
    # Neither --broker nor LEADFLOW_BROKER: the local stack, on LEADFLOW_KAFKA_PORT if set.
    (None, {}, "kafka://127.0.0.1:9092"),
    (None, {"LEADFLOW_KAFKA_PORT": "44092"}, "kafka://127.0.0.1:44092"),
    # LEADFLOW_BROKER and any --broker win, 9092 included.
    (None, {"LEADFLOW_BROKER": "kafka://127.0.0.1:9092", "LEADFLOW_KAFKA_PORT": "44092"}, "kafka://127.0.0.1:9092"),
    ("kafka://127.0.0.1:9092", {"LEADFLOW_KAFKA_PORT": "44092"}, "kafka://127.0.0.1:9092"),
    (None, {"LEADFLOW_BROKER": "kafka://k1:9092;k2:9092", "LEADFLOW_KAFKA_PORT": "44092"}, "kafka://k1:9092;k2:9092"),
    ("kafka://k9:9092", {"LEADFLOW_KAFKA_PORT": "44092"}, "kafka://k9:9092"),
])
def test_the_default_broker_is_the_local_stack(given: str | None, environ: dict[str, str], expected: str) -> None:
    assert resolve_broker(given, environ) == expected




def test_every_event_names_the_first_touch_so_a_lead_captured_before_the_window_keeps_its_source() -> None:
    # The same window as above, with events that carry first_source (every event the lead agent
    # writes now): the re-engagement is credited to the webinar that brought the person.
    events = [{**_cycle(_ev("lead.reopened", "l7", source="google-ads"), 2), "first_source": "webinar"},
              {**_cycle(_ev("lead.nurture", "l7", source="google-ads"), 2), "first_source": "webinar"}]
    assert summarize_events(events, origin="test").funnel == {"webinar": {"reengaged": 1, "nurture": 1}}



def _at(event: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {**event, "at": (NOW + timedelta(seconds=seconds)).isoformat()}


def _tile(page: str, label: str) -> str:
    found = re.search(rf"<span class='muted'>{re.escape(label)}</span><b>([^<]*)</b>", page)
    assert found, label
    return found.group(1)


def test_routed_within_60_s_counts_the_leads_never_routed() -> None:
    # Two captures; one has a rep after 1 s, the other is still queued 119 s after its capture.
    events = [_at(_ev("lead.captured", "r1", source="api"), 0), _at(_ev("lead.captured", "r2", source="api"), 0),
              _at(_ev("lead.assigned", "r1", rep_id="ana", team_id="sdr", routing_seconds=1.0), 1)]
    s = summarize_events(events, origin="test", until=NOW + timedelta(seconds=119))
    assert (s.routed_on_time, s.routed_late) == (1, 1) and s.routed_within_target == 0.5
    assert s.routing.share_within(60.0) == 1.0  # the chart still shows the routed leads' times
    assert _tile(render_html(s, NOW), "Routed within 60 s") == "50%"


def test_a_lead_younger_than_60_s_at_the_end_is_left_out_and_a_closed_one_by_its_wait() -> None:
    events = [_at(_ev("lead.captured", "r1", source="api"), 0),
              _at(_ev("lead.assigned", "r1", rep_id="ana", team_id="sdr", routing_seconds=90.0), 90),
              _at(_ev("lead.captured", "r2", source="api"), 0), _at(_ev("lead.nurture", "r2"), 1),  # never meant to be
              _at(_ev("lead.captured", "r3", source="api"), 0), _at(_ev("lead.dispositioned", "r3"), 300),  # waited
              _at(_ev("lead.captured", "r4", source="api"), 280),  # 20 s old at the end
              _at(_ev("lead.touched", "r4", source="api"), 290),  # the same cycle: no second lead
              _at(_ev("lead.captured", "r5", source="api"), 100)]  # no end given: the latest event's time is
    s = summarize_events(events, origin="test")
    assert (s.routed_on_time, s.routed_late) == (0, 3) and s.routed_within_target == 0.0
    # A lead assigned whose capture was before the window is not judged: its wait is not all seen.
    s = summarize_events([_ev("lead.assigned", "old", rep_id="ana", team_id="sdr", routing_seconds=0.5)], origin="t")
    assert s.routed_within_target is None and s.routing.total == 1
    assert _tile(render_html(s, NOW), "Routed within 60 s") == "–"


def test_from_metrics_the_share_of_all_leads_routed_is_unknown_and_the_page_says_so() -> None:
    m = Metrics()
    m.leads_captured.labels("api", "api").inc(160)
    for _ in range(59):
        m.routing_latency.observe(0.2)
    s = summarize_scrapes([generate_latest(m.registry).decode()], origin="test")
    assert s.routed_within_target is None
    page = render_html(s, NOW)
    assert _tile(page, "Routed within 60 s") == "–"
    assert "unknown from /metrics" in page and "Of the 59 leads routed, 100%" in page

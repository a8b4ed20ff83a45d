"""The system's part of speed-to-lead is sub-second when all goes well: its buckets must show it."""
from __future__ import annotations

from prometheus_client import generate_latest

from ops.metrics import LATENCY_BUCKETS, Metrics
from ops.report import summarize_events, summarize_scrapes


def test_the_system_delay_histogram_has_sub_second_buckets() -> None:
    metrics = Metrics()
    metrics.system_delay.labels("sdr").observe(0.2)
    text = generate_latest(metrics.registry).decode()
    for le in ("0.25", "1.0"):
        assert f'leadflow_speed_to_lead_system_seconds_bucket{{le="{le}",team="sdr"}} 1.0' in text
    assert 'leadflow_speed_to_lead_system_seconds_bucket{le="0.1",team="sdr"} 0.0' in text


def test_both_reports_read_the_system_delay_in_the_latency_buckets() -> None:
    metrics = Metrics()
    metrics.system_delay.labels("sdr").observe(0.2)
    from_metrics = summarize_scrapes([generate_latest(metrics.registry).decode()], origin="test")
    from_events = summarize_events([{"type": "lead.contacted", "lead_id": "l1", "cycle": 1, "data": {
        "team_id": "sdr", "within_sla": True, "speed_to_lead_s": 30.0, "system_delay_s": 0.2, "rep_delay_s": 29.8}}],
        origin="test")
    for s in (from_metrics, from_events):
        assert s.system_delay.bounds == LATENCY_BUCKETS
        assert s.system_delay.quantile(0.5) == 0.25 and s.system_delay.share_within(1.0) == 1.0

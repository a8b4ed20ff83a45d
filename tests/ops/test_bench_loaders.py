"""The bench's generated data: changelog records the worker can read, and the metrics it parses."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ops.bench.harness import bench_config, country_of
from ops.bench.hotspot import processed_counts, pure_route_rate
from ops.bench.restart import template_records
from rules.lead import LeadState, SlaTimer
from streams.codec import decode


def test_changelog_templates_decode_as_the_tables_values_for_any_lead_id() -> None:
    now = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    placeholder = "ld_" + "0" * 24
    state_bytes, timer_bytes = template_records(now, placeholder)
    other = "ld_" + "ab" * 12
    state = decode(state_bytes.replace(placeholder.encode(), other.encode()))
    timer = decode(timer_bytes.replace(placeholder.encode(), other.encode()))
    assert isinstance(state, LeadState) and state.lead_id == other
    assert state.routing == "assigned" and state.assignment is not None
    assert isinstance(timer, SlaTimer) and timer.lead_id == other
    assert (timer.due_at - now).total_seconds() >= 6 * 3600  # never fires during a run


def test_processed_counts_reads_one_agents_commands() -> None:
    text = "\n".join([
        "# HELP leadflow_commands_processed_total Commands applied by each entity agent.",
        'leadflow_commands_processed_total{agent="team",command="RouteLead"} 1234.0',
        'leadflow_commands_processed_total{agent="team",command="ReleaseLead"} 17.0',
        'leadflow_commands_processed_total{agent="lead",command="CaptureLead"} 99.0',
        'leadflow_commands_processed_created{agent="team",command="RouteLead"} 1.7e9',
    ])
    assert processed_counts(text) == {"RouteLead": 1234.0, "ReleaseLead": 17.0}
    assert processed_counts(text, agent="lead") == {"CaptureLead": 99.0}


def test_pure_route_rate_measures_something() -> None:
    assert pure_route_rate(3, 50, codec=True) > 0


def test_bench_config_spreads_leads_over_teams_by_country() -> None:
    yaml_text, secrets = bench_config(3, 2, 50, 8190)
    assert len(secrets) == 6 and all(s.startswith("whsec_") for s in secrets.values())
    assert "countries: [FR]" in yaml_text and "http://127.0.0.1:8190/hooks/t02r01" in yaml_text
    assert [country_of(i, 3) for i in range(4)] == [None, "FR", "ES", None]


def test_bench_config_is_a_valid_leadflow_config(tmp_path: Path) -> None:
    from streams.config import load_config

    path = tmp_path / "bench.yaml"
    path.write_text(bench_config(4, 10, 1000, 8190)[0])
    config = load_config(path)
    assert [team.id for team in config.teams] == ["t00", "t01", "t02", "t03"]

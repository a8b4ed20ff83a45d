"""`leadflow bench soak`: its arithmetic (memory trend, thirds, windows kept up), its gauges and its plot."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict

import pytest

from ops.bench.cli import build_parser, run
from ops.bench.soak import (SoakWindow, kept_up, least_squares_slope, render_soak_svg, scrape_gauges,
                            summarize)
from ops.bench.stats import LatencySummary


def _window(index: int, *, rss: float | None, backlog: int = 1, sent: int = 600, delivered: int = 600,
            cpu: float | None = 50.0, gauges: dict[str, float] | None = None) -> SoakWindow:
    return SoakWindow(index=index, end_s=60.0 * (index + 1), sent=sent, accepted=sent, delivered=delivered,
                      backlog=backlog, capture_to_webhook=LatencySummary.of(()), cpu_mean_pct=cpu, rss_max_mb=rss,
                      gauges=gauges or {})


def test_slope_of_a_line_and_of_too_little() -> None:
    assert least_squares_slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert least_squares_slope([(0, 5), (10, 5), (20, 5)]) == pytest.approx(0.0)
    assert least_squares_slope([(1, 2)]) is None
    assert least_squares_slope([(3, 1), (3, 9)]) is None  # one x: no line


def test_a_window_kept_up_within_two_seconds_of_leads() -> None:
    assert kept_up(80, 40.0)
    assert not kept_up(81, 40.0)
    assert kept_up(1, 0.1)  # one lead in flight always counts as keeping up


def test_the_memory_trend_leaves_out_the_first_window() -> None:
    # The first window jumps (warm-up), then memory is flat: no growth.
    flat = [_window(0, rss=100.0), *(_window(i, rss=300.0) for i in range(1, 6))]
    summary = summarize(flat, [[0.05]] * 6, rate=10.0)
    assert summary.rss_growth_mb_per_hour == pytest.approx(0.0)
    assert (summary.rss_first_mb, summary.rss_last_mb) == (100.0, 300.0)
    # 1 MB a minute after it: 60 MB/hour; at 10 leads/s that is 1/600 MB a lead = 1,666.7 KB per 1,000.
    growing = [_window(0, rss=100.0), *(_window(i, rss=300.0 + i) for i in range(1, 6))]
    summary = summarize(growing, [[0.05]] * 6, rate=10.0)
    assert summary.rss_growth_mb_per_hour == pytest.approx(60.0)
    assert summary.rss_growth_kb_per_1k_leads == pytest.approx(1000 / 0.6)


def test_memory_that_levels_off_shows_a_falling_trend_by_third() -> None:
    # After the first window: +3 MB a minute for three windows, +1 for three, then flat for three.
    rss = [100.0, 200.0, 203.0, 206.0, 209.0, 210.0, 211.0, 212.0, 212.0, 212.0, 212.0]
    summary = summarize([_window(i, rss=value) for i, value in enumerate(rss)], [[0.05]] * len(rss), rate=10.0)
    assert summary.rss_growth_by_third_mb_per_hour == pytest.approx([180.0, 60.0, 0.0])
    assert summary.rss_growth_mb_per_hour is not None and summary.rss_growth_mb_per_hour > 60.0  # one line: "growing"
    # Too few windows for thirds of two or more: none.
    assert summarize([_window(i, rss=1.0 + i) for i in range(5)], [[0.1]] * 5, rate=1.0).rss_growth_by_third_mb_per_hour == []


def test_without_memory_figures_there_is_no_trend() -> None:
    summary = summarize([_window(i, rss=None, cpu=None) for i in range(3)], [[0.1]] * 3, rate=5.0)
    assert summary.rss_growth_mb_per_hour is None and summary.rss_first_mb is None and summary.cpu_mean_pct is None


def test_thirds_totals_and_gauges() -> None:
    latencies = [[0.1] * 99 + [0.2], [0.1] * 100, [0.1] * 100, [0.1] * 100, [0.1] * 100, [0.5] * 100]
    windows = [_window(i, rss=200.0, backlog=200 if i == 4 else 1, delivered=100 if i != 5 else 99,
                       gauges={"leadflow_consumer_lag_messages": float(i)}) for i in range(6)]
    summary = summarize(windows, latencies, rate=40.0)
    assert summary.p99_first_third_s == pytest.approx(0.1, abs=0.01)
    assert summary.p99_last_third_s == pytest.approx(0.5)
    assert (summary.sent, summary.delivered, summary.not_delivered) == (3600, 599, 3001)
    assert (summary.windows_kept_up, summary.windows) == (5, 6)
    assert summary.max_gauges == {"leadflow_consumer_lag_messages": 5.0}
    assert summary.capture_to_webhook.count == 600


def test_a_short_soak_has_no_thirds() -> None:
    summary = summarize([_window(0, rss=1.0), _window(1, rss=2.0)], [[0.1], [0.2]], rate=1.0)
    assert summary.p99_first_third_s is None and summary.p99_last_third_s is None


def test_latencies_must_match_the_windows() -> None:
    with pytest.raises(ValueError, match="2 latency lists for 1 windows"):
        summarize([_window(0, rss=1.0)], [[0.1], [0.2]], rate=1.0)


def test_gauges_are_summed_over_their_labels() -> None:
    page = "\n".join([
        "# HELP leadflow_consumer_lag_messages Messages not yet consumed.",
        "# TYPE leadflow_consumer_lag_messages gauge",
        'leadflow_consumer_lag_messages{topic="a.lead.commands"} 9.0',
        'leadflow_consumer_lag_messages{topic="a.team.commands"} 3.0',
        "# HELP leadflow_event_loop_lag_seconds How late.",
        "# TYPE leadflow_event_loop_lag_seconds gauge",
        "leadflow_event_loop_lag_seconds 0.002",
        "# HELP leadflow_partitions_assigned Partitions.",
        "# TYPE leadflow_partitions_assigned gauge",
        "leadflow_partitions_assigned 161.0",
    ]) + "\n"
    assert scrape_gauges(page) == {"leadflow_consumer_lag_messages": 12.0, "leadflow_event_loop_lag_seconds": 0.002}


def test_the_plot_is_svg_with_a_line_per_series() -> None:
    windows = [asdict(_window(i, rss=150.0 + i)) | {"capture_to_webhook": asdict(LatencySummary.of([0.02, 0.04]))}
               for i in range(4)]
    svg = render_soak_svg({"started_at": "2026-11-27T12:00:00+00:00", "settings": {"rate": 40, "feed": "http",
                                                                                    "window_s": 60},
                           "windows": windows})
    root = ET.fromstring(svg)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 4  # p99, p50, rss, cpu
    assert all(len(line.get("points", "").split()) == 4 for line in lines)


def test_soak_options_parse() -> None:
    args = build_parser().parse_args(["soak", "--rate", "25", "--minutes", "2", "--window", "20", "--feed", "kafka"])
    assert (args.rate, args.minutes, args.window_s, args.feed, args.receiver_port) == (25.0, 2.0, 20.0, "kafka", 8192)


@pytest.mark.parametrize("argv", [["soak", "--rate", "0"], ["soak", "--minutes", "-1"], ["soak", "--rate", "fast"],
                                  ["soak", "--feed", "smtp"]])
def test_bad_soak_values_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_a_window_longer_than_the_soak_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["soak", "--minutes", "1", "--window", "90"])
    assert run(args) == 2
    assert "--window 90 s is longer than --minutes 1" in capsys.readouterr().err

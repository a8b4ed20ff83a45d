"""The bench's arithmetic: percentiles, summaries, rates, ratios, sustained rate, rate parsing, schedules."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ops.bench.load import batch_schedule, bench_lead, lead_id_of
from ops.bench.stats import (
    LatencySummary,
    histogram,
    is_held,
    is_sustained,
    log_edges,
    max_sustained,
    parse_rates,
    percentile,
    rate,
    ratio,
    records_per_lead,
)


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([5.0], 99, 5.0),
    ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
    ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
    ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # order does not matter
    ([float(i) for i in range(1, 101)], 99, 99.01),  # numpy's linear method: 1 + 0.99 * 99
    ([0.0, 10.0], 25, 2.5),
])
def test_percentile_interpolates_between_closest_ranks(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_rejects_q_outside_0_100(q: float) -> None:
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200),
       st.floats(min_value=0, max_value=100))
def test_percentile_is_within_the_data_and_monotonic_in_q(values: list[float], q: float) -> None:
    low, high = min(values), max(values)
    value = percentile(values, q)
    assert low <= value <= high
    assert percentile(values, min(100.0, q + 1)) >= value - 1e-9 * max(1.0, abs(value))


def test_latency_summary_of_known_values() -> None:
    values = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1000 ms
    random.Random(3).shuffle(values)
    summary = LatencySummary.of(values)
    assert summary.count == 1000
    assert summary.mean_s == pytest.approx(0.5005)
    assert summary.p50_s == pytest.approx(0.5005)
    assert summary.p99_s == pytest.approx(0.99001)
    assert summary.max_s == 1.0
    assert set(summary.to_dict()) == {"count", "mean_s", "p50_s", "p90_s", "p95_s", "p99_s", "max_s"}


def test_latency_summary_of_nothing_has_count_zero_and_no_figures() -> None:
    summary = LatencySummary.of([])
    assert summary.count == 0
    assert summary.p99_s is None and summary.mean_s is None


@pytest.mark.parametrize(("count", "seconds", "expected"), [(100, 4.0, 25.0), (0, 4.0, 0.0), (10, 0.0, 0.0)])
def test_rate_never_divides_by_zero(count: int, seconds: float, expected: float) -> None:
    assert rate(count, seconds) == expected


def test_ratio_is_none_without_a_baseline() -> None:
    assert ratio(50, 200) == 0.25
    assert ratio(50, 0) is None


@pytest.mark.parametrize(("offered", "achieved", "drain", "expected"), [
    (100, 99, 0.5, True),
    (100, 90, 5.0, True),   # both limits inclusive
    (100, 89.9, 0.5, False),  # fell behind
    (100, 100, 5.1, False),   # kept the rate but left a backlog
    (0, 0, 0, False),
])
def test_is_sustained(offered: float, achieved: float, drain: float, expected: bool) -> None:
    assert is_sustained(offered, achieved, drain) is expected


def test_max_sustained_ignores_steps_that_fell_behind_but_counts_the_unthrottled_step() -> None:
    steps = [(25.0, 24.8, True), (50.0, 49.0, True), (100.0, 61.0, False), (None, 58.0, False)]
    assert max_sustained(steps) == 58.0
    assert max_sustained([(25.0, 24.8, True), (100.0, 61.0, False)]) == 24.8
    assert max_sustained([]) == 0.0


def test_parse_rates() -> None:
    assert parse_rates("25, 50,100,max,half") == [25.0, 50.0, 100.0, "max", "half"]
    assert parse_rates("MAX") == ["max"]
    assert parse_rates("max,paced,half-paced") == ["max", "paced", "half-paced"]


@pytest.mark.parametrize(("offered", "achieved", "drain", "expected"), [
    (50.0, 48.0, 0.4, True),
    (64.4, 60.6, 1.3, False),  # session 9's half of the burst max: 1.3 s of backlog at the end
    (50.0, 40.0, 0.2, False),  # fell behind
])
def test_is_held_wants_the_backlog_gone_within_a_second(offered: float, achieved: float, drain: float,
                                                        expected: bool) -> None:
    assert is_held(offered, achieved, drain) is expected
    assert is_sustained(offered, achieved, drain) is (achieved >= 0.9 * offered)


@pytest.mark.parametrize(("text", "message"), [
    ("25,fast", "neither a number"),
    ("0", "positive"),
    ("-5", "positive"),
    ("inf", "positive"),
    ("half,max", "needs a 'max' step before it"),
    ("max,half-paced,paced", "needs a .paced. step before it"),
    (",", "at least one rate"),
])
def test_parse_rates_rejects_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rates(text)


def test_log_edges_cover_the_range_evenly_on_a_log_scale() -> None:
    edges = log_edges(0.001, 10.0, per_decade=4)
    assert edges[0] == 0.001 and edges[-1] >= 10.0
    steps = {round(b / a, 6) for a, b in zip(edges, edges[1:], strict=False)}
    assert steps == {round(10 ** 0.25, 6)}
    with pytest.raises(ValueError):
        log_edges(0, 1)


def test_histogram_keeps_every_sample_including_outliers() -> None:
    counts = histogram([0.0001, 0.002, 0.02, 0.02, 5.0, 100.0], [0.001, 0.01, 0.1, 1.0])
    assert counts == [2, 2, 2]
    assert sum(counts) == 6


def test_schedule_at_a_fixed_rate_sends_small_batches_on_time() -> None:
    schedule = batch_schedule(leads=50, rate=25.0, batch=100)
    assert [count for _, _, count in schedule] == [1] * 50  # 25/s: one lead every 40 ms
    assert schedule[-1][0] == pytest.approx(49 / 25)
    fast = batch_schedule(leads=1000, rate=1000.0, batch=100)
    assert {count for _, _, count in fast} == {50}  # a batch every 50 ms
    assert fast[1][0] == pytest.approx(0.05)
    assert sum(count for _, _, count in fast) == 1000


def test_schedule_unthrottled_offers_everything_at_once_in_full_batches() -> None:
    schedule = batch_schedule(leads=250, rate=None, batch=100)
    assert schedule == [(0.0, 0, 100), (0.0, 100, 100), (0.0, 200, 50)]
    assert batch_schedule(0, None, 100) == []


def test_bench_leads_are_distinct_people_with_corporate_domains() -> None:
    leads = [bench_lead(i, "run1", None) for i in range(2000)]
    ids = {lead_id_of(lead) for lead in leads}
    assert len(ids) == 2000
    assert all(str(lead["email"]).endswith(".example") for lead in leads)
    assert "country" not in leads[0] and bench_lead(1, "run1", "FR")["country"] == "FR"


def test_records_per_lead_counts_topics_not_the_bookkeeping() -> None:
    counts = {"app.lead.events": 50, "app-lead_state-changelog": 35, "(leads fed)": 10}
    assert records_per_lead(counts) == 8.5
    assert records_per_lead({"app.lead.events": 5}) is None  # no leads fed: no figure
    assert records_per_lead({}) is None

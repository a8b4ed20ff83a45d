"""The bench's result document (JSON schema), its SVG plot and the py-spy profile summary."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import orjson
import pytest

from ops.bench.plot import render_svg
from ops.bench.profile import area_of, parse_collapsed, render_summary, summarize
from ops.bench.results import SCHEMA_VERSION, PassthroughResult, Resources, RunResult, StepResult, validate
from ops.bench.stats import LatencySummary

_SVG = "{http://www.w3.org/2000/svg}"


def _step(label: str, offered: float | None, throughput: float, latencies: list[float], *,
          sustained: bool = True, workers: int = 1) -> StepResult:
    return StepResult(
        label=label, feed="http", workers=workers, offered_rate=offered, leads=len(latencies), sent=len(latencies),
        send_s=1.0, assigned=len(latencies), delivered=len(latencies), elapsed_s=2.0, drain_s=0.3,
        throughput=throughput, sustained=sustained, capture_to_assigned=LatencySummary.of(latencies),
        capture_to_webhook=LatencySummary.of([x * 1.2 for x in latencies]),
        resources=Resources(45.0, 80.0, 150.0, 10), errors={}, webhook_sample=[x * 1.2 for x in latencies])


def _run() -> RunResult:
    steps = [_step("w1 http 25/s", 25.0, 24.9, [0.05, 0.06, 0.08, 0.2]),
             _step("w1 http max", None, 61.5, [0.5, 1.0, 2.0, 4.0], sustained=False),
             _step("w1 http half=30.8/s", 30.8, 30.1, [0.07, 0.09, 0.1, 0.3])]
    return RunResult(started_at="2026-01-01T00:00:00+00:00", machine={"cpus": 2, "loadavg_before": [0.5, 0.4, 0.3]},
                     settings={"rates": [25.0, "max", "half"]},
                     passthrough=PassthroughResult(records=1000, partitions=8, elapsed_s=0.5, throughput=2000.0,
                                                   record_bytes=300, ack_rtt_p50_s=0.0004, ack_rtt_p99_s=0.004),
                     steps=steps, max_sustained=61.5, ratio_to_passthrough=61.5 / 2000.0)


def _document() -> dict[str, Any]:
    # Through real JSON, as a later comparison would read it back.
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(_run().to_dict()))
    return loaded


def test_a_run_survives_json_and_validates() -> None:
    document = _document()
    assert validate(document) == []
    assert document["schema"] == SCHEMA_VERSION
    assert document["steps"][1]["offered_rate"] is None
    assert document["steps"][0]["capture_to_webhook"]["p99_s"] == pytest.approx(LatencySummary.of(
        [0.06, 0.072, 0.096, 0.24]).p99_s)


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda d: d.pop("steps"), "steps: missing"),
    (lambda d: d.update(schema=99), "schema: 99 is not version"),
    (lambda d: d["steps"][0].pop("throughput"), "steps[0].throughput: missing"),
    (lambda d: d["steps"][1].update(feed="smtp"), "steps[1].feed: 'smtp' is not http or kafka"),
    (lambda d: d["steps"][0].update(offered_rate="fast"), "steps[0].offered_rate: must be a number or null"),
    (lambda d: d["steps"][2]["capture_to_webhook"].pop("p99_s"), "steps[2].capture_to_webhook.p99_s: missing"),
    (lambda d: d["steps"][0].update(leads=True), "steps[0].leads: must be a number, not a boolean"),
    (lambda d: d.update(passthrough={"records": 5}), "passthrough.throughput: missing"),
    (lambda d: d.update(ratio_to_passthrough="0.3"), "ratio_to_passthrough: must be a number or null"),
])
def test_validate_names_what_is_wrong(mutate: Any, problem: str) -> None:
    document = _document()
    mutate(document)
    problems = validate(document)
    assert any(problem in p for p in problems), problems


def test_the_plot_is_svg_with_a_point_per_step_and_a_curve_per_latency_sample() -> None:
    svg = render_svg(_document())
    root = ET.fromstring(svg)
    assert root.tag == f"{_SVG}svg"
    texts = [t.text or "" for t in root.iter(f"{_SVG}text")]
    # One marker per step: sustained steps are circles, the max step (fell behind) a hollow square.
    assert len(list(root.iter(f"{_SVG}circle"))) == 2
    assert len(list(root.iter(f"{_SVG}polyline"))) == 3
    assert any("250 ms goal" in t for t in texts)
    assert any("w1 http half=30.8/s p99" in t for t in texts)
    assert any("2,000 records/s" in t for t in texts)
    assert any("0.031×" in t for t in texts)  # 61.5 / 2000


def test_the_plot_escapes_labels_and_copes_with_steps_without_latencies() -> None:
    document = _document()
    document["steps"][0]["label"] = "<b>&co</b>"
    document["steps"][1]["webhook_sample"] = []
    root = ET.fromstring(render_svg(document))  # would raise on unescaped markup
    assert any("<b>&co</b>" in (t.text or "") for t in root.iter(f"{_SVG}text"))
    assert len(list(root.iter(f"{_SVG}polyline"))) == 2
    empty = ET.fromstring(render_svg({"steps": []}))
    assert empty.tag == f"{_SVG}svg"


_COLLAPSED = """\
main (leadflow/__main__.py);run (asyncio/base_events.py);Handle._run (asyncio/events.py);Agent._execute_actor (faust/agents/agent.py);run_leads (streams/agents/lead.py);decode (streams/codec.py);validate_python (pydantic/type_adapter.py) 30
main (leadflow/__main__.py);run (asyncio/base_events.py);Handle._run (asyncio/events.py);Agent._execute_actor (faust/agents/agent.py);run_leads (streams/agents/lead.py);apply (rules/lead.py) 10
main (leadflow/__main__.py);run (asyncio/base_events.py);Handle._run (asyncio/events.py);Sender._send_produce_req (aiokafka/producer/sender.py);write (asyncio/selector_events.py) 50
main (leadflow/__main__.py);run (asyncio/base_events.py);select (selectors.py) 10
main (leadflow/__main__.py);run (asyncio/base_events.py);Handle._run (asyncio/events.py);sleep (asyncio/tasks.py) 4
Thread._bootstrap (threading.py);ServiceThread._start_thread (mode/threads.py);select (selectors.py) 6
garbage line without a count
"""


def test_profile_summary_self_and_inclusive_time_and_areas() -> None:
    stacks = parse_collapsed(_COLLAPSED)
    assert len(stacks) == 6  # the garbage line is skipped
    profile = summarize(stacks)
    assert profile.samples == 110
    assert profile.self_top[0] == ("write (asyncio/selector_events.py)", 50)
    inclusive = dict(profile.inclusive_top)
    assert inclusive["run_leads (streams/agents/lead.py)"] == 40
    assert "main (leadflow/__main__.py)" not in inclusive  # only leadflow's own modules are listed
    assert dict(profile.tasks) == {"run_leads (streams/agents/lead.py)": 40,
                                   "Sender._send_produce_req (aiokafka/producer/sender.py)": 50,
                                   "(event loop waiting in select)": 10, "sleep (asyncio/tasks.py)": 4,
                                   "(a thread of its own: Faust runs the Kafka consumer in one)": 6}
    areas = dict(profile.areas)
    # A stdlib or asyncio leaf (the socket write) is charged to the library that called it; the
    # loop's own work stops at its dispatch; select is idle.
    assert areas == {"aiokafka": 50, "pydantic (decode)": 30, "leadflow pure rules": 10,
                     "idle (event loop waiting in select)": 16, "asyncio event loop": 4}
    text = render_summary(profile)
    assert " 45.5%  aiokafka" in text and "110 samples" in text


@pytest.mark.parametrize(("frame", "area"), [
    ("apply (rules/team.py)", "leadflow pure rules"),
    ("Store._set (faust/stores/rocksdb.py)", "faust"),
    ("Sender._send_produce_req (aiokafka/producer/sender.py)", "aiokafka"),
    ("dumps (json/encoder.py)", "other (stdlib, …)"),
])
def test_area_of(frame: str, area: str) -> None:
    assert area_of(frame) == area

"""What a benchmark run measured, as plain data: the JSON document written next to the plot.

``SCHEMA_VERSION`` changes whenever a field changes meaning; ``validate`` checks a document
read back (CI, tests, a later comparison) has every field of the version it claims.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ops.bench.stats import LatencySummary

__all__ = ["SCHEMA_VERSION", "Resources", "StepResult", "PassthroughResult", "RunResult", "validate"]

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Resources:
    """CPU and memory of the worker process(es) while a step ran (sampled, summed over workers)."""

    cpu_mean_pct: float | None  # 100 = one core busy all the time
    cpu_max_pct: float | None
    rss_max_mb: float | None
    samples: int = 0
    #: The whole machine's CPU meanwhile (100 = every core busy): is anything left to give?
    machine_cpu_mean_pct: float | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    """One load step: ``leads`` fed at ``offered_rate`` (``None``: unthrottled) over ``feed``."""

    label: str
    feed: str  # "http" or "kafka"
    workers: int
    offered_rate: float | None
    leads: int
    sent: int
    send_s: float  # first send -> last send acknowledged
    assigned: int
    delivered: int  # first verified webhook per lead
    elapsed_s: float  # first send -> last webhook (or the timeout)
    drain_s: float  # last send -> last webhook: the backlog left when the feed stopped
    throughput: float  # delivered / elapsed_s
    sustained: bool
    capture_to_assigned: LatencySummary
    capture_to_webhook: LatencySummary
    resources: Resources
    errors: dict[str, int] = field(default_factory=dict)
    #: capture -> webhook latencies (seconds), a sample of at most a few thousand, for the plot.
    webhook_sample: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PassthroughResult:
    """The raw aiokafka consume -> produce loop on the same broker: records per second."""

    records: int
    partitions: int
    elapsed_s: float
    throughput: float
    record_bytes: int
    #: One record sent and its acknowledgement awaited, one at a time (what each leadflow stage
    #: pays at least once): p50 and p99 in seconds.
    ack_rtt_p50_s: float | None = None
    ack_rtt_p99_s: float | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """A whole ``leadflow bench load`` invocation."""

    started_at: str
    machine: dict[str, Any]  # cpus, load average before and after, python, git commit
    settings: dict[str, Any]  # the command line's choices
    passthrough: PassthroughResult | None
    steps: list[StepResult]
    max_sustained: float
    ratio_to_passthrough: float | None  # leadflow's best throughput / the passthrough's
    schema: int = SCHEMA_VERSION
    #: Per worker count: Kafka records written per topic of that deployment, and the leads fed.
    kafka_records: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Per worker count (``"w1"``): the workers' CPU and memory with no leads coming in, sampled after
    #: the warm-up (timers, gauges, consumer polling: what a worker costs whatever the load).
    idle: dict[str, Resources] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": int, "started_at": str, "machine": dict, "settings": dict, "steps": list,
    "max_sustained": (int, float),
}
_STEP_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "label": str, "feed": str, "workers": int, "leads": int, "sent": int, "assigned": int, "delivered": int,
    "elapsed_s": (int, float), "drain_s": (int, float), "throughput": (int, float), "sustained": bool,
    "capture_to_assigned": dict, "capture_to_webhook": dict, "resources": dict, "errors": dict,
    "webhook_sample": list,
}
_LATENCY_KEYS = ("count", "mean_s", "p50_s", "p90_s", "p95_s", "p99_s", "max_s")


def validate(document: Mapping[str, Any]) -> list[str]:
    """Every problem with a result document (an empty list when it is valid)."""
    problems = _check(document, _REQUIRED, "")
    if document.get("schema") not in (None, SCHEMA_VERSION):
        problems.append(f"schema: {document.get('schema')!r} is not version {SCHEMA_VERSION}")
    passthrough = document.get("passthrough")
    if passthrough is not None and not isinstance(passthrough, dict):
        problems.append("passthrough: must be an object or null")
    elif isinstance(passthrough, dict):
        problems += _check(passthrough, {"records": int, "elapsed_s": (int, float), "throughput": (int, float)},
                           "passthrough.")
    ratio = document.get("ratio_to_passthrough")
    if ratio is not None and not isinstance(ratio, (int, float)):
        problems.append("ratio_to_passthrough: must be a number or null")
    for index, step in enumerate(document.get("steps") or []):
        where = f"steps[{index}]."
        if not isinstance(step, dict):
            problems.append(f"steps[{index}]: must be an object")
            continue
        problems += _check(step, _STEP_REQUIRED, where)
        if step.get("feed") not in ("http", "kafka"):
            problems.append(f"{where}feed: {step.get('feed')!r} is not http or kafka")
        offered = step.get("offered_rate")
        if offered is not None and not isinstance(offered, (int, float)):
            problems.append(f"{where}offered_rate: must be a number or null (unthrottled)")
        for name in ("capture_to_assigned", "capture_to_webhook"):
            summary = step.get(name)
            if isinstance(summary, dict):
                problems += [f"{where}{name}.{key}: missing" for key in _LATENCY_KEYS if key not in summary]
    return problems


def _check(obj: Mapping[str, Any], required: Mapping[str, type | tuple[type, ...]], where: str) -> list[str]:
    problems = []
    for key, kind in required.items():
        if key not in obj:
            problems.append(f"{where}{key}: missing")
        elif isinstance(obj[key], bool) and kind in (int, (int, float)):
            problems.append(f"{where}{key}: must be a number, not a boolean")
        elif not isinstance(obj[key], kind):
            problems.append(f"{where}{key}: expected {_name(kind)}, got {type(obj[key]).__name__}")
    return problems


def _name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__

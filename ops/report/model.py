"""What the one-page report shows, and how it is computed (pure: no I/O, no clock).

Two inputs give the same ``Summary``: the public history on ``lead.events`` (exact, per rep)
or a scrape of the workers' ``/metrics`` (counters since the workers started, per team).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ops.metrics import LATENCY_BUCKETS, LIFECYCLE, SPEED_BUCKETS

__all__ = ["Distribution", "LoadRow", "Summary", "STAGES", "summarize_events"]

#: Funnel stages in order (``nurture`` is a side exit and shown after ``lost``).
STAGES = ("lead", "mql", "sql", "opportunity", "won", "lost", "nurture")


@dataclass
class Distribution:
    """Observations binned by upper bounds (the metrics' buckets); the last bin is +Inf."""

    bounds: tuple[float, ...]
    counts: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0.0] * (len(self.bounds) + 1)

    def add(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    @property
    def total(self) -> float:
        return sum(self.counts)

    def share_within(self, seconds: float) -> float | None:
        """Share of observations at or under ``seconds`` (exact when it is a bound)."""
        if not self.total:
            return None
        inside = sum(c for b, c in zip(self.bounds, self.counts) if b <= seconds)
        return inside / self.total

    def quantile(self, q: float) -> float | None:
        """The bucket bound under which ``q`` of the observations fall (an upper estimate)."""
        if not self.total:
            return None
        running = 0.0
        for bound, count in zip((*self.bounds, math.inf), self.counts):
            running += count
            if running >= q * self.total:
                return bound
        return math.inf


@dataclass
class LoadRow:
    """Load of one rep (from events) or one team (from metrics)."""

    name: str
    assigned: float = 0
    contacted: float = 0
    open_leads: float | None = None
    capacity: float | None = None


@dataclass
class Summary:
    origin: str
    speed_to_lead: Distribution = field(default_factory=lambda: Distribution(SPEED_BUCKETS))
    system_delay: Distribution = field(default_factory=lambda: Distribution(SPEED_BUCKETS))
    rep_delay: Distribution = field(default_factory=lambda: Distribution(SPEED_BUCKETS))
    routing: Distribution = field(default_factory=lambda: Distribution(LATENCY_BUCKETS))
    contacts_in_sla: float = 0
    contacts_late: float = 0
    breaches: dict[str, float] = field(default_factory=dict)
    escalations: dict[str, float] = field(default_factory=dict)
    at_risk: float = 0
    captured: float = 0
    merged: float = 0
    #: ``{source: {stage: count}}``
    funnel: dict[str, dict[str, float]] = field(default_factory=dict)
    load_kind: str = "rep"
    load: list[LoadRow] = field(default_factory=list)
    events: int = 0

    @property
    def compliance(self) -> float | None:
        contacts = self.contacts_in_sla + self.contacts_late
        return self.contacts_in_sla / contacts if contacts else None


def _source(data: Mapping[str, Any]) -> str:
    return str(data.get("source") or "unknown")


def summarize_events(events: Iterable[Mapping[str, Any]], origin: str, top_sources: int = 12) -> Summary:
    """Aggregate ``lead.events`` records (``{"type", "lead_id", "at", "data"}``) into a ``Summary``."""
    s = Summary(origin=origin)
    source_of: dict[str, str] = {}
    funnel: defaultdict[str, Counter[str]] = defaultdict(Counter)
    reps: dict[str, LoadRow] = {}
    holder: dict[str, str] = {}
    breaches: Counter[str] = Counter()
    escalations: Counter[str] = Counter()
    for event in events:
        s.events += 1
        kind, data, lead_id = event.get("type"), event.get("data") or {}, str(event.get("lead_id"))
        if kind in ("lead.captured", "lead.reopened"):
            source_of[lead_id] = _source(data)
            s.captured += 1
        elif kind == "lead.touched":
            s.merged += 1
        elif kind == "lead.assigned":
            rep = str(data.get("rep_id"))
            reps.setdefault(rep, LoadRow(rep)).assigned += 1
            holder[lead_id] = rep
            if data.get("routing_seconds") is not None:
                s.routing.add(max(float(data["routing_seconds"]), 0.0))
        elif kind == "lead.contacted":
            rep = str(data.get("rep_id") or holder.get(lead_id, "unknown"))
            reps.setdefault(rep, LoadRow(rep)).contacted += 1
            if data.get("within_sla"):
                s.contacts_in_sla += 1
            else:
                s.contacts_late += 1
            for dist, key in ((s.speed_to_lead, "speed_to_lead_s"), (s.system_delay, "system_delay_s"),
                              (s.rep_delay, "rep_delay_s")):
                if data.get(key) is not None:
                    dist.add(max(float(data[key]), 0.0))
        elif kind == "lead.sla_breached":
            breaches[str(data.get("team_id"))] += 1
        elif kind == "lead.escalated":
            escalations[str(data.get("action"))] += 1
        elif kind == "lead.sla_at_risk":
            s.at_risk += 1
        move = LIFECYCLE.get(str(kind))
        if move is not None:
            stage = str(data.get("to") or move[1])
            funnel[source_of.get(lead_id, _source(data))][stage] += 1
    s.breaches, s.escalations = dict(breaches), dict(escalations)
    s.funnel = _top(funnel, top_sources)
    s.load = sorted(reps.values(), key=lambda r: (-r.assigned, r.name))
    return s


def _top(funnel: Mapping[str, Counter[str]], keep: int) -> dict[str, dict[str, float]]:
    """The ``keep`` biggest sources by leads; the rest summed as ``other sources``."""
    ranked = sorted(funnel.items(), key=lambda kv: (-kv[1]["lead"], kv[0]))
    out: dict[str, dict[str, float]] = {src: dict(c) for src, c in ranked[:keep]}
    rest: Counter[str] = Counter()
    for _, counts in ranked[keep:]:
        rest.update(counts)
    if rest:
        out["other sources"] = dict(rest)
    return out

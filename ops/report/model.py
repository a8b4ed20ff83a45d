"""What the one-page report shows, and how it is computed (pure: no I/O, no clock).

Two inputs give the same ``Summary``: the public history on ``lead.events`` (exact, per rep)
or a scrape of the workers' ``/metrics`` (counters since the workers started, per team).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ops.metrics import (
    FIRST_TOUCH_EVENTS,
    LATENCY_BUCKETS,
    SPEED_BUCKETS,
    escalation_took_effect,
    funnel_move,
    sla_outcome,
)

__all__ = ["Distribution", "LoadRow", "CostRow", "Summary", "STAGES", "MONTH_S", "ROUTING_TARGET_S",
           "summarize_events", "cost_rows", "net_closes", "TAKEN_BACK"]

#: Funnel stages in order: ``lead`` counts new people, ``reengaged`` known people's new cycles
#: (never leads again); ``nurture`` is a side exit and shown after ``lost``.
STAGES = ("lead", "reengaged", "mql", "sql", "opportunity", "won", "lost", "nurture")
#: The closes the CRM can take back: a move out of one (``from="won"``: corrected to lost, or reopened).
TAKEN_BACK = ("won", "lost")


def net_closes(funnel: Mapping[str, MutableMapping[str, Any]], taken_back: Mapping[str, Mapping[str, float]]) -> None:
    """The funnel's ``won`` and ``lost`` net of the closes the CRM took back, in place: the moves
    out of a close (``from="won"``, ``from="lost"``) come off it, never below 0, as the dashboard's
    win rate does (``ops.grafana.build._closed``). A deal lost, corrected to won, reopened and won
    again counts one won and no loss."""
    for source, closes in taken_back.items():
        counts = funnel.get(source)
        if counts is None:
            continue
        for close, n in closes.items():
            if close in counts:
                counts[close] = max(counts[close] - n, 0)

#: The report's routing target: a lead has a rep within this many seconds of its capture.
ROUTING_TARGET_S = 60.0

#: Events that end a cycle with no rep meant to have it (below the nurture threshold, closed by the
#: API): such a cycle never routed is not late.
_CLOSED_UNROUTED = frozenset({"lead.nurture", "lead.dispositioned"})

#: The month a ``monthly_spend`` is for, in seconds: 30 days, as the Grafana cost panels' ``[30d]``.
MONTH_S = 30 * 86400.0


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
    #: Leads the team's available reps can take now (capacity minus open leads, rep by rep).
    free_slots: float | None = None
    #: Open leads over the whole roster's capacity (``leadflow_team_utilization_ratio``).
    utilization: float | None = None


@dataclass
class CostRow:
    """Cost and return of one source with configured spend, over the summary's window."""

    source: str
    monthly_spend: float
    #: The monthly spend prorated to the window (``None`` when the window is unknown).
    spend: float | None
    leads: float
    mql: float
    sql: float
    won_revenue: float

    @staticmethod
    def _per(spend: float | None, count: float) -> float | None:
        return spend / count if spend is not None and count else None

    @property
    def per_lead(self) -> float | None:
        return self._per(self.spend, self.leads)

    @property
    def per_mql(self) -> float | None:
        return self._per(self.spend, self.mql)

    @property
    def per_sql(self) -> float | None:
        return self._per(self.spend, self.sql)

    @property
    def roi(self) -> float | None:
        """(won revenue − spend) / spend: −1 is nothing back, 0 break-even."""
        return (self.won_revenue - self.spend) / self.spend if self.spend else None


@dataclass
class Summary:
    origin: str
    speed_to_lead: Distribution = field(default_factory=lambda: Distribution(SPEED_BUCKETS))
    system_delay: Distribution = field(default_factory=lambda: Distribution(LATENCY_BUCKETS))
    rep_delay: Distribution = field(default_factory=lambda: Distribution(SPEED_BUCKETS))
    routing: Distribution = field(default_factory=lambda: Distribution(LATENCY_BUCKETS))
    #: Lead-cycles captured in the window with a rep within ``ROUTING_TARGET_S`` / not: routed
    #: later, or still unrouted more than ``ROUTING_TARGET_S`` after capture at the window's end
    #: (one younger than that is in neither).
    routed_on_time: float = 0
    routed_late: float = 0
    #: False from metrics: they count the routed leads only, so the unrouted (the denominator) are unknown.
    unrouted_known: bool = True
    contacts_in_sla: float = 0
    contacts_late: float = 0
    #: Lead-cycles whose first-contact SLA was met / missed (``ops.metrics.sla_outcome``): once each.
    sla_met: float = 0
    sla_missed: float = 0
    breaches: dict[str, float] = field(default_factory=dict)
    escalations: dict[str, float] = field(default_factory=dict)
    at_risk: float = 0
    #: Captures accepted: new people and known ones alike (the API's 202s).
    captured: float = 0
    #: New people (``lead`` in the funnel): one per person, at their first capture.
    new_leads: float = 0
    #: Captures of a known person (the API answered duplicate), the lead open or closed.
    merged: float = 0
    #: ``{source: {stage: count}}`` by first-touch source (``STAGES``; MQLs of every cycle).
    funnel: dict[str, dict[str, float]] = field(default_factory=dict)
    #: ``{source: MQLs of new leads}``: lead → MQL is this over the source's leads.
    new_mql: dict[str, float] = field(default_factory=dict)
    #: ``{source: won opportunities' amounts}`` by first-touch source.
    won_revenue: dict[str, float] = field(default_factory=dict)
    #: Configured ``{source: monthly spend}`` and its currency (empty: no spend configured).
    spend: dict[str, float] = field(default_factory=dict)
    currency: str | None = None
    #: Seconds the counts cover (``--since``, or since the earliest worker started); ``None``: unknown.
    window_s: float | None = None
    costs: list[CostRow] = field(default_factory=list)
    load_kind: str = "rep"
    load: list[LoadRow] = field(default_factory=list)
    events: int = 0

    @property
    def routed_within_target(self) -> float | None:
        """Share of the window's lead-cycles with a rep within ``ROUTING_TARGET_S``, the unrouted included."""
        if not self.unrouted_known:
            return None
        judged = self.routed_on_time + self.routed_late
        return self.routed_on_time / judged if judged else None

    @property
    def compliance(self) -> float | None:
        """SLA compliance per lead: met / (met + missed), leads nobody contacted included."""
        judged = self.sla_met + self.sla_missed
        return self.sla_met / judged if judged else None


def summarize_events(events: Iterable[Mapping[str, Any]], origin: str, top_sources: int = 12, *,
                     spend: Mapping[str, tuple[float, str]] | None = None, window_s: float | None = None,
                     until: datetime | None = None) -> Summary:
    """Aggregate ``lead.events`` records (``{"type", "lead_id", "cycle", "at", "first_source", "data"}``)
    into a ``Summary``.

    The funnel is ``ops.metrics.funnel_move``'s, by first-touch source like /metrics: every event
    names its lead's first-touch source (``first_source``). Events written before it was added
    teach it only through ``FIRST_TOUCH_EVENTS``; a lead seen only through others counts as ``unknown``.
    ``won`` and ``lost`` are net of the closes the CRM took back (``net_closes``), as on the dashboard.
    ``spend`` is the config's ``{source: (monthly spend, currency)}``, ``window_s`` the span read,
    ``until`` its end (default: the latest event's ``at``), which tells a lead never routed that is
    late for ``ROUTING_TARGET_S`` from one still young.
    """
    s = Summary(origin=origin, window_s=window_s)
    source_of: dict[str, str] = {}
    funnel: defaultdict[str, Counter[str]] = defaultdict(Counter)
    new_mql: Counter[str] = Counter()
    revenue: defaultdict[str, float] = defaultdict(float)
    taken_back: defaultdict[str, Counter[str]] = defaultdict(Counter)
    reps: dict[str, LoadRow] = {}
    holder: dict[str, str] = {}
    breaches: Counter[str] = Counter()
    escalations: Counter[str] = Counter()
    settled: set[tuple[str, int]] = set()  # lead-cycles whose SLA outcome is counted
    # Lead-cycles captured in the window -> their capture time, until routed or closed unrouted.
    unrouted: dict[tuple[str, int], datetime | None] = {}
    latest: datetime | None = None
    for event in events:
        s.events += 1
        kind, data, lead_id = str(event.get("type")), event.get("data") or {}, str(event.get("lead_id"))
        outcome = sla_outcome(kind, data)
        cycle = (lead_id, int(event.get("cycle") or 1))
        at = _when(event.get("at"))
        if at is not None and (latest is None or at > latest):
            latest = at
        if outcome is not None and cycle not in settled:
            # Once per lead-cycle, also for events written before lead.contacted said sla_breached:
            # a breach and the late call after it are one missed lead.
            settled.add(cycle)
            s.sla_met += outcome == "met"
            s.sla_missed += outcome == "missed"
        if event.get("first_source"):
            source_of.setdefault(lead_id, str(event["first_source"]))
        elif kind in FIRST_TOUCH_EVENTS and data.get("source"):  # events written before first_source
            source_of.setdefault(lead_id, str(data["source"]))
        if kind in ("lead.captured", "lead.reopened", "lead.touched"):
            s.captured += 1
            s.new_leads += kind == "lead.captured"
            s.merged += kind != "lead.captured"
            if kind != "lead.touched":  # a touch of an open lead is its cycle's, not a new one
                unrouted.setdefault(cycle, at)
        elif kind == "lead.assigned":
            rep = str(data.get("rep_id"))
            reps.setdefault(rep, LoadRow(rep)).assigned += 1
            holder[lead_id] = rep
            if data.get("routing_seconds") is not None:
                seconds = max(float(data["routing_seconds"]), 0.0)
                s.routing.add(seconds)
                if cycle in unrouted:  # captured in the window (an earlier capture is not judged)
                    del unrouted[cycle]
                    if seconds <= ROUTING_TARGET_S:
                        s.routed_on_time += 1
                    else:
                        s.routed_late += 1
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
            if escalation_took_effect(data):
                escalations[str(data.get("action"))] += 1
        elif kind == "lead.sla_at_risk":
            s.at_risk += 1
        elif kind in _CLOSED_UNROUTED and cycle in unrouted:
            # Closed before any rep had it: late only if it had already waited past the target.
            captured_at = unrouted.pop(cycle)
            s.routed_late += _waited(captured_at, at) > ROUTING_TARGET_S
        elif kind == "opportunity.won" and isinstance(won := data.get("revenue", data.get("amount")), (int, float)) \
                and won > 0:  # what this won adds for its deal, as leadflow_won_revenue_total counts it
            revenue[source_of.get(lead_id, "unknown")] += float(won)
        move = funnel_move(kind, data, int(event.get("cycle") or 1))
        if move is not None:
            source = source_of.get(lead_id, "unknown")
            funnel[source][move[1]] += 1
            if move[0] in TAKEN_BACK:
                taken_back[source][move[0]] += 1
            if move == ("lead", "mql"):
                new_mql[source] += 1
    end = until or latest
    s.routed_late += sum(_waited(captured_at, end) > ROUTING_TARGET_S for captured_at in unrouted.values())
    s.breaches, s.escalations = dict(breaches), dict(escalations)
    s.new_mql, s.won_revenue = dict(new_mql), dict(revenue)
    net_closes(funnel, taken_back)
    _spend(s, spend or {})
    s.costs = cost_rows(funnel, s)
    s.funnel = _top(funnel, top_sources)
    if "other sources" in s.funnel:
        s.new_mql["other sources"] = sum(n for src, n in new_mql.items() if src not in s.funnel)
    s.load = sorted(reps.values(), key=lambda r: (-r.assigned, r.name))
    return s


def _when(value: Any) -> datetime | None:
    """An event's ``at`` (ISO 8601, as the lead agent writes it) as an aware datetime; ``None`` if unreadable."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _waited(since: datetime | None, until: datetime | None) -> float:
    """Seconds from ``since`` to ``until``; 0 when either is unknown (not judged late)."""
    return (until - since).total_seconds() if since is not None and until is not None else 0.0


def _spend(s: Summary, spend: Mapping[str, tuple[float, str]]) -> None:
    s.spend = {source: amount for source, (amount, _) in spend.items()}
    s.currency = next((currency for _, currency in spend.values()), None)


def cost_rows(funnel: Mapping[str, Mapping[str, float]], s: Summary) -> list[CostRow]:
    """One row per source with configured spend: the spend prorated to ``s.window_s`` (a month is
    ``MONTH_S``) over its new leads, MQLs and SQLs, and its won revenue."""
    rows = []
    for source, monthly in sorted(s.spend.items()):
        counts = funnel.get(source, {})
        spent = monthly * s.window_s / MONTH_S if s.window_s else None
        rows.append(CostRow(source=source, monthly_spend=monthly, spend=spent, leads=counts.get("lead", 0),
                            mql=counts.get("mql", 0), sql=counts.get("sql", 0),
                            won_revenue=s.won_revenue.get(source, 0.0)))
    return rows


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

"""What the live view knows: ``lead.events``, webhook deliveries and feed answers folded into counts.

Only ids, company names, rep and team ids and timings are kept: never an e-mail or a phone,
so nothing the view renders can leak them.
"""
from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ops.demo.disposer import Disposition
    from ops.demo.feed import FeedResult
    from ops.demo.receiver import Delivery

__all__ = ["Decision", "DemoStats", "percentile"]

_WINDOW = 2_000  # latency samples kept for the percentiles
_COMPANY_LIMIT = 5_000


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) by linear interpolation between ranks; ``None`` if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(slots=True)
class Decision:
    """One routing outcome shown in the view: assigned to ``rep_id``, or queued when it is ``None``."""

    at: datetime
    lead_id: str
    cycle: int
    team_id: str
    rep_id: str | None
    reason: str
    company: str | None = None
    notify_s: float | None = None
    notify_failed: bool = False


@dataclass(slots=True)
class DemoStats:
    """Running totals for the demo; fed by the view's consumer and the demo components' callbacks."""

    started_at: datetime
    capacities: dict[str, int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)
    feed: Counter[str] = field(default_factory=Counter)
    worked: Counter[str] = field(default_factory=Counter)
    routing_s: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    notify_s: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    received_s: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    recent: deque[Decision] = field(default_factory=lambda: deque(maxlen=8))
    open_by_rep: dict[str, set[str]] = field(default_factory=dict)
    waiting: dict[str, set[str]] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)
    companies: dict[str, str] = field(default_factory=dict)
    last_feed_error: str | None = None
    status: str | None = None  # e.g. "waiting for topic …" while the view is not consuming yet
    last_event_at: datetime | None = None

    def open_leads(self, rep_id: str) -> int:
        return len(self.open_by_rep.get(rep_id, ()))

    def queue_depth(self, team_id: str) -> int:
        return len(self.waiting.get(team_id, ()))

    # --- lead.events ----------------------------------------------------------------------

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Fold one ``lead.events`` value in; unknown event types are ignored."""
        kind, lead_id, data = event.get("type"), event.get("lead_id"), event.get("data")
        if not isinstance(kind, str) or not isinstance(lead_id, str) or not isinstance(data, Mapping):
            self.counts["unreadable"] += 1
            return
        handler = _HANDLERS.get(kind)
        if handler is None:
            return
        self.counts[kind.removeprefix("lead.")] += 1
        at = _time(event.get("at")) or self.started_at
        self.last_event_at = at if self.last_event_at is None else max(at, self.last_event_at)
        handler(self, lead_id, _int(event.get("cycle")), at, data)

    def _captured(self, lead_id: str, cycle: int, at: datetime, data: Mapping[str, Any]) -> None:
        lead = data.get("lead")
        company = lead.get("company") if isinstance(lead, Mapping) else None
        if isinstance(company, str) and company:
            self._remember_company(lead_id, company)

    def _touched(self, lead_id: str, cycle: int, at: datetime, data: Mapping[str, Any]) -> None:
        pass  # counted; the owner is told by the engine, nothing changes for the view

    def _queued(self, lead_id: str, cycle: int, at: datetime, data: Mapping[str, Any]) -> None:
        team_id = str(data.get("team_id", "?"))
        self.waiting.setdefault(team_id, set()).add(lead_id)
        self.recent.append(Decision(at, lead_id, cycle, team_id, None, _reason(data), self.companies.get(lead_id)))

    def _assigned(self, lead_id: str, cycle: int, at: datetime, data: Mapping[str, Any]) -> None:
        rep_id, team_id = str(data.get("rep_id", "?")), str(data.get("team_id", "?"))
        self._release(lead_id)
        self.open_by_rep.setdefault(rep_id, set()).add(lead_id)
        self.owner[lead_id] = rep_id
        if isinstance(seconds := data.get("routing_seconds"), int | float):
            self.routing_s.append(float(seconds))
        self.recent.append(Decision(at, lead_id, cycle, team_id, rep_id, _reason(data), self.companies.get(lead_id)))

    def _notified(self, lead_id: str, cycle: int, at: datetime, data: Mapping[str, Any]) -> None:
        if data.get("event_type", "lead.assigned") != "lead.assigned":
            return  # reminders and escalations have their own clocks
        seconds = data.get("notify_seconds")
        if isinstance(seconds, int | float):
            self.notify_s.append(float(seconds))
        if (decision := self._decision_for(lead_id, cycle)) is not None:
            decision.notify_s = float(seconds) if isinstance(seconds, int | float) else decision.notify_s
            decision.notify_failed = False

    def _notify_failed(self, lead_id: str, cycle: int, at: datetime, data: Mapping[str, Any]) -> None:
        if (decision := self._decision_for(lead_id, cycle)) is not None and decision.notify_s is None:
            decision.notify_failed = True

    def _dispositioned(self, lead_id: str, cycle: int, at: datetime, data: Mapping[str, Any]) -> None:
        self._release(lead_id)

    def _release(self, lead_id: str) -> None:
        if (rep_id := self.owner.pop(lead_id, None)) is not None:
            self.open_by_rep.get(rep_id, set()).discard(lead_id)
        for waiting in self.waiting.values():
            waiting.discard(lead_id)

    def _decision_for(self, lead_id: str, cycle: int) -> Decision | None:
        for decision in reversed(self.recent):
            if decision.lead_id == lead_id and decision.cycle == cycle and decision.rep_id is not None:
                return decision
        return None

    def _remember_company(self, lead_id: str, company: str) -> None:
        self.companies[lead_id] = company
        if len(self.companies) > _COMPANY_LIMIT:
            del self.companies[next(iter(self.companies))]

    # --- the demo components' callbacks ---------------------------------------------------

    def on_delivery(self, delivery: Delivery) -> None:
        """The receiver's callback."""
        if delivery.status == 401:
            self.webhooks["bad_signature"] += 1
        elif delivery.duplicate:
            self.webhooks["redelivered"] += 1
        elif delivery.status == 503:
            self.webhooks["simulated_outage"] += 1
        elif delivery.status == 204:
            self.webhooks["received"] += 1
            if delivery.latency_s is not None:
                self.received_s.append(delivery.latency_s)
            if delivery.lead_id and delivery.company and delivery.lead_id not in self.companies:
                self._remember_company(delivery.lead_id, delivery.company)
        else:
            self.webhooks["malformed"] += 1

    def on_feed_result(self, result: FeedResult) -> None:
        """The feed's callback."""
        self.feed["sent"] += 1
        self.feed[result.outcome] += 1
        if result.lead_id and result.company:
            self._remember_company(result.lead_id, result.company)
        if result.error:
            self.last_feed_error = result.error

    def on_disposition(self, result: Disposition) -> None:
        """The disposer's callback."""
        ok = result.status is not None and result.status < 400
        self.worked[result.outcome if ok else "failed"] += 1


_HANDLERS = {
    "lead.captured": DemoStats._captured,
    "lead.reopened": DemoStats._captured,
    "lead.touched": DemoStats._touched,
    "lead.queued": DemoStats._queued,
    "lead.assigned": DemoStats._assigned,
    "lead.notified": DemoStats._notified,
    "lead.notification_failed": DemoStats._notify_failed,
    "lead.dispositioned": DemoStats._dispositioned,
}


def _reason(data: Mapping[str, Any]) -> str:
    decision = data.get("decision")
    reason = decision.get("reason") if isinstance(decision, Mapping) else None
    return reason if isinstance(reason, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _time(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None

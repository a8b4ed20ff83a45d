"""Own each lead: apply lead commands to ``lead_state`` and send what the transition returns."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ops.metrics import escalation_took_effect
from rules.commands import Outgoing
from rules.lead import LeadState, apply, next_timer
from streams.agents._batch import acting_for, apply_batch, take_ready
from streams.agents.sla import track
from streams.app import app, runtime
from streams.tables.lead_state import lead_state
from streams.tables.outcome_board import with_outcomes
from streams.tables.sla_overdue import keep_overdue
from streams.tables.sla_timers import sla_timers
from streams.tables.team_windows import signals_of
from streams.topics import lead_commands, publish

__all__ = ["run_leads"]



def team_signals_of(outgoing: tuple[Outgoing, ...]) -> list[Outgoing]:
    """The per-team SLA signals a transition's events carry, re-keyed by team for the windows."""
    signals = []
    for message in outgoing:
        if message.channel != "lead.events":
            continue
        data = message.value["data"]
        for signal in signals_of(message.value["type"], data):
            signals.append(Outgoing(channel="team.signals", key=data["team_id"],
                                    value={"signal": signal, "at": message.value["at"]}))
    return signals


def _observe(outgoing: tuple[Outgoing, ...], state: Any = None) -> None:
    metrics = runtime.metrics
    # Marketing credits the first touch: the funnel counts a lead under the source that brought it.
    source = state.first_touch.source if state is not None else None
    for message in outgoing:
        if message.channel != "lead.events":
            continue
        event: dict[str, Any] = message.value
        kind, data = event["type"], event["data"]
        metrics.count_sla_outcome(kind, data)
        if kind == "lead.sla_breached":
            metrics.sla_breaches.labels(data["team_id"]).inc()
        elif kind == "lead.sla_at_risk":
            metrics.sla_at_risk.labels(data["team_id"]).inc()
        elif kind == "lead.escalated" and escalation_took_effect(data):
            metrics.sla_escalations.labels(data["team_id"], data["action"]).inc()
        if kind == "lead.assigned":
            metrics.leads_assigned.labels(data["team_id"]).inc()
            if "routing_seconds" in data:  # the cycle's first assignment only
                metrics.routing_latency.observe(max(data["routing_seconds"], 0.0))
        elif kind == "lead.queued":
            metrics.leads_queued.labels(data["team_id"]).inc()
        elif kind in ("lead.touched", "lead.reopened"):
            # A known person captured again (the API answered duplicate), the lead open or closed.
            metrics.leads_duplicate.inc()
        elif kind == "opportunity.won":
            # What this won adds to the revenue counted for its deal (none when won again after a
            # correction or a reopen at the same amount); events from before carry only the amount.
            metrics.won(data.get("revenue", data.get("amount")), source)
        elif kind == "lead.notified" and "notify_seconds" in data:  # the cycle's rep told, once
            metrics.notify_latency.observe(max(data["notify_seconds"], 0.0))
        elif kind == "lead.contacted":
            _contacted(data)
        metrics.lifecycle_move(kind, data, source, int(event.get("cycle") or 1))


def _contacted(data: dict[str, Any]) -> None:
    """Speed-to-lead, whole and split into the system's part and the rep's part."""
    metrics, team = runtime.metrics, str(data.get("team_id") or "unknown")
    metrics.leads_contacted.labels(team, "true" if data.get("within_sla") else "false").inc()
    for histogram, key in ((metrics.speed_to_lead, "speed_to_lead_s"), (metrics.system_delay, "system_delay_s"),
                           (metrics.rep_delay, "rep_delay_s")):
        if data.get(key) is not None:
            histogram.labels(team).observe(max(float(data[key]), 0.0))


def _keep_timer(lead_id: str, state: Any) -> None:
    timer = next_timer(state)
    if timer != sla_timers.get(lead_id):
        if timer is None:
            sla_timers.pop(lead_id, None)
        else:
            sla_timers[lead_id] = timer
    # Always (re)index: a timer popped for a command that turned out early must come back.
    track(lead_id, timer)


def _mark(state: Any, partition: int, offset: int) -> Any:
    """The state, recording where the command that made it was read (``apply_batch``)."""
    if isinstance(state, LeadState):
        return replace(state, applied_partition=partition, applied_offset=offset)
    return state


@app.agent(lead_commands, concurrency=1)
async def run_leads(commands: Any) -> None:
    async for events in take_ready(commands):
        now, policy = runtime.clock.now(), with_outcomes(runtime.policy)

        def step(current: Any, command: Any) -> tuple[Any, Any]:
            transition = apply(current, command, now, policy)
            return (transition.state if transition.state is not None else current), transition

        leads, applied = apply_batch(events, "lead", lead_state.get, step, mark=_mark)
        outgoing: list[Outgoing] = []
        for _, transition in applied:
            outgoing += transition.outgoing
            outgoing += team_signals_of(transition.outgoing)
        # Messages first, acknowledged; then the states (see ``publish`` for why this order).
        await publish(outgoing)
        for lead_id, lead in leads.items():
            with acting_for(lead.event):
                if lead.state is not None and lead.state is not lead.before:
                    lead_state[lead_id] = lead.state
                _keep_timer(lead_id, lead.state)
                keep_overdue(lead_id, lead.state)
        for name, transition in applied:
            runtime.metrics.commands_processed.labels("lead", name).inc()
            _observe(transition.outgoing, transition.state)

"""How a rep is chosen: eligibility filters, then the team's strategy, every step explained."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from rules.commands import Candidate, RoutingDecision
from rules.roster import RepState

__all__ = ["STRATEGIES", "Choice", "TeamRule", "eligibility", "choose_rep", "select_team"]

STRATEGIES = ("weighted_round_robin",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """The decision plus the reps whose round-robin credit changed (winner included)."""

    decision: RoutingDecision
    reps: dict[str, RepState]


def eligibility(rep: RepState, *, excluded: Sequence[str] = ()) -> tuple[str, ...]:
    """Return why ``rep`` cannot take a lead now (empty when they can)."""
    reasons: list[str] = []
    if rep.presence != "available":
        reasons.append(f"presence is {rep.presence}")
    if rep.load >= rep.profile.capacity:
        reasons.append(f"at capacity ({rep.load}/{rep.profile.capacity} open)")
    if rep.rep_id in excluded:
        reasons.append("excluded for this lead")
    return tuple(reasons)


def _idle_key(rep: RepState) -> tuple[int, float, str]:
    # Never-assigned reps first, then the longest idle, then a stable order.
    if rep.last_assigned_at is None:
        return (0, 0.0, rep.rep_id)
    return (1, rep.last_assigned_at.timestamp(), rep.rep_id)


def choose_rep(
    team_id: str,
    reps: Sequence[RepState],
    *,
    now: datetime,
    excluded: Sequence[str] = (),
) -> Choice:
    """Pick a rep by smooth weighted round robin among the eligible; ties go to the longest idle.

    Every eligible rep earns its weight in credit; the richest wins and pays the total.
    Over any window each rep's share converges to weight / sum(weights), without bursts.
    """
    candidates: list[Candidate] = []
    eligible: list[RepState] = []
    for rep in sorted(reps, key=lambda r: r.rep_id):
        reasons = eligibility(rep, excluded=excluded)
        candidates.append(
            Candidate(
                rep_id=rep.rep_id,
                eligible=not reasons,
                reasons=reasons,
                open_leads=rep.load,
                capacity=rep.profile.capacity,
                weight=rep.profile.weight,
            )
        )
        if not reasons:
            eligible.append(rep)
    strategy = "weighted_round_robin"
    if not eligible:
        reason = "no rep is eligible" if reps else "the team has no reps"
        decision = RoutingDecision(
            team_id=team_id, strategy=strategy, candidates=tuple(candidates),
            winner=None, reason=reason, decided_at=now,
        )
        return Choice(decision=decision, reps={})
    total = sum(r.profile.weight for r in eligible)
    earned = [replace(r, credit=r.credit + r.profile.weight) for r in eligible]
    best = max(earned, key=lambda r: (r.credit, _invert(_idle_key(r))))
    changed = {r.rep_id: r for r in earned}
    changed[best.rep_id] = replace(best, credit=best.credit - total)
    ties = [r.rep_id for r in earned if r.credit == best.credit]
    reason = (
        f"weighted round robin: highest credit ({best.credit}) among {len(eligible)} eligible"
        + (f"; tie with {', '.join(t for t in ties if t != best.rep_id)} broken by longest idle" if len(ties) > 1 else "")
    )
    decision = RoutingDecision(
        team_id=team_id, strategy=strategy, candidates=tuple(candidates),
        winner=best.rep_id, reason=reason, decided_at=now,
    )
    return Choice(decision=decision, reps=changed)


def _invert(key: tuple[int, float, str]) -> tuple[int, float, tuple[int, ...]]:
    # max() picks the largest; invert the idle key so the *smallest* (longest idle) wins.
    group, stamp, rep_id = key
    return (-group, -stamp, tuple(-ord(c) for c in rep_id))


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamRule:
    """Send matching leads to ``team``; an empty criterion matches anything."""

    team: str
    countries: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


def select_team(*, country: str | None, source: str, rules: Sequence[TeamRule], default_team: str) -> tuple[str, str]:
    """Return the team for a lead and why: the first matching rule wins, else the default team."""
    for index, rule in enumerate(rules):
        if rule.countries and (country or "") not in rule.countries:
            continue
        if rule.sources and source not in rule.sources:
            continue
        return rule.team, f"routing rule #{index + 1} matched"
    return default_team, "no routing rule matched; default team"

"""How a rep is chosen: eligibility filters, then the team's strategy, every step explained.

Strategies (``TeamState.strategy``, from the team's config):

* ``weighted_round_robin`` — smooth weighted round robin (nginx): every eligible rep earns its
  weight in credit, the richest wins and pays the eligible total. Only eligible reps earn, and a
  rep coming back from away is calibrated to no more than neutral credit (Cal.com's fair-share
  calibration), so joining or returning never brings a catch-up burst.
* ``least_loaded`` — the lowest open / capacity ratio.
* ``most_available`` — the most free slots (capacity - open).

Ties always go to the longest idle rep (never assigned first), then the rep id.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction

from rules.commands import Candidate, RouteLead, RoutingDecision
from rules.eligibility import eligibility
from rules.roster import RepState

__all__ = ["STRATEGIES", "DEFAULT_STRATEGY", "Choice", "TeamRule", "eligibility", "choose_rep", "select_team"]

STRATEGIES = ("weighted_round_robin", "least_loaded", "most_available")
DEFAULT_STRATEGY = "weighted_round_robin"


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """The decision plus the reps whose round-robin credit changed (winner included)."""

    decision: RoutingDecision
    reps: dict[str, RepState]


def _idle_key(rep: RepState) -> tuple[int, float, str]:
    # Never-assigned reps first, then the longest idle, then a stable order.
    if rep.last_assigned_at is None:
        return (0, 0.0, rep.rep_id)
    return (1, rep.last_assigned_at.timestamp(), rep.rep_id)


def _ranked(reps: Sequence[RepState], score: Callable[[RepState], Fraction | int]) -> tuple[RepState, list[str]]:
    """The rep with the *lowest* score, ties to the longest idle; and who tied with them."""
    best = min(reps, key=lambda r: (score(r), _idle_key(r)))
    ties = [r.rep_id for r in reps if score(r) == score(best) and r.rep_id != best.rep_id]
    return best, ties


def choose_rep(
    team_id: str,
    reps: Sequence[RepState],
    *,
    now: datetime,
    excluded: Sequence[str] = (),
    lead: RouteLead | None = None,
    strategy: str = DEFAULT_STRATEGY,
) -> Choice:
    """Filter the team's reps for this lead at ``now``, then pick one by the team's strategy."""
    candidates: list[Candidate] = []
    eligible: list[RepState] = []
    for rep in sorted(reps, key=lambda r: r.rep_id):
        reasons = eligibility(rep, now=now, lead=lead, excluded=excluded)
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
    if not eligible:
        reason = "no rep is eligible" if reps else "the team has no reps"
        decision = RoutingDecision(
            team_id=team_id, strategy=strategy, candidates=tuple(candidates),
            winner=None, reason=reason, decided_at=now,
        )
        return Choice(decision=decision, reps={})
    changed: dict[str, RepState] = {}
    if strategy == "least_loaded":
        best, ties = _ranked(eligible, lambda r: Fraction(r.load, r.profile.capacity))
        reason = f"least loaded: {best.load}/{best.profile.capacity} open among {len(eligible)} eligible"
    elif strategy == "most_available":
        best, ties = _ranked(eligible, lambda r: -(r.profile.capacity - r.load))
        reason = f"most available: {best.profile.capacity - best.load} free slot(s) among {len(eligible)} eligible"
    else:
        total = sum(r.profile.weight for r in eligible)
        earned = [replace(r, credit=r.credit + r.profile.weight) for r in eligible]
        best, ties = _ranked(earned, lambda r: -r.credit)
        changed = {r.rep_id: r for r in earned}
        changed[best.rep_id] = replace(best, credit=best.credit - total)
        reason = f"weighted round robin: highest credit ({best.credit}) among {len(eligible)} eligible"
    if ties:
        reason += f"; tie with {', '.join(ties)} broken by longest idle"
    decision = RoutingDecision(
        team_id=team_id, strategy=strategy, candidates=tuple(candidates),
        winner=best.rep_id, reason=reason, decided_at=now,
    )
    return Choice(decision=decision, reps=changed)


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

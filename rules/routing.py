"""How a rep is chosen: eligibility filters, then the team's strategy, every step explained.

Strategies (``TeamState.strategy``, from the team's config):

* ``weighted_round_robin`` — smooth weighted round robin (nginx): every eligible rep earns its
  weight in credit, the richest wins and pays the eligible total. Only eligible reps earn, and a
  rep coming back from away is calibrated to no more than neutral credit (Cal.com's fair-share
  calibration), so joining or returning never brings a catch-up burst.
* ``least_loaded`` — the lowest open / capacity ratio.
* ``most_available`` — the most free slots (capacity - open).

Ties always go to the longest idle rep (never assigned first), then the rep id.

Before the strategy, the account owner: a lead whose domain matched an owned account
(``RouteLead.account_owner``) goes to that owner when they are in the team and eligible; the
decision says "account owner". Otherwise the strategy picks, and the reason says why the owner
could not take it. An owner's assignment earns and costs no round-robin credit: owned leads sit
outside the rotation.

Which team a lead goes to in the first place is ``rules.team_selection`` (re-exported here).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction

from rules.commands import Candidate, RouteLead, RoutingDecision
from rules.eligibility import eligibility
from rules.roster import RepState
from rules.team_selection import LeadFacts, Region, SizeRange, TeamRule, facts_of, select_team

__all__ = ["STRATEGIES", "DEFAULT_STRATEGY", "OWNER_STRATEGY", "Choice", "TeamRule", "Region", "SizeRange",
           "LeadFacts", "facts_of", "eligibility", "choose_rep", "select_team"]

STRATEGIES = ("weighted_round_robin", "least_loaded", "most_available")
DEFAULT_STRATEGY = "weighted_round_robin"
#: ``RoutingDecision.strategy`` when the account owner got the lead.
OWNER_STRATEGY = "account_owner"


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
                open_leads=rep.open_leads,
                capacity=rep.profile.capacity,
                weight=rep.profile.weight,
            )
        )
        if not reasons:
            eligible.append(rep)
    owner_note = ""
    owner = lead.account_owner if lead is not None else None
    if owner:
        mine = next((c for c in candidates if c.rep_id == owner), None)
        if mine is not None and mine.eligible:
            decision = RoutingDecision(
                team_id=team_id, strategy=OWNER_STRATEGY, candidates=tuple(candidates), winner=owner,
                reason=f"account owner: {owner} owns the lead's account and is eligible", decided_at=now,
            )
            return Choice(decision=decision, reps={})
        owner_note = (f"account owner {owner} is not in team {team_id}" if mine is None
                      else f"account owner {owner} is not eligible ({'; '.join(mine.reasons)})")
    if not eligible:
        reason = "no rep is eligible" if reps else "the team has no reps"
        if owner_note:
            reason = f"{owner_note}; {reason}"
        decision = RoutingDecision(
            team_id=team_id, strategy=strategy, candidates=tuple(candidates),
            winner=None, reason=reason, decided_at=now,
        )
        return Choice(decision=decision, reps={})
    changed: dict[str, RepState] = {}
    if strategy == "least_loaded":
        best, ties = _ranked(eligible, lambda r: Fraction(r.open_leads, r.profile.capacity))
        reason = f"least loaded: {best.open_leads}/{best.profile.capacity} open among {len(eligible)} eligible"
    elif strategy == "most_available":
        best, ties = _ranked(eligible, lambda r: -(r.profile.capacity - r.open_leads))
        reason = f"most available: {best.profile.capacity - best.open_leads} free slot(s) among {len(eligible)} eligible"
    else:
        total = sum(r.profile.weight for r in eligible)
        earned = [replace(r, credit=r.credit + r.profile.weight) for r in eligible]
        best, ties = _ranked(earned, lambda r: -r.credit)
        changed = {r.rep_id: r for r in earned}
        changed[best.rep_id] = replace(best, credit=best.credit - total)
        reason = f"weighted round robin: highest credit ({best.credit}) among {len(eligible)} eligible"
    if ties:
        reason += f"; tie with {', '.join(ties)} broken by longest idle"
    if owner_note:
        reason = f"{owner_note}; {reason}"
    decision = RoutingDecision(
        team_id=team_id, strategy=strategy, candidates=tuple(candidates),
        winner=best.rep_id, reason=reason, decided_at=now,
    )
    return Choice(decision=decision, reps=changed)

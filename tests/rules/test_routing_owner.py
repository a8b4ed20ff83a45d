"""The account owner first: an eligible owner gets the lead, otherwise the strategy does, with the reason."""
from __future__ import annotations

from datetime import timedelta

import pytest

from rules.commands import RepProfile, RouteLead
from rules.roster import RepState
from rules.routing import OWNER_STRATEGY, STRATEGIES, choose_rep
from tests.rules._sim import T0


def rep(rep_id: str, *, presence: str = "available", load: int = 0, capacity: int = 3, credit: int = 0) -> RepState:
    return RepState(
        profile=RepProfile(rep_id=rep_id, team_id="ent", capacity=capacity),
        presence=presence,  # type: ignore[arg-type]
        load=load,
        credit=credit,
    )


def route(owner: str | None, **fields: object) -> RouteLead:
    return RouteLead(team_id="ent", lead_id="ld_1", route_id="ld_1:1:1", requested_at=T0, account_owner=owner,
                     **fields)  # type: ignore[arg-type]


NOW = T0 + timedelta(minutes=1)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_eligible_owner_gets_the_lead_whatever_the_strategy(strategy: str) -> None:
    # ben would win every strategy (most credit, least loaded, most free slots).
    reps = [rep("ana", load=2, credit=-5), rep("ben", credit=9)]
    choice = choose_rep("ent", reps, now=NOW, lead=route("ana"), strategy=strategy)
    d = choice.decision
    assert (d.winner, d.strategy) == ("ana", OWNER_STRATEGY)
    assert d.reason == "account owner: ana owns the lead's account and is eligible"
    assert [c.rep_id for c in d.candidates] == ["ana", "ben"] and all(c.eligible for c in d.candidates)
    # Owned leads sit outside the rotation: nobody's round-robin credit moves.
    assert choice.reps == {}


@pytest.mark.parametrize(("owner", "note"), [
    (rep("ana", load=3), "account owner ana is not eligible (at capacity (3/3 open))"),
    (rep("ana", presence="offline"), "account owner ana is not eligible (presence is offline)"),
    (rep("ana", presence="busy", load=3), "account owner ana is not eligible (presence is busy; at capacity (3/3 open))"),
])
def test_an_owner_who_cannot_take_it_falls_back_to_the_strategy_and_says_why(owner: RepState, note: str) -> None:
    choice = choose_rep("ent", [owner, rep("ben"), rep("cy")], now=NOW, lead=route("ana"),
                        strategy="weighted_round_robin")
    d = choice.decision
    assert d.winner in ("ben", "cy") and d.strategy == "weighted_round_robin"
    assert d.reason.startswith(note + "; weighted round robin: ")
    assert choice.reps  # the strategy ran: credit changed


def test_an_owner_excluded_for_this_lead_is_not_preferred() -> None:
    # A rep who had the lead (or declined it) is never handed it back, even as the owner.
    d = choose_rep("ent", [rep("ana"), rep("ben")], now=NOW, lead=route("ana", excluded_reps=("ana",)),
                   strategy="least_loaded").decision
    assert d.winner == "ben"
    assert d.reason.startswith("account owner ana is not eligible (excluded for this lead); least loaded: ")


def test_an_owner_outside_the_team_is_named() -> None:
    d = choose_rep("ent", [rep("ben")], now=NOW, lead=route("zoe"), strategy="most_available").decision
    assert d.winner == "ben"
    assert d.reason.startswith("account owner zoe is not in team ent; most available: ")


def test_nobody_eligible_keeps_the_owner_note() -> None:
    d = choose_rep("ent", [rep("ana", presence="offline"), rep("ben", load=3)], now=NOW, lead=route("ana")).decision
    assert d.winner is None
    assert d.reason == "account owner ana is not eligible (presence is offline); no rep is eligible"


def test_no_owner_is_the_plain_strategy() -> None:
    with_none = choose_rep("ent", [rep("ana"), rep("ben")], now=NOW, lead=route(None)).decision
    without_lead = choose_rep("ent", [rep("ana"), rep("ben")], now=NOW).decision
    assert with_none.reason == without_lead.reason and "account owner" not in with_none.reason

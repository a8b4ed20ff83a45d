"""How a rep is chosen: eligibility reasons, weighted round robin, idle tie-break, team selection."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.commands import LeadAssigned, RepProfile, RouteLead, SetPresence, UpsertRep
from rules.roster import RepState
from rules.routing import choose_rep, eligibility
from tests.rules._sim import T0, TeamDriver


def rep(rep_id: str, *, weight: int = 1, capacity: int = 5, presence: str = "available", load: int = 0,
        last: int | None = None, credit: int = 0) -> RepState:
    """A rep; ``last`` is minutes after T0 of the last assignment (None: never assigned)."""
    return RepState(
        profile=RepProfile(rep_id=rep_id, team_id="t", weight=weight, capacity=capacity),
        presence=presence,  # type: ignore[arg-type]
        load=load,
        last_assigned_at=None if last is None else T0 + timedelta(minutes=last),
        credit=credit,
    )


def picks(reps: list[RepState], n: int, *, available: dict[int, set[str]] | None = None) -> list[str]:
    """Run ``choose_rep`` ``n`` times, keeping credit and idle time like the team does (no capacity use)."""
    by_id = {r.rep_id: r for r in reps}
    winners: list[str] = []
    for i in range(n):
        now = T0 + timedelta(seconds=i + 1)
        present = [replace(r, presence="available" if available is None or r.rep_id in available.get(i, set(by_id))
                           else "offline") for r in by_id.values()]
        choice = choose_rep("t", present, now=now)
        assert choice.decision.winner is not None
        for rep_id, changed in choice.reps.items():
            by_id[rep_id] = replace(by_id[rep_id], credit=changed.credit)
        winner = choice.decision.winner
        by_id[winner] = replace(by_id[winner], last_assigned_at=now)
        winners.append(winner)
    return winners


# --- eligibility --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "excluded", "reasons"),
    [
        (rep("a"), (), ()),
        (rep("a", presence="offline"), (), ("presence is offline",)),
        (rep("a", presence="busy"), (), ("presence is busy",)),
        (rep("a", load=5), (), ("at capacity (5/5 open)",)),
        (rep("a", load=3, capacity=2), (), ("at capacity (3/2 open)",)),
        (rep("a", capacity=0), (), ("at capacity (0/0 open)",)),
        (rep("a"), ("a",), ("excluded for this lead",)),
        (rep("a"), ("b",), ()),
        (rep("a", presence="offline", load=5), ("a",),
         ("presence is offline", "at capacity (5/5 open)", "excluded for this lead")),
    ],
)
def test_eligibility_reasons(state: RepState, excluded: tuple[str, ...], reasons: tuple[str, ...]) -> None:
    assert eligibility(state, now=T0, excluded=excluded) == reasons


def test_decision_record_names_every_candidate_and_why() -> None:
    reps = [rep("c", presence="busy"), rep("a", load=5), rep("b", weight=3)]
    decision = choose_rep("t", reps, now=T0, excluded=()).decision
    assert decision.team_id == "t"
    assert decision.strategy == "weighted_round_robin"
    assert decision.winner == "b"
    assert decision.decided_at == T0
    assert [(c.rep_id, c.eligible, c.reasons) for c in decision.candidates] == [
        ("a", False, ("at capacity (5/5 open)",)),
        ("b", True, ()),
        ("c", False, ("presence is busy",)),
    ]
    assert [(c.open_leads, c.capacity, c.weight) for c in decision.candidates] == [(5, 5, 1), (0, 5, 3), (0, 5, 1)]


@pytest.mark.parametrize(
    ("reps", "excluded", "reason"),
    [
        ([], (), "the team has no reps"),
        ([rep("a", presence="offline"), rep("b", load=5)], (), "no rep is eligible"),
        ([rep("a")], ("a",), "no rep is eligible"),
    ],
)
def test_nobody_eligible(reps: list[RepState], excluded: tuple[str, ...], reason: str) -> None:
    choice = choose_rep("t", reps, now=T0, excluded=excluded)
    assert choice.decision.winner is None
    assert choice.decision.reason == reason
    assert choice.reps == {}


def test_only_eligible_reps_earn_credit() -> None:
    choice = choose_rep("t", [rep("a", weight=2), rep("b", weight=3, presence="offline"), rep("c", weight=1)], now=T0)
    assert set(choice.reps) == {"a", "c"}
    assert choice.decision.winner == "a"
    assert choice.reps["a"].credit == 2 - 3
    assert choice.reps["c"].credit == 1


# --- weighted round robin -------------------------------------------------------------


def test_weights_1_2_3_over_600_picks_give_exactly_100_200_300() -> None:
    counts = Counter(picks([rep("a", weight=1), rep("b", weight=2), rep("c", weight=3)], 600))
    assert counts == {"a": 100, "b": 200, "c": 300}


def test_weights_through_the_team_state_machine() -> None:
    driver = TeamDriver()
    for rep_id, weight in (("a", 1), ("b", 2), ("c", 3)):
        driver.send(UpsertRep(team_id="t", at=T0, profile=RepProfile(
            rep_id=rep_id, team_id="t", weight=weight, capacity=1000)), T0)
    winners: Counter[str] = Counter()
    for i in range(600):
        now = T0 + timedelta(seconds=i + 1)
        out = driver.send(RouteLead(team_id="t", lead_id=f"l{i}", route_id=f"l{i}:1:1", requested_at=now), now)
        (assigned,) = [m.value for m in out.outgoing]
        assert isinstance(assigned, LeadAssigned)
        winners[assigned.rep_id] += 1
    assert winners == {"a": 100, "b": 200, "c": 300}


@settings(max_examples=60, deadline=None)
@given(weights=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=5), rounds=st.integers(1, 4))
def test_shares_equal_weights_over_whole_rounds(weights: list[int], rounds: int) -> None:
    reps = [rep(f"r{i}", weight=w) for i, w in enumerate(weights)]
    counts = Counter(picks(reps, rounds * sum(weights)))
    assert counts == {f"r{i}": rounds * w for i, w in enumerate(weights)}


@settings(max_examples=60, deadline=None)
@given(weights=st.lists(st.integers(min_value=1, max_value=6), min_size=2, max_size=5))
def test_smooth_every_window_stays_within_two_of_its_share(weights: list[int]) -> None:
    # Smooth WRR keeps each credit inside (-total, total), so in *any* run of consecutive picks
    # a rep's wins differ from its weighted share by less than two: no bursts, no droughts.
    total = sum(weights)
    winners = picks([rep(f"r{i}", weight=w) for i, w in enumerate(weights)], 3 * total)
    for i, w in enumerate(weights):
        prefix = [0]
        for winner in winners:
            prefix.append(prefix[-1] + (winner == f"r{i}"))
        for a in range(len(winners)):
            for b in range(a + 1, len(winners) + 1):
                assert abs((prefix[b] - prefix[a]) - (b - a) * w / total) < 2, (i, a, b, winners)


@pytest.mark.parametrize("k", [3, 6, 20])
def test_rep_back_from_offline_gets_no_burst(k: int) -> None:
    reps = [rep("a"), rep("b"), rep("c")]
    warmup = 6
    # c is away for picks [warmup, warmup + k); everyone is present before and after.
    available = {i: {"a", "b"} for i in range(warmup, warmup + k)}
    winners = picks(reps, warmup + k + 30, available=available)
    assert "c" not in winners[warmup:warmup + k]
    after = winners[warmup + k:]
    run = 0
    for winner in after:
        run = run + 1 if winner == "c" else 0
        assert run <= 1, f"c won {run} in a row after coming back: {after}"
    # And back to an even share straight away.
    assert Counter(after[:30]) == {"a": 10, "b": 10, "c": 10}


def test_rep_back_from_offline_through_presence_commands() -> None:
    driver = TeamDriver()
    for rep_id in ("a", "b", "c"):
        driver.send(UpsertRep(team_id="t", at=T0, profile=RepProfile(rep_id=rep_id, team_id="t", capacity=1000)), T0)
    driver.send(SetPresence(team_id="t", rep_id="c", status="offline", at=T0), T0)
    seq = 0

    def route() -> str:
        nonlocal seq
        seq += 1
        now = T0 + timedelta(seconds=seq)
        (message,) = driver.send(RouteLead(team_id="t", lead_id=f"l{seq}", route_id=f"l{seq}:1:1",
                                           requested_at=now), now).outgoing
        return str(message.value.rep_id)

    k = 12
    assert "c" not in [route() for _ in range(k)]
    driver.send(SetPresence(team_id="t", rep_id="c", status="available", at=T0), T0)
    after = [route() for _ in range(k)]
    assert after[:2].count("c") <= 1
    assert Counter(after) == {"a": 4, "b": 4, "c": 4}


# --- ties: longest idle, never-assigned first -------------------------------------------


@pytest.mark.parametrize(
    ("lasts", "winner"),
    [
        ({"a": 10, "b": None, "c": 5}, "b"),      # never assigned beats everyone
        ({"a": 10, "b": 3, "c": 5}, "b"),         # else the longest idle
        ({"a": 1, "b": 3, "c": 5}, "a"),
        ({"a": 7, "b": 7, "c": None}, "c"),
        ({"a": 7, "b": 7, "c": 9}, "a"),          # equal idle: a stable order
    ],
)
def test_ties_go_to_the_longest_idle(lasts: dict[str, int | None], winner: str) -> None:
    decision = choose_rep("t", [rep(k, last=v) for k, v in lasts.items()], now=T0 + timedelta(hours=1)).decision
    assert decision.winner == winner
    assert "broken by longest idle" in decision.reason


def test_credit_beats_idle_time() -> None:
    reps = [rep("a", last=None), rep("b", last=50, credit=1)]
    decision = choose_rep("t", reps, now=T0 + timedelta(hours=1)).decision
    assert decision.winner == "b"
    assert "broken by" not in decision.reason

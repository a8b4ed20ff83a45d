"""A team's roster is bounded: ``MAX_REPS`` reps and ``STATE_BYTES_BUDGET`` bytes; a rep past them is refused.

A security audit grew one team's state past Kafka's 1 MB record limit with ~110 PUTs of large reps:
the worker crashed writing it, and again at every restart (the command was read again).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rules import team
from rules.commands import RemoveRep, RepProfile, RouteLead, UpsertRep
from rules.roster import RepState
from rules.team import MAX_REPS, STATE_BYTES_BUDGET, TeamState, admission_problem, new_refusal, state_bytes
from streams.codec import decode, encode
from streams.tables.team_record import TeamRecord
from tests.rules._sim import QueueTable

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
#: What the producer refuses past (Faust's ``producer_max_request_size``).
KAFKA_MAX = 1_000_000


def usual(rep_id: str, team_id: str = "t") -> RepProfile:
    return RepProfile(rep_id=rep_id, team_id=team_id, name="A Person", capacity=5, skills=("saas",),
                      languages=("en", "fr"), territories=("FR", "DE"), timezone="Europe/Paris",
                      webhook_url=f"https://hooks.example.com/{rep_id}", email="someone@example.com")


def maximal(rep_id: str, team_id: str = "t") -> RepProfile:
    """A profile at the API's field limits (the audit's was ~9 KB)."""
    return RepProfile(rep_id=rep_id, team_id=team_id, name="N" * 200,
                      skills=tuple(f"{i:02d}" + "s" * 62 for i in range(50)),
                      languages=tuple(f"{i:02d}" + "l" * 62 for i in range(50)),
                      territories=tuple(f"US-{i:03d}" for i in range(500)),
                      webhook_url="https://hooks.example.com/" + "p" * 1970, email="e" * 254,
                      webhook_secret="whsec_" + "A" * 86)


def full_team(team_id: str = "t") -> TeamState:
    reps = {f"r{i}": RepState(profile=usual(f"r{i}", team_id), presence="available") for i in range(MAX_REPS)}
    return TeamState(team_id=team_id, reps=reps)


def upsert(profile: RepProfile, at: datetime = NOW) -> UpsertRep:
    return UpsertRep(team_id=profile.team_id, profile=profile, at=at)


def test_a_full_team_fits_the_budget_with_usual_reps() -> None:
    # The count binds for usual profiles; the byte budget only for unusually big ones.
    assert state_bytes(full_team()) < STATE_BYTES_BUDGET


def test_a_new_rep_past_the_cap_is_refused_and_the_roster_stays() -> None:
    state = full_team()
    transition = team.apply(state, upsert(usual("newcomer")), NOW, QueueTable())
    after = transition.state
    assert after.reps == state.reps and "newcomer" not in after.reps
    assert transition.outgoing == () and transition.queue_writes == () and transition.holding_writes == ()
    [refusal] = after.refused_reps
    assert refusal.rep_id == "newcomer" and refusal.at == NOW
    assert f"has {MAX_REPS} reps, the most a team may have" in refusal.reason
    assert "A Person" not in refusal.reason and "example.com" not in refusal.reason  # no personal data
    assert new_refusal(state, after, "newcomer") == refusal
    assert admission_problem(state, usual("newcomer")) == refusal.reason


def test_a_rep_already_in_a_full_team_may_still_change() -> None:
    state = full_team()
    changed = replace(usual("r7"), capacity=9)
    after = team.apply(state, upsert(changed), NOW, QueueTable()).state
    assert after.reps["r7"].profile.capacity == 9 and after.refused_reps == ()
    assert admission_problem(state, changed) is None


def test_a_departed_rep_still_holding_leads_counts_against_the_cap() -> None:
    state = full_team()
    departed = replace(state.reps["r0"], departed=True, load=2)
    state = replace(state, reps={**state.reps, "r0": departed})
    assert admission_problem(state, usual("newcomer")) is not None


def test_room_made_by_a_removal_takes_the_refused_rep_in_and_forgets_the_refusal() -> None:
    queue = QueueTable()
    state = team.apply(full_team(), upsert(usual("newcomer")), NOW, queue).state
    state = team.apply(state, RemoveRep(team_id="t", rep_id="r3", reason="retired", at=NOW, move=1), NOW, queue).state
    assert len(state.reps) == MAX_REPS - 1 and state.refused_reps[0].rep_id == "newcomer"
    state = team.apply(state, upsert(usual("newcomer")), NOW, queue).state
    assert "newcomer" in state.reps and state.refused_reps == ()


def test_removing_a_refused_rep_forgets_the_refusal() -> None:
    queue = QueueTable()
    state = team.apply(full_team(), upsert(usual("newcomer")), NOW, queue).state
    state = team.apply(state, RemoveRep(team_id="t", rep_id="newcomer", reason="retired", at=NOW, move=1),
                       NOW, queue).state
    assert state.refused_reps == () and len(state.reps) == MAX_REPS


def test_a_refusal_is_kept_once_per_rep_and_the_list_is_bounded() -> None:
    queue = QueueTable()
    state = full_team()
    for minute in range(3):  # the same rep, three times: one entry, the latest
        state = team.apply(state, upsert(usual("again"), NOW + timedelta(minutes=minute)),
                           NOW + timedelta(minutes=minute), queue).state
    assert [(r.rep_id, r.at) for r in state.refused_reps] == [("again", NOW + timedelta(minutes=2))]
    for i in range(40):
        state = team.apply(state, upsert(usual(f"extra{i}")), NOW, queue).state
    assert len(state.refused_reps) == 20 and state.refused_reps[-1].rep_id == "extra39"


def test_a_refused_upsert_decided_again_is_decided_the_same() -> None:
    # A command read again after a crash meets the same state at the same time (TeamBatch).
    state = full_team()
    first = team.apply(state, upsert(usual("newcomer")), NOW, QueueTable())
    again = team.apply(state, upsert(usual("newcomer")), NOW, QueueTable())
    assert first == again


def test_maximal_reps_are_refused_at_the_byte_budget_and_the_record_stays_under_kafkas_limit() -> None:
    """The audit's attack with reps at every field limit: refused long before 1 MB, never a crash."""
    queue = QueueTable()
    state: TeamState | None = None
    taken = 0
    for i in range(120):
        before = state
        state = team.apply(state, upsert(maximal(f"big{i:03d}")), NOW, queue).state
        if len(state.reps) > taken:
            taken = len(state.reps)
        else:
            refusal = new_refusal(before, state, f"big{i:03d}")
            assert refusal is not None and f"more than the {STATE_BYTES_BUDGET}" in refusal.reason
            assert state.reps == (before.reps if before is not None else {})
    assert state is not None and 20 <= taken < 120
    assert state_bytes(state) <= STATE_BYTES_BUDGET + 10_000  # the refusals kept add a few KB
    record = encode(TeamRecord(state=state, time=NOW))
    assert len(record) < KAFKA_MAX * 0.7 and decode(record) == TeamRecord(state=state, time=NOW)


def test_a_change_that_shrinks_a_team_over_the_budget_is_taken() -> None:
    # A team already over the budget (a bigger budget before, or the YAML): shrinking a rep only helps.
    reps = {f"big{i}": RepState(profile=maximal(f"big{i}")) for i in range(45)}
    state = TeamState(team_id="t", reps=reps)
    assert state_bytes(state) > STATE_BYTES_BUDGET
    smaller = usual("big3")
    after = team.apply(state, upsert(smaller), NOW, QueueTable()).state
    assert after.reps["big3"].profile.name == "A Person" and after.refused_reps == ()
    assert admission_problem(state, maximal("big-new")) is not None


def test_a_refused_rep_gets_no_lead() -> None:
    queue = QueueTable()
    state = team.apply(full_team(), upsert(usual("newcomer")), NOW, queue).state
    # Everyone else is offline: the lead waits rather than go to the rep the team refused.
    state = replace(state, reps={k: replace(v, presence="offline") for k, v in state.reps.items()})
    route = RouteLead(team_id="t", lead_id="l1", route_id="l1:1:1", requested_at=NOW)
    assert team.apply(state, route, NOW, queue).state.queue_depth == 1


@pytest.mark.parametrize("state", [None, TeamState(team_id="t")])
def test_an_empty_or_new_team_admits_a_maximal_rep(state: TeamState | None) -> None:
    assert admission_problem(state, maximal("one")) is None


def test_state_bytes_is_what_the_codec_writes_for_the_state() -> None:
    state = team.apply(full_team(), upsert(usual("newcomer")), NOW, QueueTable()).state
    assert len(encode(state)) == state_bytes(state) + len(b'{"type":"TeamState","data":}')


# --- one command's side writes are bounded (DRAIN_MAX) ---------------------------------------


def test_a_drain_assigns_at_most_drain_max_leads_and_tells_the_team_to_go_on() -> None:
    """A rep with room for 1000 joining a team with 250 waiting: DRAIN_MAX per command, in order."""
    from rules.commands import DrainQueue, LeadAssigned
    from rules.team import DRAIN_MAX
    from tests.rules._sim import TeamDriver, values

    driver = TeamDriver()
    for n in range(250):
        driver.send(RouteLead(team_id="t", lead_id=f"l{n}", route_id=f"l{n}:1:1", requested_at=NOW), NOW)
    assert driver.state is not None and driver.state.queue_depth == 250
    big = replace(usual("big"), capacity=1000)
    sent = driver.send(upsert(big), NOW)
    assigned = values(list(sent.outgoing), "lead.commands", LeadAssigned)
    assert [a.lead_id for a in assigned] == [f"l{n}" for n in range(DRAIN_MAX)]  # oldest first
    assert len(sent.holding_writes) == DRAIN_MAX
    assert values(list(sent.outgoing), "team.commands", DrainQueue) == [DrainQueue(team_id="t", at=NOW)]
    # A new lead meanwhile waits behind the ones the drain left.
    routed = driver.send(RouteLead(team_id="t", lead_id="late", route_id="late:1:1", requested_at=NOW), NOW)
    assert [a.lead_id for a in values(list(routed.outgoing), "lead.commands", LeadAssigned)] == [
        f"l{n}" for n in range(DRAIN_MAX, 2 * DRAIN_MAX)]
    again = driver.send(DrainQueue(team_id="t", at=NOW), NOW)
    assert [a.lead_id for a in values(list(again.outgoing), "lead.commands", LeadAssigned)] == [
        *(f"l{n}" for n in range(2 * DRAIN_MAX, 250)), "late"]
    assert values(list(again.outgoing), "team.commands", DrainQueue) == []  # done: nothing to go on with
    assert driver.state.queue_depth == 0

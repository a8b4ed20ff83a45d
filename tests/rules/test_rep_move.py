"""A rep who moves team while holding leads: their capacity is never over-committed.

The rep keeps the leads they hold in the old team, and those count against their capacity in
the new one (``rules.reps``: the old team reports, the directory tells the new team). The unit
tests walk the audit's case; the property drives the rep directory and several teams with
random moves, routes and releases, delivering messages in any order Kafka could (FIFO per
partition, partitions interleaved at random), and checks that no rep ever holds more leads,
across all teams, than their capacity.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import pytest

from rules import reps, team
from rules.commands import (
    LeadAssigned,
    Outgoing,
    PutRep,
    ReleaseLead,
    RemoveRep,
    RepProfile,
    ReportJoin,
    RetireRep,
    RouteLead,
    UpsertRep,
)
from rules.reps import RepEntry
from tests.rules._sim import T0, Bus, TeamDriver, holdings, taken_in, values


def put(rep_id: str, team_id: str, capacity: int) -> PutRep:
    return PutRep(rep_id=rep_id, profile=RepProfile(rep_id=rep_id, team_id=team_id, name=rep_id.title(),
                                                    capacity=capacity, webhook_url=f"https://hooks.test/{rep_id}",
                                                    webhook_secret="whsec_x"), at=T0)


def route(team_id: str, n: int) -> RouteLead:
    return RouteLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1", requested_at=T0)


def release(team_id: str, n: int, rep_id: str) -> ReleaseLead:
    return ReleaseLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1", rep_id=rep_id, reason="done", at=T0)


class TeamsBus(Bus):
    """A ``Bus`` without the lead agent: assignments stand until the test releases them."""

    def _deliver(self, message: Outgoing) -> tuple[Outgoing, ...]:
        if message.channel == "lead.commands":
            return ()  # the leads are not modelled: these tests are about the teams' holdings
        return super()._deliver(message)


_taken = taken_in


def held(bus: Bus, rep_id: str) -> int:
    """How many leads ``rep_id`` holds, across every team (the holdings, not the counters)."""
    return sum(len(driver.queue.held_by(rep_id)) for driver in bus.teams.values())


def assigned_to(messages: list[Outgoing], rep_id: str) -> list[str]:
    return [a.lead_id for a in values(messages, "lead.commands", LeadAssigned) if a.rep_id == rep_id]


def test_a_rep_who_moves_holding_a_lead_is_not_given_more_than_their_new_capacity() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "fay", put("fay", "direct", capacity=2))
    assert assigned_to(bus.send("team.commands", "direct", route("direct", 1)), "fay") == ["l1"]
    # fay moves to tiny with capacity 1 while she holds l1 in direct.
    bus.send("rep.commands", "fay", put("fay", "tiny", capacity=1))
    sent = bus.send("team.commands", "tiny", route("tiny", 2))
    assert assigned_to(sent, "fay") == [], "fay already holds 1 lead against a capacity of 1"
    assert held(bus, "fay") == 1
    fay = bus.team("tiny").reps["fay"]
    assert (fay.load, fay.held_elsewhere, fay.open_leads) == (0, 1, 1)
    assert bus.team("direct").reps["fay"].departed
    # She closes the direct lead: the departed entry is gone and tiny gives her the waiting lead.
    sent = bus.send("team.commands", "direct", release("direct", 1, "fay"))
    assert "fay" not in bus.team("direct").reps
    assert assigned_to(sent, "fay") == ["l2"]
    assert held(bus, "fay") == 1 and bus.team("tiny").reps["fay"].held_elsewhere == 0


def test_a_new_team_waits_for_the_old_teams_count_before_giving_the_rep_a_lead() -> None:
    """The directory's UpsertRep can reach the new team before the old team has reported."""
    entry = RepEntry(rep_id="fay", team_id="direct", updated_at=T0)
    moved = reps.apply(entry, put("fay", "tiny", capacity=1), T0)
    (upsert,) = [m for m in moved.outgoing if m.key == "tiny"]
    tiny = TeamDriver()
    tiny.send(upsert.value, T0)
    rep = tiny.state.reps["fay"] if tiny.state is not None else None
    assert rep is not None and rep.awaiting_handover
    queued = tiny.send(route("tiny", 1), T0)
    assert values(list(queued.outgoing), "lead.commands", LeadAssigned) == []
    assert tiny.state is not None and tiny.state.queue_depth == 1


def test_a_rep_who_moves_back_counts_each_lead_once() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "fay", put("fay", "a", capacity=2))
    bus.send("team.commands", "a", route("a", 1))
    bus.send("rep.commands", "fay", put("fay", "b", capacity=2))
    bus.send("team.commands", "b", route("b", 2))  # her second slot, in b
    assert held(bus, "fay") == 2
    bus.send("rep.commands", "fay", put("fay", "a", capacity=2))  # back to a
    fay = bus.team("a").reps["fay"]
    assert not fay.departed and (fay.load, fay.held_elsewhere) == (1, 1)
    assert assigned_to(bus.send("team.commands", "a", route("a", 3)), "fay") == []
    bus.send("team.commands", "b", release("b", 2, "fay"))
    assert "fay" not in bus.team("b").reps and bus.team("a").reps["fay"].open_leads == 2  # l3 went to her
    assert held(bus, "fay") == 2


# --- a move the new team refuses ----------------------------------------------------------


def test_a_move_a_full_team_refuses_leaves_the_rep_in_their_team_as_they_were(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit: a rep moved into a full team left their team and was in none until PUT again."""
    monkeypatch.setattr(team, "MAX_REPS", 1)
    bus = TeamsBus()
    bus.send("rep.commands", "gil", put("gil", "full", capacity=1))
    bus.send("rep.commands", "fay", put("fay", "direct", capacity=2))
    assigned_to(bus.send("team.commands", "direct", route("direct", 1)), "fay")
    before = bus.team("direct").reps["fay"]
    entry = bus.directory["fay"]
    sent = bus.send("rep.commands", "fay", put("fay", "full", capacity=9))
    assert not [m for m in sent if isinstance(m.value, RemoveRep)], "direct is never told to let fay go"
    assert bus.team("direct").reps["fay"] == before  # presence, load, counters: as they were
    assert "fay" not in bus.team("full").reps
    [refused] = bus.team("full").refused_reps
    assert refused.rep_id == "fay" and "the most a team may have (1" in refused.reason
    after = bus.directory["fay"]
    assert (after.team_id, after.profile, after.joining) == ("direct", entry.profile, None)
    assert after.move_refused is not None and after.move_refused.team_id == "full"
    assert after.move_refused.reason == refused.reason
    # fay goes on taking direct's leads, up to her old capacity.
    assert assigned_to(bus.send("team.commands", "direct", route("direct", 2)), "fay") == ["l2"]
    assert assigned_to(bus.send("team.commands", "direct", route("direct", 3)), "fay") == []
    # A later change that is applied forgets the refusal.
    bus.send("rep.commands", "fay", put("fay", "direct", capacity=3))
    assert bus.directory["fay"].move_refused is None


def test_a_move_the_team_takes_moves_the_rep_once_answered() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "fay", put("fay", "a", capacity=2))
    bus.send("rep.commands", "fay", put("fay", "b", capacity=2))
    assert "fay" not in bus.team("a").reps and not bus.team("b").reps["fay"].awaiting_handover
    entry = bus.directory["fay"]
    assert (entry.team_id, entry.joining, entry.move_refused, entry.left) == ("b", None, None, {})


def test_an_answer_read_again_changes_nothing() -> None:
    entry = RepEntry(rep_id="fay", team_id="a", updated_at=T0)
    asked = reps.apply(entry, put("fay", "b", capacity=2), T0).entry
    yes = ReportJoin(rep_id="fay", team_id="b", move=1, refused=None, at=T0)
    moved = reps.apply(asked, yes, T0)
    assert moved.entry is not None and moved.entry.team_id == "b"
    assert reps.apply(moved.entry, yes, T0) == reps.RepTransition(entry=moved.entry)
    no = ReportJoin(rep_id="fay", team_id="b", move=1, refused="full", at=T0)
    assert reps.apply(moved.entry, no, T0).entry is moved.entry


def test_a_change_while_a_move_waits_calls_it_off_and_the_team_asked_lets_the_rep_go() -> None:
    entry = RepEntry(rep_id="fay", team_id="a", updated_at=T0, profile=put("fay", "a", 2).profile)
    asked = reps.apply(entry, put("fay", "b", capacity=2), T0)
    assert asked.entry is not None
    b = TeamDriver()
    [upsert] = asked.outgoing
    answer = b.send(upsert.value, T0)  # b takes fay in; its answer is still on its way
    [yes] = values(list(answer.outgoing), "rep.commands", ReportJoin)
    assert yes.refused is None and b.state is not None and "fay" in b.state.reps
    # Moved to c (or back to a, or retired) before the yes is read: the move to b is off.
    for change in (put("fay", "c", capacity=2), put("fay", "a", capacity=3),
                   RetireRep(rep_id="fay", at=T0)):
        changed = reps.apply(asked.entry, change, T0)
        call_off = changed.outgoing[0]
        assert call_off.key == "b" and isinstance(call_off.value, RemoveRep) and call_off.value.move == 1
        driver = TeamDriver()
        driver.state = b.state
        driver.send(call_off.value, T0)
        assert driver.state is not None and "fay" not in driver.state.reps
        late = reps.apply(changed.entry, yes, T0)  # the yes, read late: about a move called off
        assert late.entry is changed.entry and late.outgoing == ()


def test_a_refused_move_survives_the_wire() -> None:
    from streams.codec import decode, encode

    entry = RepEntry(rep_id="fay", team_id="a", updated_at=T0)
    asked = reps.apply(entry, put("fay", "b", capacity=2), T0).entry
    no = ReportJoin(rep_id="fay", team_id="b", move=1, refused="team b has 500 reps", at=T0)
    refused = reps.apply(asked, no, T0).entry
    for value in (asked, refused, no):
        assert decode(encode(value)) == value


# --- a move whose answer is lost --------------------------------------------------------------

def seeded(rep_id: str, team_id: str, capacity: int) -> PutRep:
    """``put`` as the YAML sends it at each worker's start."""
    return replace(put(rep_id, team_id, capacity), from_config=True)


class LossyBus(TeamsBus):
    """A ``TeamsBus`` that loses the messages ``lose`` picks: a team batch left out as too big, a
    command the team could not apply or decode, sends no answer."""

    def __init__(self, lose: Callable[[Outgoing], bool]) -> None:
        super().__init__()
        self.lose = lose
        self.lost: list[Outgoing] = []

    def _deliver(self, message: Outgoing) -> tuple[Outgoing, ...]:
        if self.lose(message):
            self.lost.append(message)
            return ()
        return super()._deliver(message)


def _is_answer(message: Outgoing) -> bool:
    return isinstance(message.value, ReportJoin)


def _is_join(message: Outgoing) -> bool:
    return isinstance(message.value, UpsertRep) and message.value.join > 0


@pytest.mark.parametrize("lost", [_is_answer, _is_join], ids=["answer lost", "question lost"])
def test_the_yamls_move_whose_answer_is_lost_is_asked_again_at_the_next_start(lost: Callable[[Outgoing], bool]) -> None:
    """Review s16-a #4: a PutRep from the YAML, unchanged, was ignored while its move waited, so a
    move whose answer never came waited for ever ("move waiting" until an API PUT)."""
    bus = LossyBus(lambda m: False)
    bus.send("rep.commands", "fay", seeded("fay", "a", capacity=2))
    bus.lose = lambda m: lost(m) and not bus.lost  # the first answer (or question) only
    bus.send("rep.commands", "fay", seeded("fay", "b", capacity=3))  # the YAML moves fay to b
    assert bus.lost
    waiting = bus.directory["fay"]
    assert waiting.team_id == "a" and waiting.joining is not None and waiting.joining.move == 2  # 1: a's question
    # A worker starts with the same file: the same move is asked again, and answered this time.
    sent = bus.send("rep.commands", "fay", seeded("fay", "b", capacity=3))
    [asked] = values(sent, "team.commands", UpsertRep)
    assert (asked.team_id, asked.join, asked.awaiting_handover, asked.profile) == ("b", 2, True, seeded(
        "fay", "b", 3).profile)
    entry = bus.directory["fay"]
    assert (entry.team_id, entry.joining, entry.profile, entry.left) == ("b", None, seeded("fay", "b", 3).profile,
                                                                         {})
    assert "fay" not in bus.team("a").reps
    fay = bus.team("b").reps["fay"]
    assert (fay.profile.capacity, fay.awaiting_handover, fay.departed) == (3, False, False)
    # Once answered, the same file changes nothing more.
    assert bus.send("rep.commands", "fay", seeded("fay", "b", capacity=3)) == [
        Outgoing(channel="rep.commands", key="fay", value=seeded("fay", "b", capacity=3))]


def test_a_put_of_the_same_profile_while_a_move_waits_asks_again_at_once() -> None:
    """Not a repeat: the API's PUT calls the waiting move off and asks again, as a new move."""
    bus = LossyBus(lambda m: False)
    bus.send("rep.commands", "fay", put("fay", "a", capacity=2))
    bus.lose = _is_answer  # the move's answer (a's to fay's first question was read)
    bus.send("rep.commands", "fay", put("fay", "b", capacity=3))
    assert bus.directory["fay"].joining is not None
    bus.lose = lambda m: False
    sent = bus.send("rep.commands", "fay", put("fay", "b", capacity=3))
    assert [(m.key, type(m.value).__name__, getattr(m.value, "move", None) or getattr(m.value, "join", None))
            for m in sent if m.channel == "team.commands"][:2] == [("b", "RemoveRep", 2), ("b", "UpsertRep", 3)]
    entry = bus.directory["fay"]
    assert (entry.team_id, entry.joining, entry.moves) == ("b", None, 3)  # 1: fay's question to a
    assert "fay" not in bus.team("a").reps and not bus.team("b").reps["fay"].awaiting_handover


def test_a_team_asked_twice_answers_the_same_and_the_directory_reads_one_answer() -> None:
    """The team took fay in and its yes is still on its way when the move is asked again."""
    entry = RepEntry(rep_id="fay", team_id="a", updated_at=T0, profile=put("fay", "a", 2).profile)
    asked = reps.apply(entry, seeded("fay", "b", capacity=3), T0)
    again = reps.apply(asked.entry, seeded("fay", "b", capacity=3), T0)
    assert again.entry is asked.entry and again.outgoing == asked.outgoing
    b = TeamDriver()
    [first] = values(list(b.send(asked.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    state = b.state
    [second] = values(list(b.send(again.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    assert first == second and first.refused is None and b.state == state  # nothing changed in b
    moved = reps.apply(asked.entry, first, T0)
    assert moved.entry is not None and moved.entry.team_id == "b"
    assert reps.apply(moved.entry, second, T0) == reps.RepTransition(entry=moved.entry)


def test_an_api_move_waiting_is_asked_again_with_its_own_profile_not_the_yamls() -> None:
    """The YAML unchanged (fay at a) while the API's move to b waits: b is asked again, as the API said."""
    seeded_a = _taken(reps.apply(None, seeded("fay", "a", capacity=2), T0))
    asked = reps.apply(seeded_a, put("fay", "b", capacity=5), T0)
    again = reps.apply(asked.entry, seeded("fay", "a", capacity=2), T0)
    assert again.entry is asked.entry
    [upsert] = again.outgoing
    assert upsert.key == "b" and upsert.value == asked.outgoing[0].value


def test_a_yes_after_a_no_to_the_same_move_asked_twice_lets_the_rep_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked twice, a full team says no, makes room, then says yes: the directory read the no and
    keeps the rep in their team, so the team that took them in is told to let them go."""
    monkeypatch.setattr(team, "MAX_REPS", 1)
    entry = RepEntry(rep_id="fay", team_id="a", updated_at=T0, profile=put("fay", "a", 2).profile)
    asked = reps.apply(entry, seeded("fay", "b", capacity=3), T0)
    again = reps.apply(asked.entry, seeded("fay", "b", capacity=3), T0)
    b = TeamDriver()
    b.send(UpsertRep(team_id="b", profile=put("gil", "b", 1).profile, at=T0), T0)
    [no] = values(list(b.send(asked.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    b.send(RemoveRep(team_id="b", rep_id="gil", reason="moved", at=T0, move=1), T0)  # room made
    [yes] = values(list(b.send(again.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    assert no.refused is not None and yes.refused is None and b.state is not None and "fay" in b.state.reps
    stayed = reps.apply(asked.entry, no, T0)
    assert stayed.entry is not None and stayed.entry.team_id == "a" and stayed.entry.move_refused is not None
    late = reps.apply(stayed.entry, yes, T0)
    [let_go] = late.outgoing
    assert let_go.key == "b" and isinstance(let_go.value, RemoveRep) and let_go.value.move == 1
    assert late.entry is not None and (late.entry.team_id, late.entry.joining) == ("a", None)
    b.send(let_go.value, T0)
    assert "fay" not in b.state.reps
    # An older move's yes read late asks nothing: that move was called off or is the rep's team.
    assert reps.apply(stayed.entry, replace(yes, move=0), T0).outgoing == ()


def _step(bus: ShuffledBus, channel: str, key: str) -> list[Outgoing]:
    """Deliver the next message waiting on one partition (the test picks the order, as Kafka may)."""
    return bus.deliver((channel, key))


def test_a_yes_after_a_no_read_while_another_move_waits_lets_the_rep_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property's counterexample: the no was read, then the rep moved on, then the yes came.

    cy's YAML has her in c; the API moves her to a, which is full. A worker starts: the YAML,
    unchanged, asks a again (the API's move, ``_ask_again``). a says no to the first question, the
    API moves cy to b, a makes room, and says yes to the second question. The directory read the
    no and was waiting for b: it ignored the yes (``move_refused`` no longer matched), and a kept
    cy for good, a member never eligible, while she moved to b (fails before: no RemoveRep to a).
    """
    monkeypatch.setattr(team, "MAX_REPS", 2)
    bus = ShuffledBus()
    for rep_id, team_id in (("al", "a"), ("bo", "a"), ("cy", "c")):
        bus.post(Outgoing(channel="rep.commands", key=rep_id, value=seeded(rep_id, team_id, 2)))
    while waiting := bus.waiting():
        bus.deliver(waiting[0])
    bus.post(Outgoing(channel="rep.commands", key="cy", value=put("cy", "a", 2)))  # the API: move 1, to a
    [first] = values(_step(bus, "rep.commands", "cy"), "team.commands", UpsertRep)
    bus.post(Outgoing(channel="rep.commands", key="bo", value=RetireRep(rep_id="bo", at=T0)))
    _step(bus, "rep.commands", "bo")  # a is told to let bo go, after the question
    bus.post(Outgoing(channel="rep.commands", key="cy", value=seeded("cy", "c", 2)))  # a worker's start
    [second] = values(_step(bus, "rep.commands", "cy"), "team.commands", UpsertRep)
    assert (first.team_id, first.join) == (second.team_id, second.join) == ("a", 2)  # 1: cy's question to c
    [no] = values(_step(bus, "team.commands", "a"), "rep.commands", ReportJoin)
    assert no.refused is not None
    _step(bus, "rep.commands", "cy")  # the no: cy stays in c
    bus.post(Outgoing(channel="rep.commands", key="cy", value=put("cy", "b", 2)))  # the API: move 2, to b
    _step(bus, "rep.commands", "cy")
    assert bus.directory["cy"].joining is not None and bus.directory["cy"].joining.team_id == "b"
    _step(bus, "team.commands", "a")  # bo leaves a: room for one
    [yes] = values(_step(bus, "team.commands", "a"), "rep.commands", ReportJoin)
    assert yes.refused is None and "cy" in bus.team("a").reps  # a took cy in, on the second question
    [let_go] = values(_step(bus, "rep.commands", "cy"), "team.commands", RemoveRep)
    assert (let_go.team_id, let_go.rep_id, let_go.move) == ("a", "cy", 2)
    while waiting := bus.waiting():
        bus.deliver(waiting[0])
    entry = bus.directory["cy"]
    assert (entry.team_id, entry.joining, entry.refused_moves) == ("b", None, {})
    assert "cy" not in bus.team("a").reps and "cy" not in bus.team("c").reps
    cy = bus.team("b").reps["cy"]
    assert not cy.departed and not cy.awaiting_handover


def _refused_then_taken_in(monkeypatch: pytest.MonkeyPatch) -> tuple[RepEntry, ReportJoin, TeamDriver]:
    """fay (in a) is asked twice to move to b (a worker's start); b, full, says no to the first
    question, makes room and says yes to the second. Returns the entry once the no is read, the
    yes, and b."""
    monkeypatch.setattr(team, "MAX_REPS", 1)
    entry = RepEntry(rep_id="fay", team_id="a", updated_at=T0, profile=put("fay", "a", 2).profile)
    asked = reps.apply(entry, seeded("fay", "b", capacity=3), T0)
    again = reps.apply(asked.entry, seeded("fay", "b", capacity=3), T0)
    b = TeamDriver()
    b.send(UpsertRep(team_id="b", profile=put("gil", "b", 1).profile, at=T0), T0)
    [no] = values(list(b.send(asked.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    b.send(RemoveRep(team_id="b", rep_id="gil", reason="moved", at=T0, move=1), T0)
    [yes] = values(list(b.send(again.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    assert no.refused is not None and yes.refused is None and b.state is not None and "fay" in b.state.reps
    stayed = reps.apply(asked.entry, no, T0).entry
    assert stayed is not None and stayed.team_id == "a"
    return stayed, yes, b


@pytest.mark.parametrize("change", [
    put("fay", "a", capacity=3),  # applied where she is: the known limit of dec211f (the no was forgotten)
    put("fay", "c", capacity=2),  # another move, waiting for c's answer
    RetireRep(rep_id="fay", at=T0),
], ids=["changed in her team", "moving to another team", "retired"])
def test_a_yes_after_a_no_lets_the_rep_go_whatever_changed_in_between(
        monkeypatch: pytest.MonkeyPatch, change: PutRep | RetireRep) -> None:
    stayed, yes, b = _refused_then_taken_in(monkeypatch)
    changed = reps.apply(stayed, change, T0)
    assert changed.entry is not None
    late = reps.apply(changed.entry, yes, T0)
    [let_go] = late.outgoing
    assert let_go.key == "b" and isinstance(let_go.value, RemoveRep) and let_go.value.move == 1
    assert (stayed.refused_moves, changed.entry.refused_moves) == ({"b": 1}, {"b": 1})
    assert late.entry is not None and late.entry.refused_moves == {}
    assert (late.entry.team_id, late.entry.joining, late.entry.retired) == (
        changed.entry.team_id, changed.entry.joining, changed.entry.retired)
    b.send(let_go.value, T0)
    assert b.state is not None and "fay" not in b.state.reps
    # Read again (a replay), the yes asks nothing more.
    assert reps.apply(late.entry, yes, T0) == reps.RepTransition(entry=late.entry)


def test_a_team_that_answers_a_later_question_has_no_refusal_left_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every copy of a question comes before a later one: the later answer closes the earlier no."""
    stayed, yes, _ = _refused_then_taken_in(monkeypatch)
    late = reps.apply(stayed, yes, T0)  # the yes after the no: b lets fay go
    asked = reps.apply(late.entry, put("fay", "b", capacity=3), T0)  # asked again, as move 2
    assert asked.entry is not None and asked.entry.joining is not None and asked.entry.joining.move == 2
    no = ReportJoin(rep_id="fay", team_id="b", move=2, refused="full", at=T0)
    refused = reps.apply(asked.entry, no, T0).entry
    assert refused is not None and refused.refused_moves == {"b": 2}
    yes2 = ReportJoin(rep_id="fay", team_id="b", move=2, refused=None, at=T0)
    moved = reps.apply(reps.apply(refused, put("fay", "b", capacity=3), T0).entry, ReportJoin(
        rep_id="fay", team_id="b", move=3, refused=None, at=T0), T0)
    assert moved.entry is not None and moved.entry.team_id == "b" and moved.entry.refused_moves == {}
    # A yes to move 2 read now would be a replay: b is her team, nothing is sent.
    assert reps.apply(moved.entry, yes2, T0).outgoing == ()


def test_a_team_that_holds_the_rep_and_refuses_the_move_that_waits_lets_them_go(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The yes after the no comes while another move to that same team waits for its answer: the
    team holds the rep already, and keeps them if it refuses this move (too big): it is told to let
    them go then, and not before (a yes would make it the rep's team)."""
    stayed, yes, b = _refused_then_taken_in(monkeypatch)
    bigger = replace(put("fay", "b", capacity=3), profile=replace(put("fay", "b", 3).profile, skills=("x" * 200,)))
    asked = reps.apply(stayed, bigger, T0)
    assert asked.entry is not None and asked.entry.joining is not None and asked.entry.joining.move == 2
    late = reps.apply(asked.entry, yes, T0)  # b holds fay already: nothing to send yet
    assert late.outgoing == () and late.entry is not None and late.entry.joining is not None
    assert b.state is not None
    monkeypatch.setattr(team, "STATE_BYTES_BUDGET", team.state_bytes(b.state))
    [no] = values(list(b.send(asked.outgoing[-1].value, T0).outgoing), "rep.commands", ReportJoin)
    assert no.refused is not None and "fay" in b.state.reps  # refused, and kept as she was
    answered = reps.apply(late.entry, no, T0)
    [let_go] = answered.outgoing
    assert let_go.key == "b" and isinstance(let_go.value, RemoveRep) and let_go.value.move == 2
    assert answered.entry is not None and (answered.entry.team_id, answered.entry.joining) == ("a", None)
    assert answered.entry.move_refused is not None and answered.entry.move_refused.team_id == "b"
    b.send(let_go.value, T0)
    assert "fay" not in b.state.reps
    assert late.entry.joining.taken_in and late.entry.refused_moves == {}


# --- the property --------------------------------------------------------------------------

TEAMS = ("a", "b", "c")
REPS = {"r1": 1, "r2": 2, "r3": 3}  # rep -> capacity (fixed, so "above capacity" is well defined)
NEWCOMERS = {"r4": 1, "r5": 2}  # reps made while the test runs, whom a full team may refuse
CAPACITY = {**REPS, **NEWCOMERS}
#: Skills that make any team state bigger than the budget the property sets: a change refused.
BIG = ("x" * 30_000,)


class ShuffledBus(TeamsBus):
    """A ``Bus`` whose messages wait in one FIFO per partition (channel and key), delivered in an
    order the test picks: Kafka keeps order within a partition, never across partitions."""

    def __init__(self) -> None:
        super().__init__()
        self.partitions: dict[tuple[str, str], deque[Outgoing]] = {}

    def post(self, message: Outgoing) -> None:
        self.partitions.setdefault((message.channel, message.key), deque()).append(message)

    def waiting(self) -> list[tuple[str, str]]:
        return sorted(k for k, q in self.partitions.items() if q and k[0] in ("team.commands", "rep.commands"))

    def deliver(self, partition: tuple[str, str]) -> list[Outgoing]:
        message = self.partitions[partition].popleft()
        made = list(self._deliver(message))
        for out in made:
            self.post(out)
        return made


class RepMoves(RuleBasedStateMachine):
    """Moves from the API and from the YAML, questions and answers lost, workers that start again.

    A team holds at most two reps (departed ones included), so moves and new reps are refused too,
    and a change in a rep's team that makes it too big (``BIG``) is refused.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bus = ShuffledBus()
        self.leads = 0
        self.over: list[str] = []
        self.max_reps, self.budget = team.MAX_REPS, team.STATE_BYTES_BUDGET
        team.MAX_REPS, team.STATE_BYTES_BUDGET = 2, 20_000
        self.yaml: dict[str, PutRep] = {}  # the YAML's entry for each rep, as the last file had it
        for rep_id, team_id in zip(sorted(REPS), TEAMS):
            self.yaml[rep_id] = seeded(rep_id, team_id, REPS[rep_id])
            self.bus.post(Outgoing(channel="rep.commands", key=rep_id, value=self.yaml[rep_id]))
        # In their teams before anything else, so r1-r3 are always in one (newcomers may be in none).
        while waiting := self.bus.waiting():
            self.bus.deliver(waiting[0])

    @rule(rep_id=st.sampled_from(sorted(CAPACITY)), team_id=st.sampled_from(TEAMS), from_config=st.booleans())
    def move(self, rep_id: str, team_id: str, from_config: bool) -> None:
        """A move (or, for a newcomer not made yet, a new rep)."""
        command = put(rep_id, team_id, CAPACITY[rep_id])
        if from_config:
            command = self.yaml[rep_id] = replace(command, from_config=True)
        self.bus.post(Outgoing(channel="rep.commands", key=rep_id, value=command))

    @rule(rep_id=st.sampled_from(sorted(CAPACITY)), big=st.booleans(), weight=st.integers(1, 3),
          from_config=st.booleans())
    def change(self, rep_id: str, big: bool, weight: int, from_config: bool) -> None:
        """A change in the rep's team as the directory has it now (too big for any team if ``big``)."""
        entry = self.bus.directory.get(rep_id)
        if entry is None:
            return
        command = put(rep_id, entry.team_id, CAPACITY[rep_id])
        command = replace(command, profile=replace(command.profile, weight=weight, skills=BIG if big else ()))
        if from_config:
            command = self.yaml[rep_id] = replace(command, from_config=True)
        self.bus.post(Outgoing(channel="rep.commands", key=rep_id, value=command))

    @rule()
    def restart(self) -> None:
        """A worker starts with the last file: its reps are sent again."""
        for rep_id, command in self.yaml.items():
            self.bus.post(Outgoing(channel="rep.commands", key=rep_id, value=command))

    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        """A move's question or answer never comes (a team batch left out, a command not applied)."""
        heads = [k for k, q in self.bus.partitions.items()
                 if q and (isinstance(q[0].value, ReportJoin) or (isinstance(q[0].value, UpsertRep) and q[0].value.join))]
        if heads:
            self.bus.partitions[data.draw(st.sampled_from(sorted(heads)))].popleft()

    @rule(team_id=st.sampled_from(TEAMS))
    def route(self, team_id: str) -> None:
        self.leads += 1
        self.bus.post(Outgoing(channel="team.commands", key=team_id, value=route(team_id, self.leads)))

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        held_now = holdings(self.bus)
        if held_now:
            team_id, route_id, lead_id, rep_id = data.draw(st.sampled_from(held_now))
            self.bus.post(Outgoing(channel="team.commands", key=team_id, value=ReleaseLead(
                team_id=team_id, lead_id=lead_id, route_id=route_id, rep_id=rep_id, reason="done", at=T0)))

    @rule(data=st.data(), steps=st.integers(min_value=1, max_value=6))
    def deliver(self, data: st.DataObject, steps: int) -> None:
        for _ in range(steps):
            waiting = self.bus.waiting()
            if not waiting:
                return
            partition = data.draw(st.sampled_from(waiting))
            for assigned in values(self.bus.deliver(partition), "lead.commands", LeadAssigned):
                if held(self.bus, assigned.rep_id) > CAPACITY[assigned.rep_id]:
                    self.over.append(f"{assigned.rep_id} holds {held(self.bus, assigned.rep_id)} "
                                     f"> {CAPACITY[assigned.rep_id]} after {assigned.lead_id} in {assigned.team_id}")

    @invariant()
    def no_rep_above_capacity(self) -> None:
        assert not self.over, self.over

    def teardown(self) -> None:
        try:
            self._quiesce()
        finally:
            team.MAX_REPS, team.STATE_BYTES_BUDGET = self.max_reps, self.budget

    def _quiesce(self) -> None:
        # Every message delivered, a worker started again (moves whose answer was lost are asked
        # again) and its messages delivered; then each rep's counters match the holdings.
        for restart in (self.restart, lambda: None):
            while waiting := self.bus.waiting():
                self.bus.deliver(waiting[0])
            restart()
        assert not self.over, self.over
        for rep_id in REPS:
            assert (self.bus.directory[rep_id].joining, self.bus.directory[rep_id].asked) == (None, None), rep_id
            team_id = self.bus.directory[rep_id].team_id
            rep = self.bus.team(team_id).reps[rep_id]
            here = len(self.bus.teams[team_id].queue.held_by(rep_id))
            assert not rep.awaiting_handover
            assert (rep.load, rep.open_leads) == (here, held(self.bus, rep_id)), rep_id
            for other, driver in self.bus.teams.items():
                ghost: Any = driver.state.reps.get(rep_id) if driver.state is not None else None
                if other != team_id and ghost is not None:
                    assert ghost.departed and ghost.load == len(driver.queue.held_by(rep_id)) > 0
        for rep_id, entry in self.bus.directory.items():
            self._tells_the_truth(rep_id, entry)

    def _tells_the_truth(self, rep_id: str, entry: RepEntry) -> None:
        """``GET /v1/reps/{id}``'s source: in their team with the profile it holds, or in none."""
        if entry.joining is not None or entry.asked is not None or entry.unanswered is not None:
            # Only a rep the YAML never named can still wait: nothing asks again for the API.
            assert rep_id not in self.yaml, (rep_id, entry)
            return
        driver = self.bus.teams.get(entry.team_id)
        there: Any = driver.state.reps.get(rep_id) if driver is not None and driver.state is not None else None
        if entry.in_team:
            assert there is not None and not there.departed, (rep_id, entry)
            assert there.profile == entry.profile, rep_id
            assert entry.refused is None or entry.refused.team_id == entry.team_id
        else:
            assert there is None or there.departed, (rep_id, entry)
        for other, other_driver in self.bus.teams.items():
            ghost: Any = other_driver.state.reps.get(rep_id) if other_driver.state is not None else None
            if other != entry.team_id and ghost is not None:
                assert ghost.departed, (rep_id, other, entry)


RepMoves.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=timedelta(seconds=5),
                                      suppress_health_check=[HealthCheck.too_slow])
test_no_rep_is_ever_above_capacity_across_team_moves = RepMoves.TestCase


def test_the_handover_survives_the_wire() -> None:
    from rules.commands import ReportHeld, SetHeldElsewhere
    from streams.codec import decode, encode

    bus = TeamsBus()
    bus.send("rep.commands", "fay", put("fay", "a", capacity=2))
    bus.send("team.commands", "a", route("a", 1))
    bus.send("rep.commands", "fay", put("fay", "b", capacity=2))
    entry = bus.directory["fay"]
    assert entry.held_in == {"a": 1}
    for value in (entry, bus.team("a"), bus.team("b"),
                  ReportHeld(rep_id="fay", team_id="a", open_leads=1, move=1, at=T0),
                  SetHeldElsewhere(team_id="b", rep_id="fay", open_leads=1, settled=True, at=T0)):
        assert decode(encode(value)) == value

"""A new rep or a change the rep's team refuses: the directory shows what the team holds.

Session 16 left it: a new rep a full team refused, or a change that would have made the team too
big, was recorded by the directory as taken (``GET /v1/reps/{id}`` showed the rep in the team,
with the new profile), while the team never took it and listed it under ``refused_reps``. The
directory now asks the team for every change, as for a move, and reads its answer
(``ReportJoin``, saying what the team holds).
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from rules import reps, team
from rules.commands import PutRep, RemoveRep, RepProfile, ReportJoin, RetireRep, UpsertRep
from rules.reps import RepEntry
from tests.rules._sim import T0, Bus, TeamDriver, values


def put(rep_id: str, team_id: str, *, capacity: int = 2, skills: tuple[str, ...] = (),
        from_config: bool = False) -> PutRep:
    return PutRep(rep_id=rep_id, profile=RepProfile(rep_id=rep_id, team_id=team_id, name=rep_id.title(),
                                                    capacity=capacity, skills=skills,
                                                    webhook_url=f"https://hooks.test/{rep_id}",
                                                    webhook_secret="whsec_x"), at=T0, from_config=from_config)


BIG = ("x" * 3000,)  # a change that makes the team bigger than the budget set below


def full_bus(monkeypatch: pytest.MonkeyPatch) -> Bus:
    """Team ``t`` holds ``ana`` and is full (``MAX_REPS`` 1)."""
    monkeypatch.setattr(team, "MAX_REPS", 1)
    bus = Bus()
    bus.send("rep.commands", "ana", put("ana", "t"))
    return bus


def test_a_new_rep_a_full_team_refuses_is_in_no_team(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = full_bus(monkeypatch)
    bus.send("rep.commands", "bo", put("bo", "t"))
    assert "bo" not in bus.team("t").reps and [r.rep_id for r in bus.team("t").refused_reps] == ["bo"]
    bo = bus.directory["bo"]
    assert (bo.team_id, bo.member, bo.in_team, bo.joining) == ("t", False, False, None)
    assert bo.refused is not None and bo.refused.team_id == "t"
    assert bo.refused.reason == bus.team("t").refused_reps[0].reason
    # Kept as asked, so the next PUT (which may name only some fields) fills the rest from it.
    assert bo.profile == put("bo", "t").profile
    # Room made: the next PUT takes bo in, and the refusal is over.
    bus.send("rep.commands", "ana", RetireRep(rep_id="ana", at=T0))
    bus.send("rep.commands", "bo", put("bo", "t", capacity=3))
    bo = bus.directory["bo"]
    assert (bo.in_team, bo.refused, bo.profile) == (True, None, bus.team("t").reps["bo"].profile)
    assert bo.profile is not None and bo.profile.capacity == 3


def test_a_new_rep_waits_as_pending_until_the_team_answers() -> None:
    asked = reps.apply(None, put("bo", "t"), T0)
    assert asked.entry is not None and not asked.entry.in_team and asked.entry.profile is None
    # The question waits in ``asked``, not ``joining``: a worker from before f9c1b98 reads ``joining``
    # as a move (test_rep_rolling.py).
    assert asked.entry.joining is None and asked.entry.asked is not None and asked.entry.asked.team_id == "t"
    t = TeamDriver()
    [answer] = values(list(t.send(asked.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    assert (answer.refused, answer.member, answer.profile) == (None, True, put("bo", "t").profile)
    taken = reps.apply(asked.entry, answer, T0).entry
    assert taken is not None and taken.in_team and taken.asked is None and taken.profile == answer.profile


def test_a_refused_change_in_the_team_keeps_the_profile_the_team_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = Bus()
    bus.send("rep.commands", "ana", put("ana", "t"))
    held = bus.team("t").reps["ana"].profile
    monkeypatch.setattr(team, "STATE_BYTES_BUDGET", team.state_bytes(bus.team("t")) + 1000)
    bus.send("rep.commands", "ana", put("ana", "t", capacity=5, skills=BIG))
    assert bus.team("t").reps["ana"].profile == held  # the team kept what it had
    ana = bus.directory["ana"]
    assert (ana.in_team, ana.profile, ana.joining, ana.asked) == (True, held, None, None)
    assert ana.refused is not None and "bytes encoded" in ana.refused.reason and ana.move_refused is None
    # A change the team takes is applied and ends the refusal.
    bus.send("rep.commands", "ana", put("ana", "t", capacity=4))
    ana = bus.directory["ana"]
    assert ana.refused is None and ana.profile == bus.team("t").reps["ana"].profile
    assert ana.profile is not None and ana.profile.capacity == 4


def test_a_change_taken_then_one_refused_before_either_answer_shows_the_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two PUTs before the team answers: the first is taken, the second refused. The directory
    waited for the second only, but the team holds the first: its answer says so."""
    bus = Bus()
    bus.send("rep.commands", "ana", put("ana", "t"))
    monkeypatch.setattr(team, "STATE_BYTES_BUDGET", team.state_bytes(bus.team("t")) + 1000)
    entry = bus.directory["ana"]
    first = reps.apply(entry, put("ana", "t", capacity=3), T0)
    second = reps.apply(first.entry, put("ana", "t", capacity=4, skills=BIG), T0)
    assert second.entry is not None and not second.outgoing[0].value.keep  # type: ignore[attr-defined]
    t = bus.teams["t"]
    [yes] = values(list(t.send(first.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    [no] = values(list(t.send(second.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    assert yes.refused is None and no.refused is not None
    after_yes = reps.apply(second.entry, yes, T0).entry
    assert after_yes is not None and after_yes.asked == second.entry.asked  # the second still waits
    after = reps.apply(after_yes, no, T0).entry
    assert after is not None and after.profile == bus.team("t").reps["ana"].profile
    assert after.profile is not None and after.profile.capacity == 3 and after.refused is not None
    # Read again (a replay), either answer changes nothing.
    assert reps.apply(after, no, T0).entry is after and reps.apply(after, yes, T0).entry is after


def test_a_no_then_a_yes_to_the_same_question_asked_again_shows_the_rep_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The YAML's new rep asked twice (a worker's start): a full team says no, makes room, says yes."""
    monkeypatch.setattr(team, "MAX_REPS", 1)
    asked = reps.apply(None, put("bo", "t", from_config=True), T0)
    again = reps.apply(asked.entry, put("bo", "t", from_config=True), T0)
    assert again.entry is asked.entry and again.outgoing == asked.outgoing
    t = TeamDriver()
    t.send(UpsertRep(team_id="t", profile=put("ana", "t").profile, at=T0), T0)
    [no] = values(list(t.send(asked.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    t.send(RemoveRep(team_id="t", rep_id="ana", reason="retired", at=T0, move=1), T0)
    [yes] = values(list(t.send(again.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    refused = reps.apply(asked.entry, no, T0).entry
    assert refused is not None and not refused.in_team and refused.refused is not None
    taken = reps.apply(refused, yes, T0).entry
    assert taken is not None and taken.in_team and taken.refused is None
    assert t.state is not None and taken.profile == t.state.reps["bo"].profile


def test_a_retirement_before_the_answer_wins_over_a_late_yes() -> None:
    """DELETE while a retired rep's comeback waits: the team gets RemoveRep after the question, and
    the yes, older than the retirement, does not bring the rep back."""
    bus = Bus()
    bus.send("rep.commands", "ana", put("ana", "t"))
    bus.send("rep.commands", "ana", RetireRep(rep_id="ana", at=T0))
    back = reps.apply(bus.directory["ana"], put("ana", "t"), T0)
    retired = reps.apply(back.entry, RetireRep(rep_id="ana", at=T0), T0)
    assert retired.entry is not None and retired.entry.retired == "api" and retired.entry.asked is None
    [remove] = retired.outgoing
    assert isinstance(remove.value, RemoveRep) and remove.key == "t"
    t = bus.teams["t"]
    [yes] = values(list(t.send(back.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    t.send(remove.value, T0)
    assert yes.refused is None and t.state is not None and "ana" not in t.state.reps
    after = reps.apply(retired.entry, yes, T0).entry
    assert after is retired.entry and not after.in_team


def test_an_answer_from_a_worker_older_than_member_reads_as_before() -> None:
    """A rolling upgrade: the team's answer says yes or no only (``member`` is ``None``)."""
    asked = reps.apply(None, put("bo", "t"), T0)
    assert asked.entry is not None
    old_yes = ReportJoin(rep_id="bo", team_id="t", move=1, refused=None, at=T0)
    taken = reps.apply(asked.entry, old_yes, T0).entry
    assert taken is not None and taken.in_team and taken.profile == put("bo", "t").profile
    old_no = replace(old_yes, refused="team t has 500 reps")
    refused = reps.apply(asked.entry, old_no, T0).entry
    assert refused is not None and not refused.in_team and refused.refused is not None


def test_an_entry_from_before_the_answers_reads_as_a_member() -> None:
    from streams.codec import decode, encode

    legacy = RepEntry(rep_id="ana", team_id="t", updated_at=T0)
    assert legacy.in_team
    raw = encode(legacy).replace(b',"member":true', b"").replace(b',"refused":null', b"").replace(b',"answered":0', b"")
    assert b"member" not in raw and decode(raw) == legacy
    refused = reps.apply(reps.apply(None, put("bo", "t"), T0).entry, ReportJoin(
        rep_id="bo", team_id="t", move=1, refused="full", at=T0, member=False), T0).entry
    assert refused is not None and decode(encode(refused)) == refused


def test_an_unchanged_yaml_asks_again_for_an_api_change_a_refused_move_left_unanswered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s17-a A2: an API change in the rep's team, replaced by a move before its answer was
    read, the move then refused: a worker's start with the unchanged YAML asked the YAML's profile
    as a new question, and the team ended with the YAML's capacity over the API's."""
    yaml = put("ana", "a", from_config=True)
    a, b = TeamDriver(), TeamDriver()
    seeded = reps.apply(None, yaml, T0)
    [yes] = values(list(a.send(seeded.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    entry = reps.apply(seeded.entry, yes, T0).entry
    monkeypatch.setattr(team, "MAX_REPS", 1)
    b.send(UpsertRep(team_id="b", profile=put("zed", "b").profile, at=T0), T0)  # b is full
    change = reps.apply(entry, put("ana", "a", capacity=5), T0)  # the API: capacity 5 in a
    move = reps.apply(change.entry, put("ana", "b", capacity=5), T0)  # then a move to b, before a answers
    assert move.entry is not None and move.entry.unanswered is not None
    [no] = values(list(b.send(move.outgoing[-1].value, T0).outgoing), "rep.commands", ReportJoin)
    refused = reps.apply(move.entry, no, T0)
    assert refused.entry is not None and refused.entry.joining is None and refused.entry.unanswered is not None
    start = reps.apply(refused.entry, yaml, T0)  # a worker starts before a's answers are read
    assert start.entry is refused.entry  # nothing new asked: the API's change asked again
    assert [(o.key, o.value.profile.capacity) for o in start.outgoing] == [("a", 5)]  # type: ignore[attr-defined]
    directory = start.entry
    for message in (*change.outgoing, *refused.outgoing, *start.outgoing):
        for answer in values(list(a.send(message.value, T0).outgoing), "rep.commands", ReportJoin):
            directory = reps.apply(directory, answer, T0).entry
    assert a.state is not None and a.state.reps["ana"].profile.capacity == 5
    assert directory is not None and directory.profile == a.state.reps["ana"].profile
    assert directory.unanswered is None and directory.asked is None


def _as_from_an_old_team(answer: ReportJoin) -> ReportJoin:
    """The answer a team worker from before f9c1b98 gives: no ``member``, no ``profile``."""
    return replace(answer, member=None, profile=None)


def test_an_old_teams_yes_to_a_replaced_question_leaves_the_profile_unknown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s17-a A3 (rolling upgrade: a new directory, an old team). Two PUTs before the answers,
    the first taken, the second refused: the directory kept the profile from before both, and a
    later PUT naming only the weight asked the team for that old capacity again."""
    bus = Bus()
    bus.send("rep.commands", "ana", put("ana", "t"))  # capacity 2
    monkeypatch.setattr(team, "STATE_BYTES_BUDGET", team.state_bytes(bus.team("t")) + 1000)
    first = reps.apply(bus.directory["ana"], put("ana", "t", capacity=5), T0)
    second = reps.apply(first.entry, put("ana", "t", capacity=5, skills=BIG), T0)
    t = bus.teams["t"]
    [yes] = values(list(t.send(first.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    [no] = values(list(t.send(second.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    entry = reps.apply(second.entry, _as_from_an_old_team(yes), T0).entry
    entry = reps.apply(entry, _as_from_an_old_team(no), T0).entry
    assert bus.team("t").reps["ana"].profile.capacity == 5
    assert entry is not None and entry.in_team and entry.refused is not None
    assert entry.profile is None  # not known: neither capacity 2 (before both) nor the refused change
    later = PutRep(rep_id="ana", profile=replace(put("ana", "t", capacity=1).profile, weight=3), at=T0,
                   keep=("capacity", "name", "skills", "webhook_url", "webhook_secret"))
    asked = reps.apply(entry, later, T0)
    [upsert] = asked.outgoing
    assert isinstance(upsert.value, UpsertRep) and "capacity" in upsert.value.keep
    t.send(upsert.value, T0)
    held = bus.team("t").reps["ana"].profile
    assert (held.capacity, held.weight) == (5, 3)  # the team filled the capacity from what it holds


def test_a_retired_rep_no_team_ever_held_is_not_taken_for_one_it_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s17-a A5: ``member`` after a retirement says whether the team held the rep then, so a
    refused new rep DELETEd is not shown with a profile nor counted as a rep the team lost."""
    bus = full_bus(monkeypatch)
    bus.send("rep.commands", "bo", put("bo", "t"))  # refused: the team is full
    bus.send("rep.commands", "bo", RetireRep(rep_id="bo", at=T0))
    bus.send("rep.commands", "ana", RetireRep(rep_id="ana", at=T0))
    bo, ana = bus.directory["bo"], bus.directory["ana"]
    assert (bo.retired, bo.in_team, bo.member) == ("api", False, False)
    assert (ana.retired, ana.in_team, ana.member) == ("api", False, True)
    # Brought back, then refused (another rep took the room meanwhile): still retired, still a rep it held.
    bus.send("rep.commands", "cy", put("cy", "t"))
    bus.send("rep.commands", "ana", put("ana", "t"))
    ana = bus.directory["ana"]
    assert (ana.retired, ana.in_team, ana.member) == ("api", False, True) and ana.refused is not None


def test_an_old_teams_repeated_yes_to_a_move_already_read_keeps_the_profile() -> None:
    """Review s17-e E1 (rolling upgrade): an old directory moved ana to ``b`` on b's first yes; b
    answered the move again (a worker start asked it again), and the new directory read that second
    yes. 7c2965c set the profile to unknown for any answer newer than the last read: GET showed no
    capacity, no name. Only a newer question waiting in that team makes the profile unknown."""
    profile = put("ana", "b", capacity=3).profile
    entry = RepEntry(rep_id="ana", team_id="b", updated_at=T0, profile=profile)  # as the old directory left it
    again = ReportJoin(rep_id="ana", team_id="b", move=1, refused=None, at=T0)  # an old team's answer
    read = reps.apply(entry, again, T0)
    assert read.outgoing == ()
    assert read.entry is not None and read.entry.in_team and read.entry.profile == profile


def test_a_partial_put_back_to_the_team_fills_from_the_change_a_move_replaced() -> None:
    """Review s17-e E2: a change in team a (capacity 5), then a move to b, then a PUT back to a naming
    only the weight, all before the answers: the last PUT filled its other fields from the profile
    before the change, and team a ended with capacity 2, not the 5 asked."""
    bus = Bus()
    bus.send("rep.commands", "ana", put("ana", "a", capacity=2))
    keep_all_but = lambda *given: tuple(name for name in ("name", "capacity", "skills", "webhook_url",  # noqa: E731
                                                          "webhook_secret") if name not in given)
    changed = reps.apply(bus.directory["ana"], PutRep(rep_id="ana", profile=put("ana", "a", capacity=5).profile,
                                                      at=T0, keep=keep_all_but("capacity")), T0)
    moved = reps.apply(changed.entry, PutRep(rep_id="ana", profile=put("ana", "b").profile, at=T0,
                                             keep=keep_all_but()), T0)
    assert moved.entry is not None
    assert reps.latest_profile(moved.entry).capacity == 5  # what the API checks a PUT against
    back = reps.apply(moved.entry, PutRep(rep_id="ana", profile=replace(put("ana", "a", capacity=1).profile, weight=3),
                                          at=T0, keep=keep_all_but("weight")), T0)
    upserts = [m.value for m in back.outgoing if isinstance(m.value, UpsertRep)]
    assert [u.profile.capacity for u in upserts] == [5]

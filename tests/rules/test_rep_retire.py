"""Retiring a rep: the YAML no longer names them (``ApplyRoster``) or ``DELETE /v1/reps`` (``RetireRep``).

A retired rep gets no new lead; the leads they hold stay theirs until released (the team keeps
them ``departed``, as after a move); a later ``PutRep`` brings them back. The roster retires only
reps whose last change came from the YAML: a rep made or changed through the API is the API's.
The property drives the directory and two teams with random seeds, API changes, deletes, rosters,
routes and releases, and checks each rule after every step.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rules import reps
from rules.commands import (
    ApplyRoster,
    ChangePresence,
    LeadAssigned,
    Outgoing,
    PutRep,
    ReleaseLead,
    RemoveRep,
    RepProfile,
    RetireRep,
    RouteLead,
    UpsertRep,
)
from rules.reps import RepEntry
from tests.rules._sim import T0, Bus, holdings, values
from tests.rules.test_rep_move import TeamsBus, held


def profile(rep_id: str, team_id: str, capacity: int = 2, name: str = "") -> RepProfile:
    return RepProfile(rep_id=rep_id, team_id=team_id, name=name or rep_id.title(), capacity=capacity,
                      webhook_url=f"https://hooks.test/{rep_id}", webhook_secret="whsec_x")


def seed(rep_id: str, team_id: str = "t1", capacity: int = 2, name: str = "") -> PutRep:
    return PutRep(rep_id=rep_id, profile=profile(rep_id, team_id, capacity, name), at=T0, from_config=True)


def api_put(rep_id: str, team_id: str = "t1", capacity: int = 2) -> PutRep:
    return PutRep(rep_id=rep_id, profile=profile(rep_id, team_id, capacity), at=T0)


def roster(bus: Bus, *rep_ids: str) -> list[Outgoing]:
    """What a worker start with a file naming ``rep_ids`` does: every partition's directory gets the
    roster and applies it to each of its entries (here: every entry)."""
    command = ApplyRoster(rep_ids=tuple(sorted(rep_ids)), config_digest="d1", at=T0)
    sent: list[Outgoing] = []
    for rep_id in sorted(bus.directory):
        sent += bus.send("rep.commands", rep_id, command)
    return sent


def route(bus: Bus, team_id: str, n: int) -> str | None:
    """Route lead ``n`` in ``team_id``; the rep it went to (None: queued)."""
    sent = bus.send("team.commands", team_id, RouteLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1",
                                                        requested_at=T0))
    assigned = [a.rep_id for a in values(sent, "lead.commands", LeadAssigned) if a.lead_id == f"l{n}"]
    return assigned[0] if assigned else None


def release(bus: Bus, team_id: str, n: int, rep_id: str) -> list[Outgoing]:
    return bus.send("team.commands", team_id, ReleaseLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1",
                                                          rep_id=rep_id, reason="done", at=T0))


def holds(bus: Bus, team_id: str, n: int) -> str | None:
    return bus.teams[team_id].holder_of(f"l{n}", f"l{n}:1:1")


def test_the_audit_a_rep_dropped_from_the_yaml_gets_no_new_lead_and_keeps_the_one_they_hold() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "ana", seed("ana", capacity=5))
    bus.send("rep.commands", "ben", seed("ben", capacity=5))
    firsts = [route(bus, "t1", n) for n in (1, 2)]
    assert sorted(firsts) == ["ana", "ben"]  # type: ignore[type-var]
    ben_lead = firsts.index("ben") + 1
    # The restart with up2.yaml: ana seeded again (unchanged: nothing sent), then the roster.
    bus.send("rep.commands", "ana", seed("ana", capacity=5))
    sent = roster(bus, "ana")
    (remove,) = values(sent, "team.commands", RemoveRep)
    assert (remove.team_id, remove.rep_id) == ("t1", "ben") and "not in the config" in remove.reason
    assert bus.directory["ben"].retired == "config" and bus.directory["ana"].retired is None
    ben = bus.team("t1").reps["ben"]
    assert ben.departed and ben.load == 1
    assert [route(bus, "t1", n) for n in range(3, 11)] == ["ana"] * 4 + [None] * 4  # ana's capacity is 5
    assert holds(bus, "t1", ben_lead) == "ben", "his lead stays his until released"
    release(bus, "t1", ben_lead, "ben")
    assert "ben" not in bus.team("t1").reps
    assert bus.directory["ben"].left == {}


def test_a_rep_without_leads_leaves_the_team_at_once() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "ben", seed("ben"))
    roster(bus, "ana")
    assert "ben" not in bus.team("t1").reps and route(bus, "t1", 1) is None


def test_an_api_made_rep_is_not_the_yamls_to_retire() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "ana", seed("ana"))
    bus.send("rep.commands", "zoe", api_put("zoe"))
    assert values(roster(bus, "ana"), "team.commands", RemoveRep) == []
    assert bus.directory["zoe"].retired is None and not bus.team("t1").reps["zoe"].departed


def test_a_yaml_rep_last_changed_through_the_api_is_the_apis() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "ben", seed("ben"))
    bus.send("rep.commands", "ben", api_put("ben", capacity=4))
    assert values(roster(bus, "ana"), "team.commands", RemoveRep) == []
    assert bus.directory["ben"].retired is None and bus.directory["ben"].origin == "api"


def test_an_entry_from_before_origin_was_kept_counts_as_the_yamls_if_the_yaml_seeded_it() -> None:
    seeded = RepEntry(rep_id="ben", team_id="t1", updated_at=T0, config_digest="x")
    api_made = RepEntry(rep_id="zoe", team_id="t1", updated_at=T0)
    command = ApplyRoster(rep_ids=("ana",), config_digest="d1", at=T0)
    assert reps.apply(seeded, command, T0).entry.retired == "config"  # type: ignore[union-attr]
    assert reps.apply(api_made, command, T0).entry is api_made


def test_retiring_twice_sends_nothing_more() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "ben", seed("ben"))
    roster(bus, "ana")
    assert values(roster(bus, "ana"), "team.commands") == []
    assert values(bus.send("rep.commands", "ben", RetireRep(rep_id="ben", at=T0)), "team.commands") == []
    assert bus.directory["ben"].retired == "api"  # a DELETE makes it the API's: see below


def test_a_rep_named_again_by_the_yaml_comes_back_unless_the_api_retired_them() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "ben", seed("ben"))
    roster(bus, "ana")
    bus.send("rep.commands", "ben", seed("ben"))  # the same entry, back in the file
    assert bus.directory["ben"].retired is None and route(bus, "t1", 1) == "ben"
    bus.send("rep.commands", "ben", RetireRep(rep_id="ben", at=T0))
    bus.send("rep.commands", "ben", seed("ben"))  # a restart with the unchanged file: the DELETE stands
    assert bus.directory["ben"].retired == "api" and route(bus, "t1", 2) is None
    bus.send("rep.commands", "ben", seed("ben", capacity=3))  # the file's entry changed: applied
    assert bus.directory["ben"].retired is None and route(bus, "t1", 3) == "ben"


@pytest.mark.parametrize("origin", ["config", "api"])
def test_delete_retires_any_rep_and_a_put_brings_them_back_counting_their_lead_once(origin: str) -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "ben", seed("ben") if origin == "config" else api_put("ben"))
    assert route(bus, "t1", 1) == "ben"
    bus.send("rep.commands", "ben", RetireRep(rep_id="ben", at=T0))
    assert bus.team("t1").reps["ben"].departed and route(bus, "t1", 2) is None
    # Presence changes go nowhere while retired.
    assert values(bus.send("rep.commands", "ben", ChangePresence(rep_id="ben", status="available", at=T0)),
                  "team.commands") == []
    bus.send("rep.commands", "ben", api_put("ben"))  # back, capacity 2, holding l1: l2 (queued) goes to him
    rep = bus.team("t1").reps["ben"]
    assert not rep.departed and (rep.load, rep.held_elsewhere) == (2, 0)
    assert holds(bus, "t1", 1) == holds(bus, "t1", 2) == "ben"
    assert route(bus, "t1", 3) is None


def test_a_retired_rep_brought_back_in_another_team_has_their_old_lead_counted() -> None:
    bus = TeamsBus()
    bus.send("rep.commands", "ben", api_put("ben", "t1", capacity=1))
    assert route(bus, "t1", 1) == "ben"
    bus.send("rep.commands", "ben", RetireRep(rep_id="ben", at=T0))
    bus.send("rep.commands", "ben", api_put("ben", "t2", capacity=1))
    assert bus.team("t2").reps["ben"].open_leads == 1 and route(bus, "t2", 2) is None
    release(bus, "t1", 1, "ben")
    assert holds(bus, "t2", 2) == "ben" and "ben" not in bus.team("t1").reps


def test_retirement_survives_the_wire() -> None:
    from streams.codec import decode, encode

    bus = TeamsBus()
    bus.send("rep.commands", "ben", seed("ben"))
    route(bus, "t1", 1)
    roster(bus, "ana")
    for value in (bus.directory["ben"], bus.team("t1"), RetireRep(rep_id="ben", at=T0, reason="gone"),
                  ApplyRoster(rep_ids=("ana", "cy"), config_digest="abc", at=T0)):
        assert decode(encode(value)) == value


# --- the property ------------------------------------------------------------------------

YAML_REPS = ("y1", "y2")  # named by the YAML (and maybe changed through the API)
API_REPS = ("p1",)  # never named by the YAML
TEAMS = ("t1", "t2")
CAPACITY = {"y1": 1, "y2": 2, "p1": 2}


class Retirements(RuleBasedStateMachine):
    """Each step runs to quiescence (one worker, FIFO); the model is the spec's table of who the
    roster retires: reps whose last applied change came from the YAML, that it does not name."""

    def __init__(self) -> None:
        super().__init__()
        self.bus = TeamsBus()
        self.leads = 0
        self.bad: list[str] = []
        self.origin: dict[str, str] = {}  # rep -> where the last applied change came from
        self.retired: dict[str, str | None] = {}
        self.seeded_name: dict[str, str] = {}  # rep -> the YAML entry last applied (its name varies)
        self.deleted_since_put: set[str] = set()

    def _send(self, key: str, value: Any, channel: str = "rep.commands") -> None:
        for out in self.bus.send(channel, key, value):  # type: ignore[arg-type]
            if isinstance(out.value, LeadAssigned):
                entry = self.bus.directory.get(out.value.rep_id)
                if entry is not None and entry.retired is not None:
                    self.bad.append(f"retired {out.value.rep_id} got {out.value.lead_id}")
                if held(self.bus, out.value.rep_id) > CAPACITY[out.value.rep_id]:
                    self.bad.append(f"{out.value.rep_id} above capacity")

    @rule(rep_id=st.sampled_from(YAML_REPS), team_id=st.sampled_from(TEAMS), same=st.booleans())
    def seed(self, rep_id: str, team_id: str, same: bool) -> None:
        last = self.seeded_name.get(rep_id)
        name = last if same and last is not None else f"{rep_id}-{len(self.bus.sent)}"
        team_id = self.bus.directory[rep_id].team_id if same and last is not None else team_id
        unchanged = last is not None and name == last and self.bus.directory[rep_id].profile is not None \
            and self.bus.directory[rep_id].config_digest == reps.profile_digest(profile(rep_id, team_id,
                                                                                        CAPACITY[rep_id], name))
        self._send(rep_id, seed(rep_id, team_id, CAPACITY[rep_id], name))
        if unchanged and self.retired.get(rep_id) != "config":
            return
        self.origin[rep_id], self.retired[rep_id], self.seeded_name[rep_id] = "config", None, name
        self.deleted_since_put.discard(rep_id)

    @rule(rep_id=st.sampled_from(YAML_REPS + API_REPS), team_id=st.sampled_from(TEAMS))
    def put(self, rep_id: str, team_id: str) -> None:
        self._send(rep_id, api_put(rep_id, team_id, CAPACITY[rep_id]))
        self.origin[rep_id], self.retired[rep_id] = "api", None
        self.deleted_since_put.discard(rep_id)

    @rule(rep_id=st.sampled_from(YAML_REPS + API_REPS))
    def delete(self, rep_id: str) -> None:
        self._send(rep_id, RetireRep(rep_id=rep_id, at=T0))
        if rep_id in self.origin:
            self.origin[rep_id], self.retired[rep_id] = "api", "api"
            self.deleted_since_put.add(rep_id)

    @rule(named=st.sets(st.sampled_from(YAML_REPS)))
    def restart(self, named: set[str]) -> None:
        expected = {r for r in self.origin if self.origin[r] == "config" and self.retired[r] is None
                    and r not in named}
        for rep_id in sorted(self.bus.directory):
            self._send(rep_id, ApplyRoster(rep_ids=tuple(sorted(named)), config_digest="d", at=T0))
        for rep_id in expected:
            self.retired[rep_id] = "config"

    @rule(team_id=st.sampled_from(TEAMS))
    def route(self, team_id: str) -> None:
        self.leads += 1
        self._send(team_id, RouteLead(team_id=team_id, lead_id=f"l{self.leads}", route_id=f"l{self.leads}:1:1",
                                      requested_at=T0), channel="team.commands")

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        held_now = holdings(self.bus)
        if held_now:
            team_id, route_id, lead_id, rep_id = data.draw(st.sampled_from(held_now))
            self._send(team_id, ReleaseLead(team_id=team_id, lead_id=lead_id, route_id=route_id, rep_id=rep_id,
                                            reason="done", at=T0), channel="team.commands")

    @invariant()
    def no_retired_rep_got_a_lead_and_nobody_is_above_capacity(self) -> None:
        assert not self.bad, self.bad

    @invariant()
    def the_roster_retires_exactly_the_yamls_reps_it_does_not_name(self) -> None:
        for rep_id, origin in self.origin.items():
            entry = self.bus.directory[rep_id]
            assert entry.retired == self.retired[rep_id], (rep_id, entry.retired, self.retired[rep_id])
            if rep_id in API_REPS and rep_id not in self.deleted_since_put:
                assert entry.retired is None, f"the API's {rep_id} was retired by a roster"

    @invariant()
    def retired_reps_are_departed_or_gone_and_keep_their_leads(self) -> None:
        for rep_id, entry in self.bus.directory.items():
            for team_id, driver in self.bus.teams.items():
                rep = driver.state.reps.get(rep_id) if driver.state is not None else None
                here = len(driver.queue.held_by(rep_id))
                if entry.retired is not None or team_id != entry.team_id:
                    # Not their team (any more): listed only while holding leads there, departed.
                    assert rep is None or (rep.departed and rep.load == here > 0), (rep_id, team_id, rep)
                    assert rep is not None or here == 0, f"{rep_id} holds {here} in {team_id} uncounted"
                else:
                    assert rep is not None and not rep.departed and rep.load == here
                    assert rep.open_leads == held(self.bus, rep_id)


Retirements.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=timedelta(seconds=5),
                                         suppress_health_check=[HealthCheck.too_slow])
test_retirement_rules_hold_over_any_sequence = Retirements.TestCase

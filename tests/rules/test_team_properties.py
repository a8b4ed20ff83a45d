"""Stateful property test of the team state machine, driven like the team agent drives it.

Random interleavings of new and replayed RouteLeads, held / stale / replayed ReleaseLeads,
presence changes and capacity changes (up and down); after every step the capacity, single
holder, no-double-assignment, queue and drain invariants must hold.
"""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from rules.commands import (
    LeadAssigned,
    LeadQueued,
    RepProfile,
    ReleaseLead,
    RouteLead,
    SetPresence,
    TeamCommand,
    UpsertRep,
)
from rules.team import TeamState, TeamTransition
from tests.rules._sim import T0, TeamDriver

TEAM = "team-1"
REP_IDS = ("rep-a", "rep-b", "rep-c", "rep-d", "rep-e")
presences = st.sampled_from(("available", "busy", "offline"))
capacities = st.integers(min_value=0, max_value=4)
weights = st.integers(min_value=1, max_value=5)


def _held(state: TeamState | None, rep_id: str) -> set[tuple[str, str]]:
    if state is None or rep_id not in state.reps:
        return set()
    return {(o.lead_id, o.route_id) for o in state.reps[rep_id].open_leads}


class TeamMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.team = TeamDriver()
        self.now = T0
        self.next_lead = 0
        self.routes: list[RouteLead] = []        # every distinct RouteLead sent
        self.releases: list[ReleaseLead] = []    # every ReleaseLead sent
        self.released: set[str] = set()          # route ids whose assignment was released
        self.named: dict[str, str] = {}          # route id -> the rep every LeadAssigned named
        self.fresh: Counter[str] = Counter()     # route id -> times it was newly taken by a rep

    # --- the agent loop, with the per-transition checks -------------------------------

    def send(self, command: TeamCommand) -> TeamTransition:
        before = self.team.state
        self.now += timedelta(seconds=7)
        transition = self.team.send(command, self.now)
        self.check_transition(before, command, transition)
        return transition

    def check_transition(self, before: TeamState | None, command: TeamCommand, transition: TeamTransition) -> None:
        after = transition.state
        for rep_id, rep in after.reps.items():
            was, now_held = _held(before, rep_id), _held(after, rep_id)
            removed, added = was - now_held, now_held - was
            # Nothing is ever evicted, not even by lowering capacity: only the exact release frees.
            if removed:
                assert isinstance(command, ReleaseLead), (command, removed)
                assert rep_id == command.rep_id
                assert removed == {(command.lead_id, command.route_id)}
                self.released.add(command.route_id)
            if added:
                # Leads are added one by one; the last addition happened at load == final - 1.
                assert rep.load <= rep.profile.capacity, f"{rep_id} took a lead at {rep.load - 1}/{rep.profile.capacity}"
                assert rep.presence == "available", f"{rep_id} took a lead while {rep.presence}"
            for _, route_id in added:
                self.fresh[route_id] += 1
                assert self.fresh[route_id] == 1, f"route {route_id} assigned twice"
                assert route_id not in self.released, f"released route {route_id} assigned again"

        for message in transition.outgoing:
            assert message.channel == "lead.commands"
            assert message.key == message.value.lead_id
            value = message.value
            if isinstance(value, LeadAssigned):
                assert self.named.setdefault(value.route_id, value.rep_id) == value.rep_id, (
                    f"route {value.route_id} named {self.named[value.route_id]} then {value.rep_id}")
                assert after.reps[value.rep_id].holds(value.lead_id, value.route_id)
                assert value.decision.winner == value.rep_id
            else:
                assert isinstance(value, LeadQueued)
                assert value.depth >= 1

        if isinstance(command, RouteLead):
            answers = [m.value for m in transition.outgoing
                       if m.value.route_id == command.route_id and isinstance(m.value, LeadAssigned | LeadQueued)]
            if command.route_id in self.released:
                # A replay of a route already released: the lead has moved on, nothing to say.
                assert answers == []
                assert after == before
            else:
                assert answers, f"RouteLead {command.route_id} neither assigned nor queued"

    # --- setup -----------------------------------------------------------------------

    @initialize(reps=st.lists(st.tuples(capacities, weights, presences), min_size=1, max_size=len(REP_IDS)))
    def make_team(self, reps: list[tuple[int, int, str]]) -> None:
        for rep_id, (capacity, weight, presence) in zip(REP_IDS, reps):
            self.send(UpsertRep(team_id=TEAM, at=self.now, profile=RepProfile(
                rep_id=rep_id, team_id=TEAM, capacity=capacity, weight=weight,
                webhook_url=f"https://example.test/{rep_id}", webhook_secret="whsec_x")))
            self.send(SetPresence(team_id=TEAM, rep_id=rep_id, status=presence, at=self.now))  # type: ignore[arg-type]

    # --- routing ---------------------------------------------------------------------

    @rule()
    def route_new_lead(self) -> None:
        lead_id = f"ld_{self.next_lead:04d}"
        self.next_lead += 1
        command = RouteLead(team_id=TEAM, lead_id=lead_id, route_id=f"{lead_id}:1:1", requested_at=self.now)
        self.routes.append(command)
        self.send(command)

    @precondition(lambda self: self.routes)
    @rule(data=st.data())
    def replay_route(self, data: st.DataObject) -> None:
        self.send(data.draw(st.sampled_from(self.routes), label="replayed RouteLead"))

    @precondition(lambda self: self.released)
    @rule(data=st.data())
    def route_again_new_cycle(self, data: st.DataObject) -> None:
        # The lead was closed and reopened: a new routing attempt has a new route id.
        old = data.draw(st.sampled_from(sorted(self.released)), label="released route")
        lead_id, cycle, _ = old.split(":")
        route_id = f"{lead_id}:{int(cycle) + 1}:1"
        if any(r.route_id == route_id for r in self.routes):
            return
        command = RouteLead(team_id=TEAM, lead_id=lead_id, route_id=route_id, requested_at=self.now)
        self.routes.append(command)
        self.send(command)

    # --- releasing -------------------------------------------------------------------

    def _holdings(self) -> list[tuple[str, str, str]]:
        state = self.team.state
        assert state is not None
        return sorted((rep_id, o.lead_id, o.route_id) for rep_id, rep in state.reps.items() for o in rep.open_leads)

    def _release(self, rep_id: str, lead_id: str, route_id: str, reason: str) -> None:
        command = ReleaseLead(team_id=TEAM, lead_id=lead_id, route_id=route_id, rep_id=rep_id,
                              reason=reason, at=self.now)
        self.releases.append(command)
        self.send(command)

    @precondition(lambda self: self._holdings())
    @rule(data=st.data())
    def release_held(self, data: st.DataObject) -> None:
        rep_id, lead_id, route_id = data.draw(st.sampled_from(self._holdings()), label="held")
        self._release(rep_id, lead_id, route_id, "disposition: disqualified")

    @precondition(lambda self: self.routes)
    @rule(data=st.data(), rep_id=st.sampled_from(REP_IDS + ("rep-ghost",)))
    def release_stale(self, data: st.DataObject, rep_id: str) -> None:
        # A known route named with any rep (often the wrong one, or one that already released it).
        route = data.draw(st.sampled_from(self.routes), label="route")
        self._release(rep_id, route.lead_id, route.route_id, "stale assignment")

    @rule(rep_id=st.sampled_from(REP_IDS))
    def release_unknown(self, rep_id: str) -> None:
        self._release(rep_id, "ld_unknown", "ld_unknown:1:1", "unknown lead")

    @precondition(lambda self: self.releases)
    @rule(data=st.data())
    def replay_release(self, data: st.DataObject) -> None:
        self.send(data.draw(st.sampled_from(self.releases), label="replayed ReleaseLead"))

    # --- roster ----------------------------------------------------------------------

    @rule(rep_id=st.sampled_from(REP_IDS), status=presences)
    def set_presence(self, rep_id: str, status: str) -> None:
        # Unknown reps included: presence for a rep the team does not have changes nothing.
        self.send(SetPresence(team_id=TEAM, rep_id=rep_id, status=status, at=self.now))  # type: ignore[arg-type]

    @rule(rep_id=st.sampled_from(REP_IDS), capacity=capacities, weight=weights)
    def upsert_rep(self, rep_id: str, capacity: int, weight: int) -> None:
        # Capacity moves up and down, sometimes below the rep's current load; new reps join.
        self.send(UpsertRep(team_id=TEAM, at=self.now, profile=RepProfile(
            rep_id=rep_id, team_id=TEAM, capacity=capacity, weight=weight,
            webhook_url=f"https://example.test/{rep_id}", webhook_secret="whsec_x")))

    # --- invariants after every step -------------------------------------------------

    @invariant()
    def queue_bounds(self) -> None:
        state = self.team.state
        if state is None:
            return
        assert 0 <= state.queue_head <= state.queue_tail
        assert all(state.queue_head <= seq < state.queue_tail for seq in self.team.queue.entries)

    @invariant()
    def one_holder_per_route(self) -> None:
        state = self.team.state
        if state is None:
            return
        held = Counter((o.lead_id, o.route_id) for rep in state.reps.values() for o in rep.open_leads)
        assert not [k for k, n in held.items() if n > 1], held

    @invariant()
    def drain_works(self) -> None:
        state = self.team.state
        if state is None:
            return
        free = [r.rep_id for r in state.reps.values() if r.presence == "available" and r.load < r.profile.capacity]
        if free:
            assert state.queue_depth == 0, f"{free} could take a lead but {state.queue_depth} wait"

    @invariant()
    def no_lead_lost(self) -> None:
        # Every route not yet released is held by a rep or waiting in the queue.
        state = self.team.state
        if state is None:
            return
        held = {o.route_id for rep in state.reps.values() for o in rep.open_leads}
        waiting = {entry.route_id for entry in self.team.queue.entries.values()}
        lost = {r.route_id for r in self.routes} - self.released - held - waiting
        assert not lost, lost


TeamMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTeamMachine = TeamMachine.TestCase

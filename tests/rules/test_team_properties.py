"""Stateful property test of the team state machine, driven like the team agent drives it.

Random interleavings of new and replayed RouteLeads (some asking for skills or excluding reps),
held / stale / replayed ReleaseLeads, presence changes, capacity, cap and weight changes (up and
down), and time moving on by hours (working hours in several zones, a holiday, daily and weekly
cap resets); after every step the capacity, caps, single holder, no-double-assignment, queue and
drain invariants must hold, each against an oracle written independently of ``rules/``. At the
end, with room made everywhere, every lead some rep may take is assigned.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

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
    WithdrawLead,
)
from rules.roster import Holding
from rules.team import LOOKAHEAD, TeamState, TeamTransition
from tests.rules._sim import T0, TeamDriver

TEAM = "team-1"
REP_IDS = ("rep-a", "rep-b", "rep-c", "rep-d", "rep-e")
SKILLS = ("enterprise", "fintech")
presences = st.sampled_from(("available", "busy", "offline"))
capacities = st.integers(min_value=0, max_value=4)
weights = st.integers(min_value=1, max_value=5)
caps = st.none() | st.integers(min_value=1, max_value=4)
skill_sets = st.sets(st.sampled_from(SKILLS)).map(lambda s: tuple(sorted(s)))
strategies = st.sampled_from(("weighted_round_robin", "least_loaded", "most_available"))

# Each rep's zone and hours are fixed (caps count in the zone); (opens, closes, weekdays).
ZONES = {"rep-a": "UTC", "rep-b": "America/New_York", "rep-c": "Asia/Tokyo", "rep-d": "Asia/Kolkata",
         "rep-e": "Europe/Madrid"}
HOURS: dict[str, tuple[time, time, range] | None] = {
    "rep-a": None, "rep-b": (time(9), time(17), range(0, 5)), "rep-c": (time(9), time(17), range(0, 5)),
    "rep-d": None, "rep-e": (time(8), time(20), range(0, 7))}
WORKING_HOURS: dict[str, dict[str, tuple[str, ...]]] = {"rep-a": {}, "rep-b": {"mon-fri": ("09:00-17:00",)}, "rep-c": {"mon-fri": ("09:00-17:00",)},
                 "rep-d": {}, "rep-e": {"mon-sun": ("08:00-20:00",)}}
HOLIDAYS = {"rep-e": "ES"}  # 2026-01-06 (Epiphany) is a day off for rep-e
SPANISH = holidays.country_holidays("ES", years=range(2026, 2028))


def _profile(rep_id: str, capacity: int, weight: int, daily: int | None, weekly: int | None,
             skills: tuple[str, ...], strategy: str | None = None) -> RepProfile:
    return RepProfile(rep_id=rep_id, team_id=TEAM, capacity=capacity, weight=weight, daily_cap=daily,
                      weekly_cap=weekly, skills=skills, timezone=ZONES[rep_id], working_hours=WORKING_HOURS[rep_id],
                      holidays_country=HOLIDAYS.get(rep_id), team_strategy=strategy,
                      webhook_url=f"https://example.test/{rep_id}", webhook_secret="whsec_x")


def _working(rep_id: str, at: datetime) -> bool:
    local = at.astimezone(ZoneInfo(ZONES[rep_id]))
    if rep_id in HOLIDAYS and local.date() in SPANISH:
        return False
    hours = HOURS[rep_id]
    if hours is None:
        return True
    opens, closes, days = hours
    return local.weekday() in days and opens <= local.time() < closes


def _held(holdings: dict[str, Holding], rep_id: str) -> set[tuple[str, str]]:
    """What ``rep_id`` holds according to the side table's holdings (route id -> Holding)."""
    return {(h.lead_id, route_id) for route_id, h in holdings.items() if h.rep_id == rep_id}


def _holder(state: TeamState | None, holdings: dict[str, Holding], lead_id: str, route_id: str) -> str | None:
    holding = holdings.get(route_id)
    if state is None or holding is None or holding.lead_id != lead_id or holding.rep_id not in state.reps:
        return None
    return holding.rep_id


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
        self.taken: dict[str, list[datetime]] = {r: [] for r in REP_IDS}  # when each rep took leads

    # --- the oracle: may ``rep_id`` take ``entry`` at ``at``? (independent of rules/) ------

    def _taken_in(self, rep_id: str, at: datetime) -> tuple[int, int]:
        zone = ZoneInfo(ZONES[rep_id])
        day, week = at.astimezone(zone).date(), at.astimezone(zone).isocalendar()[:2]
        times = [t.astimezone(zone) for t in self.taken[rep_id]]
        return sum(t.date() == day for t in times), sum(t.isocalendar()[:2] == week for t in times)

    def may_take(self, state: TeamState, rep_id: str, entry: RouteLead | None, at: datetime,
                 extra_load: int = 0) -> bool:
        rep = state.reps[rep_id]
        day, week = self._taken_in(rep_id, at)
        profile = rep.profile
        return (rep.presence == "available" and rep.load + extra_load < profile.capacity
                and _working(rep_id, at)
                and (profile.daily_cap is None or day < profile.daily_cap)
                and (profile.weekly_cap is None or week < profile.weekly_cap)
                and (entry is None or (set(entry.required_skills) <= set(profile.skills)
                                       and rep_id not in entry.excluded_reps)))

    # --- the agent loop, with the per-transition checks -------------------------------

    def send(self, command: TeamCommand) -> TeamTransition:
        before, held_before = self.team.state, dict(self.team.queue.holdings)
        self.now += timedelta(seconds=7)
        transition = self.team.send(command, self.now)
        self.check_transition(before, held_before, command, transition)
        return transition

    def check_transition(self, before: TeamState | None, held_before: dict[str, Holding], command: TeamCommand,
                         transition: TeamTransition) -> None:
        after, held_after = transition.state, self.team.queue.holdings
        for rep_id, rep in after.reps.items():
            was, now_held = _held(held_before, rep_id), _held(held_after, rep_id)
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
                assert _working(rep_id, self.now), f"{rep_id} took a lead off hours at {self.now}"
                for lead_id, route_id in sorted(added):
                    entry = next(r for r in self.routes if r.route_id == route_id)
                    assert set(entry.required_skills) <= set(rep.profile.skills), (rep_id, entry)
                    assert rep_id not in entry.excluded_reps, (rep_id, entry)
                    self.taken[rep_id].append(self.now)
                day, week = self._taken_in(rep_id, self.now)
                assert rep.profile.daily_cap is None or day <= rep.profile.daily_cap, f"{rep_id}: {day} today"
                assert rep.profile.weekly_cap is None or week <= rep.profile.weekly_cap, f"{rep_id}: {week} this week"
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
                assert _holder(after, held_after, value.lead_id, value.route_id) == value.rep_id
                assert value.decision.winner == value.rep_id
            else:
                assert isinstance(value, LeadQueued)
                assert value.depth >= 1
                entry = next(r for r in self.routes if r.route_id == value.route_id)
                active = [rep for rep in after.reps.values() if not rep.departed]
                nobody = active and all(rep.rep_id in entry.excluded_reps
                                        or not set(entry.required_skills) <= set(rep.profile.skills)
                                        for rep in active)
                if nobody:  # a lead no rep may ever take has no wait estimate
                    assert value.expected_wait_s is None, (entry, value)

        if self.drains(before, held_before, command):
            self.check_drained(after)

        if isinstance(command, RouteLead):
            answers = [m.value for m in transition.outgoing
                       if m.value.route_id == command.route_id and isinstance(m.value, LeadAssigned | LeadQueued)]
            if command.route_id in self.released:
                # A replay of a route already released: the lead has moved on, nothing to say.
                assert answers == []
                assert after == before
            else:
                assert answers, f"RouteLead {command.route_id} neither assigned nor queued"

    def drains(self, before: TeamState | None, held_before: dict[str, Holding], command: TeamCommand) -> bool:
        """Whether ``command`` makes the team serve its queue (replays do not)."""
        if isinstance(command, RouteLead):
            return before is None or (_holder(before, held_before, command.lead_id, command.route_id) is None
                                      and command.route_id not in before.released_routes
                                      and not self.team.queue.contains(command.route_id))
        if isinstance(command, SetPresence):
            return before is not None and command.rep_id in before.reps
        return isinstance(command, UpsertRep | ReleaseLead)

    def check_drained(self, state: TeamState) -> None:
        # Nobody may take any waiting lead inside the look-ahead window: otherwise it would be theirs.
        for lane in state.lanes:
            for seq in range(lane.head, min(lane.tail, lane.head + LOOKAHEAD)):
                entry = self.team.queue.entries.get(seq)
                if (entry is None or entry.route_id in self.released
                        or _holder(state, self.team.queue.holdings, entry.lead_id, entry.route_id)):
                    continue
                takers = [r for r in state.reps if self.may_take(state, r, entry, self.now)]
                assert not takers, f"{takers} may take waiting {entry.route_id} at {self.now}"

    # --- setup -----------------------------------------------------------------------

    @initialize(reps=st.lists(st.tuples(capacities, weights, presences, caps, caps, skill_sets),
                              min_size=1, max_size=len(REP_IDS)), strategy=strategies)
    def make_team(self, reps: list[tuple[int, int, str, int | None, int | None, tuple[str, ...]]],
                  strategy: str) -> None:
        for rep_id, (capacity, weight, presence, daily, weekly, skills) in zip(REP_IDS, reps):
            self.send(UpsertRep(team_id=TEAM, at=self.now, profile=_profile(
                rep_id, capacity, weight, daily, weekly, skills, strategy)))
            self.send(SetPresence(team_id=TEAM, rep_id=rep_id, status=presence, at=self.now))  # type: ignore[arg-type]

    # --- routing ---------------------------------------------------------------------

    @rule(skills=st.just(()) | skill_sets, excluded=st.just(()) | st.sets(st.sampled_from(REP_IDS)).map(tuple),
          priority=st.integers(0, 3))
    def route_new_lead(self, skills: tuple[str, ...], excluded: tuple[str, ...], priority: int) -> None:
        lead_id = f"ld_{self.next_lead:04d}"
        self.next_lead += 1
        command = RouteLead(team_id=TEAM, lead_id=lead_id, route_id=f"{lead_id}:1:1", requested_at=self.now,
                            required_skills=skills, excluded_reps=excluded, priority=priority)
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
        return sorted((h.rep_id, h.lead_id, route_id) for route_id, h in self.team.queue.holdings.items())

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

    def _waiting(self) -> list[RouteLead]:
        return sorted(self.team.queue.entries.values(), key=lambda e: e.route_id)

    @precondition(lambda self: self.team.queue.entries)
    @rule(data=st.data())
    def withdraw_waiting(self, data: st.DataObject) -> None:
        # The lead left the queue unassigned (SLA release to the pool, overflow, disposition).
        entry = data.draw(st.sampled_from(self._waiting()), label="waiting")
        before = self.team.state
        assert before is not None
        self.send(WithdrawLead(team_id=TEAM, lead_id=entry.lead_id, route_id=entry.route_id,
                               reason="release_to_pool", at=self.now))
        after = self.team.state
        assert after is not None
        held = _holder(after, self.team.queue.holdings, entry.lead_id, entry.route_id)
        if held is None:
            # Out of the queue at once, and counted out: never assigned here afterwards.
            assert not self.team.queue.contains(entry.route_id)
            assert after.queue_depth == before.queue_depth - 1
            self.released.add(entry.route_id)

    @precondition(lambda self: self.routes)
    @rule(data=st.data())
    def withdraw_any(self, data: st.DataObject) -> None:
        # A withdrawal of any known route: held (nothing changes), replayed or never queued.
        route = data.draw(st.sampled_from(self.routes), label="route")
        before = self.team.state
        holdings = dict(self.team.queue.holdings)
        self.send(WithdrawLead(team_id=TEAM, lead_id=route.lead_id, route_id=route.route_id,
                               reason="overflow", at=self.now))
        assert self.team.queue.holdings == holdings  # a withdrawal never takes a lead from a rep
        if before is not None and _holder(before, holdings, route.lead_id, route.route_id) is None:
            self.released.add(route.route_id)

    # --- roster ----------------------------------------------------------------------

    @rule(rep_id=st.sampled_from(REP_IDS), status=presences)
    def set_presence(self, rep_id: str, status: str) -> None:
        # Unknown reps included: presence for a rep the team does not have changes nothing.
        self.send(SetPresence(team_id=TEAM, rep_id=rep_id, status=status, at=self.now))  # type: ignore[arg-type]

    @rule(rep_id=st.sampled_from(REP_IDS), capacity=capacities, weight=weights, daily=caps, weekly=caps,
          skills=skill_sets)
    def upsert_rep(self, rep_id: str, capacity: int, weight: int, daily: int | None, weekly: int | None,
                   skills: tuple[str, ...]) -> None:
        # Capacity and caps move up and down, sometimes below what the rep holds; new reps join.
        self.send(UpsertRep(team_id=TEAM, at=self.now, profile=_profile(rep_id, capacity, weight, daily, weekly,
                                                                        skills)))

    # --- time ------------------------------------------------------------------------

    @rule(hours=st.integers(min_value=1, max_value=30))
    def time_passes(self, hours: int) -> None:
        # Hours open and close, days and weeks turn (caps reset). The next command sees it.
        self.now += timedelta(hours=hours)

    # --- invariants after every step -------------------------------------------------

    @invariant()
    def queue_bounds(self) -> None:
        state = self.team.state
        if state is None:
            return
        assert all(0 <= lane.head <= lane.tail for lane in state.lanes)
        assert all(any(lane.head <= seq < lane.tail for lane in state.lanes) for seq in self.team.queue.entries)

    @invariant()
    def counts_match_the_holdings(self) -> None:
        # The state counts what the side table holds, rep by rep; nobody holds for a rep it lost.
        state = self.team.state
        if state is None:
            return
        per_rep = Counter(h.rep_id for h in self.team.queue.holdings.values())
        assert {r: n for r, n in per_rep.items()} == {r: rep.load for r, rep in state.reps.items() if rep.load}
        assert all(h.lead_id == route_id.split(":")[0] for route_id, h in self.team.queue.holdings.items())

    @invariant()
    def depth_counts_the_waiting(self) -> None:
        state = self.team.state
        if state is None:
            return
        assert state.queue_depth == len(self.team.queue.entries), (state, self.team.queue.entries)

    def teardown(self) -> None:
        # Every routable lead is eventually assigned when capacity exists: make room everywhere
        # (no caps, plenty of capacity, all skills, everyone available), then let a week go by.
        state = self.team.state
        if state is None:
            return
        for rep_id in state.reps:
            self.send(UpsertRep(team_id=TEAM, at=self.now, profile=_profile(rep_id, 1000, 1, None, None, SKILLS)))
            self.send(SetPresence(team_id=TEAM, rep_id=rep_id, status="available", at=self.now))
        some_rep = next(iter(state.reps))
        for _ in range(7 * 24):
            self.now += timedelta(hours=1)
            self.send(SetPresence(team_id=TEAM, rep_id=some_rep, status="available", at=self.now))
        final = self.team.state
        assert final is not None
        held = set(self.team.queue.holdings)
        for entry in self.team.queue.entries.values():
            if entry.route_id in held or entry.route_id in self.released:
                continue
            assert set(entry.excluded_reps) >= set(final.reps), f"routable {entry.route_id} never assigned"

    @invariant()
    def no_lead_lost(self) -> None:
        # Every route not yet released is held by a rep or waiting in the queue.
        state = self.team.state
        if state is None:
            return
        held = set(self.team.queue.holdings)
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

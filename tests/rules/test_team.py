"""The team state machine, command by command: roster, capacity, the queue and its drain."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rules import team
from rules.commands import (
    DrainQueue,
    KeepAssignment,
    LeadAssigned,
    LeadQueued,
    ReleaseLead,
    RemoveRep,
    RepProfile,
    RouteLead,
    SetPresence,
    UpsertRep,
    WithdrawLead,
)
from rules.roster import Holding, RepState
from rules.team import QueueWrite, TeamState, lane_base, new_team
from streams.codec import decode, encode
from tests.rules._sim import T0, QueueTable, TeamDriver

TEAM = "t"


def profile(rep_id: str, *, capacity: int = 1, weight: int = 1, secret: str | None = "whsec_1") -> RepProfile:
    return RepProfile(rep_id=rep_id, team_id=TEAM, name=rep_id.upper(), capacity=capacity, weight=weight,
                      webhook_url=f"https://hooks.test/{rep_id}", webhook_secret=secret)


def upsert(rep_id: str, **kw: object) -> UpsertRep:
    return UpsertRep(team_id=TEAM, profile=profile(rep_id, **kw), at=T0)  # type: ignore[arg-type]


def route(n: int, *, excluded: tuple[str, ...] = (), priority: int = 2) -> RouteLead:
    return RouteLead(team_id=TEAM, lead_id=f"l{n}", route_id=f"l{n}:1:1", requested_at=T0, excluded_reps=excluded,
                     priority=priority)


def release(n: int, rep_id: str) -> ReleaseLead:
    return ReleaseLead(team_id=TEAM, lead_id=f"l{n}", route_id=f"l{n}:1:1", rep_id=rep_id, reason="done", at=T0)


def presence(rep_id: str, status: str) -> SetPresence:
    return SetPresence(team_id=TEAM, rep_id=rep_id, status=status, at=T0)  # type: ignore[arg-type]


class Team(TeamDriver):
    """A driver whose clock ticks a second per command, returning the outgoing values."""

    def __init__(self, *commands: object) -> None:
        super().__init__()
        self.ticks = 0
        for command in commands:
            self(command)

    def __call__(self, command: object) -> list[object]:
        self.ticks += 1
        return [m.value for m in self.send(command, T0 + timedelta(seconds=self.ticks)).outgoing]  # type: ignore[arg-type]

    def holder(self, n: int) -> str:
        """Who holds lead ``n`` (of ``route(n)``); it must be held."""
        rep_id = self.holder_of(f"l{n}", f"l{n}:1:1")
        assert rep_id is not None, f"l{n} is not held"
        return rep_id

    @property
    def s(self) -> TeamState:
        assert self.state is not None
        return self.state


def test_new_team_is_empty() -> None:
    state = new_team("t")
    assert (state.reps, state.lanes, state.queue_depth) == ({}, (), 0)


def test_new_rep_starts_available_and_takes_leads() -> None:
    t = Team(upsert("a"))
    assert t.s.reps["a"].presence == "available"
    (assigned,) = t(route(1))
    assert isinstance(assigned, LeadAssigned)
    assert (assigned.rep_id, assigned.rep_name, assigned.webhook_url, assigned.webhook_secret) == (
        "a", "A", "https://hooks.test/a", "whsec_1")
    assert assigned.decision.winner == "a" and t.s.routed_total == 1


def test_upsert_keeps_presence_load_and_secret() -> None:
    t = Team(upsert("a", capacity=3), route(1), presence("a", "busy"))
    t(upsert("a", capacity=4, weight=3, secret=None))
    rep = t.s.reps["a"]
    assert (rep.presence, rep.load, rep.profile.capacity, rep.profile.weight) == ("busy", 1, 4, 3)
    assert rep.profile.webhook_secret == "whsec_1"  # an update without a secret keeps the old one
    t(upsert("a", secret="whsec_2"))
    assert t.s.reps["a"].profile.webhook_secret == "whsec_2"


def test_lowering_capacity_never_evicts_and_blocks_until_below() -> None:
    t = Team(upsert("a", capacity=3), route(1), route(2), route(3))
    assert t.s.reps["a"].load == 3
    t(upsert("a", capacity=1))
    assert t.s.reps["a"].load == 3  # nothing evicted
    assert isinstance(t(route(4))[0], LeadQueued)
    assert t(release(1, "a")) == []  # 2/1: still over
    assert t(release(2, "a")) == []  # 1/1: at capacity
    (assigned,) = t(release(3, "a"))  # 0/1: the waiting lead goes
    assert isinstance(assigned, LeadAssigned) and assigned.lead_id == "l4"
    assert t.s.reps["a"].load == 1


def test_raising_capacity_drains_the_queue() -> None:
    t = Team(upsert("a"), route(1), route(2), route(3))
    assert t.s.queue_depth == 2
    out = t(upsert("a", capacity=3))
    assert [(type(v), v.lead_id) for v in out] == [(LeadAssigned, "l2"), (LeadAssigned, "l3")]  # type: ignore[attr-defined]
    assert t.s.queue_depth == 0 and t.queue.entries == {}


@pytest.mark.parametrize("status", ["busy", "offline"])
def test_presence_gates_assignment_and_coming_back_drains(status: str) -> None:
    t = Team(upsert("a"), presence("a", status))
    (queued,) = t(route(1))
    assert isinstance(queued, LeadQueued)
    assert queued.decision.winner is None
    assert queued.decision.candidates[0].reasons == (f"presence is {status}",)
    (assigned,) = t(presence("a", "available"))
    assert isinstance(assigned, LeadAssigned) and assigned.lead_id == "l1"


def test_presence_for_an_unknown_rep_changes_nothing() -> None:
    t = Team(upsert("a"))
    before = t.s
    assert t(presence("ghost", "available")) == []
    assert t.s == before


def test_queue_entries_live_outside_the_state() -> None:
    queue = QueueTable()
    first = team.apply(None, route(1), T0, queue)
    base = team.lane_base(route(1).priority)  # the default priority's lane
    assert first.state.lane(route(1).priority).tail == base + 1
    assert first.queue_writes == (QueueWrite(seq=base, entry=route(1)),)
    (queued,) = [m.value for m in first.outgoing]
    assert isinstance(queued, LeadQueued) and queued.depth == 1
    assert queued.decision.reason == "the team has no reps"
    queue.write(first.queue_writes)
    second = team.apply(first.state, route(2), T0, queue)
    (queued,) = [m.value for m in second.outgoing]
    assert queued.depth == 2 and queued.decision.reason.endswith("; 1 lead(s) to be served first")
    queue.write(second.queue_writes)
    third = team.apply(second.state, upsert("a", capacity=5), T0, queue)
    assert third.queue_writes == (QueueWrite(seq=base, entry=None), QueueWrite(seq=base + 1, entry=None))
    lane = third.state.lane(route(1).priority)
    assert (lane.head, lane.tail) == (base + 2, base + 2)


def test_new_lead_never_jumps_the_queue() -> None:
    t = Team(upsert("a"), upsert("b"), route(1), route(2), route(3))
    assert t.s.queue_depth == 1
    out = t(route(4))
    assert [type(v) for v in out] == [LeadQueued]
    (assigned,) = t(release(1, t.holder(1)))
    assert isinstance(assigned, LeadAssigned) and assigned.lead_id == "l3"


@pytest.mark.parametrize(
    "stale",
    [release(1, "b"), release(9, "a"), ReleaseLead(team_id=TEAM, lead_id="l1", route_id="l1:2:1", rep_id="a",
                                                   reason="x", at=T0)],
    ids=["wrong rep", "unknown lead", "other route"],
)
def test_stale_release_frees_nothing(stale: ReleaseLead) -> None:
    t = Team(upsert("a"), upsert("b", capacity=0), route(1), route(2))
    before = t.s
    assert t(stale) == []
    assert t.s == before


def test_replayed_release_frees_once() -> None:
    t = Team(upsert("a", capacity=2), route(1), route(2), route(3))
    (assigned,) = t(release(1, "a"))
    assert isinstance(assigned, LeadAssigned) and assigned.lead_id == "l3"
    before = t.s
    assert t(release(1, "a")) == []
    assert t.s == before and t.s.reps["a"].load == 2


def test_replayed_route_of_a_held_lead_repeats_the_answer() -> None:
    t = Team(upsert("a"), upsert("b"), route(1))
    holder = t.holder(1)
    before = t.s
    (again,) = t(route(1))
    assert isinstance(again, LeadAssigned) and again.rep_id == holder
    assert again.decision.strategy == "replay"
    assert t.s == before


def test_replayed_route_of_a_waiting_lead_is_assigned_once() -> None:
    t = Team(upsert("a"), route(1), route(2))
    assert t.s.queue_depth == 1
    (again,) = t(route(2))  # one queue entry per route: the replay adds none, only answers again
    assert isinstance(again, LeadQueued) and again.route_id == "l2:1:1"
    assert t.s.queue_depth == 1
    (assigned,) = t(release(1, "a"))
    assert isinstance(assigned, LeadAssigned) and assigned.lead_id == "l2"
    assert t.s.queue_depth == 0
    t(route(3))
    assert t(release(2, "a"))[0].lead_id == "l3"  # type: ignore[attr-defined]


def test_replayed_route_after_release_is_ignored() -> None:
    t = Team(upsert("a"), upsert("b"), route(1))
    t(release(1, t.holder(1)))
    before = t.s
    assert t(route(1)) == []
    assert t.s == before


def test_released_routes_are_remembered_within_a_bound() -> None:
    t = Team(upsert("a"))
    for n in range(300):
        t(route(n))
        t(release(n, "a"))
    assert len(t.s.released_routes) == 256
    assert t.s.released_routes[-1] == "l299:1:1"


def keep(n: int, rep_id: str) -> KeepAssignment:
    return KeepAssignment(team_id=TEAM, lead_id=f"l{n}", route_id=f"l{n}:1:1", rep_id=rep_id,
                          assigned_at=T0, at=T0)


def loads(t: Team) -> dict[str, int]:
    return {rep_id: rep.load for rep_id, rep in t.s.reps.items()}


def test_a_kept_assignment_moves_the_route_to_the_rep_the_lead_kept() -> None:
    # After a crash the team decided l1 again and chose b; the lead had been told a, and keeps a.
    t = Team(upsert("a"), upsert("b"), presence("a", "away"), route(1))
    assert t.holder(1) == "b"
    t(presence("a", "available"))
    routed = t.s.routed_total
    assert t(keep(1, "a")) == []
    assert t.holder(1) == "a" and loads(t) == {"a": 1, "b": 0}
    assert t.s.reps["a"].assigned_total == 1 and t.s.routed_total == routed
    # b never got the lead: it leaves b's daily and weekly counts too.
    assert (t.s.reps["b"].day_count, t.s.reps["b"].week_count) == (0, 0)
    # The lead's later release finds a's holding; then the route is over.
    t(release(1, "a"))
    assert loads(t) == {"a": 0, "b": 0} and t.holder_of("l1", "l1:1:1") is None


def test_a_kept_assignment_takes_the_route_out_of_the_queue_and_counts_above_capacity() -> None:
    # The re-decision queued l2 (a is full meanwhile); the lead holds it with a, so a holds two.
    t = Team(upsert("a"), route(1), route(2))
    assert t.s.queue_depth == 1
    assert t(keep(2, "a")) == []
    assert t.s.queue_depth == 0 and t.queue.entries == {}
    assert t.holder(2) == "a" and loads(t) == {"a": 2}
    assert t.s.reps["a"].day_count == 2 and t.s.routed_total == 2
    # Neither route is assigned twice: releasing one leaves a at capacity, with nobody waiting.
    assert t(release(1, "a")) == [] and loads(t) == {"a": 1}


def test_a_kept_assignment_repeated_or_late_changes_nothing() -> None:
    t = Team(upsert("a"), upsert("b"), route(1))
    holder = t.holder(1)
    before = t.s
    assert decode(encode(keep(1, holder))) == keep(1, holder)  # it travels on team.commands
    assert t(keep(1, holder)) == [] and t.s == before  # what the team decided already
    t(release(1, holder))
    before = t.s
    assert t(keep(1, "b" if holder == "a" else "a")) == [] and t.s == before  # the route is over


def test_a_kept_assignment_for_a_rep_who_left_frees_the_other_and_holds_nothing() -> None:
    t = Team(upsert("a"), upsert("b"), presence("a", "away"), route(1), RemoveRep(team_id=TEAM, rep_id="a",
                                                                                    reason="moved", at=T0))
    assert t(keep(1, "a")) == []
    assert loads(t) == {"b": 0} and t.holder_of("l1", "l1:1:1") is None


def test_a_late_lead_counts_in_its_own_day_and_never_rewinds_a_later_one() -> None:
    rep = RepState(profile=profile("a", capacity=9), presence="available")
    today = rep.with_lead(T0).with_lead(T0)
    assert (today.day_count, today.last_assigned_at) == (2, T0)
    same_day = today.with_late_lead(T0 - timedelta(hours=1))
    assert (same_day.load, same_day.day_count, same_day.last_assigned_at) == (3, 3, T0)
    yesterday = today.with_late_lead(T0 - timedelta(days=1))
    assert (yesterday.load, yesterday.day, yesterday.day_count) == (3, today.day, 2)
    tomorrow = today.with_late_lead(T0 + timedelta(days=1))
    assert (tomorrow.day_count, tomorrow.last_assigned_at) == (1, T0 + timedelta(days=1))
    assert tomorrow.day > today.day


def test_excluded_rep_is_skipped() -> None:
    t = Team(upsert("a"), upsert("b"))
    (assigned,) = t(route(1, excluded=("a",)))
    assert isinstance(assigned, LeadAssigned) and assigned.rep_id == "b"
    (second,) = t(route(2, excluded=("a",)))  # only a is free, but a is excluded: wait
    assert isinstance(second, LeadQueued)
    assert [c.reasons for c in second.decision.candidates] == [("excluded for this lead",),
                                                               ("at capacity (1/1 open)",)]


def test_remove_rep_takes_them_out_of_routing() -> None:
    t = Team(upsert("a", capacity=5), upsert("b", capacity=5))
    t(RemoveRep(team_id=TEAM, rep_id="a", reason="moved", at=T0))
    assert set(t.s.reps) == {"b"}
    for n in range(2, 6):
        assert t(route(n))[0].rep_id == "b"  # type: ignore[attr-defined]


def test_a_rep_who_moves_away_holding_leads_stays_until_they_are_released() -> None:
    t = Team(upsert("a", capacity=5), upsert("b", capacity=5), route(1))
    assert t.holder(1) == "a"
    t(RemoveRep(team_id=TEAM, rep_id="a", reason="moved to team amer", at=T0))
    assert t.s.reps["a"].departed and t.s.reps["a"].load == 1
    (assigned,) = t(route(2))
    assert assigned.rep_id == "b"  # type: ignore[attr-defined]
    assert ("moved to another team",) in [c.reasons for c in assigned.decision.candidates]  # type: ignore[attr-defined]
    t(release(1, "a"))  # the lead a took along is closed: a is gone for good
    assert set(t.s.reps) == {"b"}


def test_a_departed_rep_who_comes_back_is_a_member_again() -> None:
    t = Team(upsert("a", capacity=5), route(1), RemoveRep(team_id=TEAM, rep_id="a", reason="moved", at=T0))
    t(upsert("a", capacity=5))
    assert not t.s.reps["a"].departed and t.s.reps["a"].load == 1
    assert t(route(2))[0].rep_id == "a"  # type: ignore[attr-defined]


def test_a_lead_behind_an_unassignable_head_is_still_assigned() -> None:
    t = Team(upsert("a"), upsert("b"), route(1), route(2))
    assert {t.holder(1), t.holder(2)} == {"a", "b"}
    holder = t.holder(1)
    t(route(3, excluded=(holder,)))  # waits; only the holder of l1 will free up next
    t(route(4))
    out = t(release(1, holder))
    assert [v.lead_id for v in out] == ["l4"]  # type: ignore[attr-defined]


def test_fifo_holds_among_the_assignable_behind_a_blocked_head() -> None:
    t = Team(upsert("a"), upsert("b"), route(1), route(2))
    holder = t.holder(1)
    t(route(3, excluded=(holder,)))
    t(route(4))
    t(route(5))
    assert t.s.queue_depth == 3
    (assigned,) = t(release(1, holder))
    assert assigned.lead_id == "l4"  # type: ignore[attr-defined]
    # l4 was taken from behind the head: a hole, not counted as waiting.
    lane = t.s.lane(2)
    assert (t.s.queue_depth, lane.holes) == (2, 1)
    other = "b" if holder == "a" else "a"
    (assigned,) = t(release(2, other))
    assert assigned.lead_id == "l3"  # type: ignore[attr-defined]
    # The head moved over l3 and the hole behind it; l5 waits at the head.
    lane = t.s.lane(2)
    assert (lane.head - lane_base(2), lane.holes, t.s.queue_depth) == (2, 0, 1)
    assert set(t.queue.entries) == {lane_base(2) + 2}


def test_a_new_lead_is_assigned_past_a_blocked_queue_without_waiting() -> None:
    t = Team(upsert("a"), upsert("b"), route(1))
    holder = t.holder(1)
    other = "b" if holder == "a" else "a"
    (queued,) = t(route(2, excluded=(other,)))  # only the holder may take it; they are full
    assert isinstance(queued, LeadQueued)
    (assigned,) = t(route(3))  # one answer, no LeadQueued first
    assert isinstance(assigned, LeadAssigned) and assigned.rep_id == other
    assert t.s.queue_depth == 1


@pytest.mark.parametrize(("blocked", "assigned"), [(team.LOOKAHEAD - 1, True), (team.LOOKAHEAD, False)])
def test_the_look_ahead_is_bounded(blocked: int, assigned: bool) -> None:
    t = Team(upsert("a", capacity=1), upsert("b", capacity=0))
    t(presence("a", "busy"))
    for n in range(blocked):
        t(route(n, excluded=("a",)))  # only b could, and b has no capacity
    t(route(999))
    assert t.s.queue_depth == blocked + 1
    out = t(presence("a", "available"))
    assert [v.lead_id for v in out] == (["l999"] if assigned else [])  # type: ignore[attr-defined]


def test_the_expected_wait_follows_the_recent_drain_rate() -> None:
    assert TeamState(team_id="t").expected_wait_s(3, T0) is None  # no data: no estimate
    stamps = tuple(T0 + timedelta(seconds=10 * i) for i in range(5))  # one assignment every 10 s
    busy = TeamState(team_id="t", recent_assignments=stamps)
    assert busy.expected_wait_s(3, T0 + timedelta(seconds=50)) == 3 * 50 / 5
    # Slowing down: the time since the latest assignment is one more gap (here 60 s, not 10 s).
    assert busy.expected_wait_s(1, T0 + timedelta(seconds=100)) == 100 / 5


def test_the_expected_wait_leaves_out_the_night_and_the_weekend() -> None:
    madrid = ZoneInfo("Europe/Madrid")
    friday = datetime(2026, 1, 9, 9, tzinfo=madrid)
    stamps = tuple(friday + timedelta(minutes=10 * i) for i in range(50))  # 09:00 to 17:10, 10 min apart
    state = TeamState(team_id="t", recent_assignments=stamps)
    monday = datetime(2026, 1, 12, 9, 1, tzinfo=madrid)
    assert state.expected_wait_s(1, monday) == pytest.approx(600)  # not 5,185 s: the weekend is no pace
    assert state.expected_wait_s(3, monday) == pytest.approx(1800)
    # The same pace on Friday, 10 min after the last assignment: the answer it always gave.
    assert state.expected_wait_s(1, stamps[-1] + timedelta(minutes=10)) == pytest.approx(600)
    # A night inside the window is left out too; a lunch break under an hour is pace.
    nights = (*stamps[:25], *(s + timedelta(hours=14) for s in stamps[25:]))
    assert TeamState(team_id="t", recent_assignments=nights).expected_wait_s(1, monday + timedelta(days=5)) == 600
    lunch = (*stamps[:25], *(s + timedelta(minutes=50) for s in stamps[25:]))  # one gap of 60 min
    wait = TeamState(team_id="t", recent_assignments=lunch).expected_wait_s(1, lunch[-1] + timedelta(minutes=10))
    assert wait == pytest.approx((48 * 600 + 3600 + 600) / 50)


def test_the_expected_wait_without_a_gap_short_enough_is_unknown() -> None:
    hourly = tuple(T0 + timedelta(hours=2 * i) for i in range(5))  # a quiet team: no pace to go by
    assert TeamState(team_id="t", recent_assignments=hourly).expected_wait_s(1, T0 + timedelta(hours=11)) is None
    unordered = (T0 + timedelta(seconds=20), T0, T0 + timedelta(seconds=10))  # stamps that went back
    assert TeamState(team_id="t", recent_assignments=unordered).expected_wait_s(1, T0 + timedelta(seconds=30)) == 10


def withdraw(n: int) -> WithdrawLead:
    return WithdrawLead(team_id=TEAM, lead_id=f"l{n}", route_id=f"l{n}:1:1", reason="overflow", at=T0)


def test_the_queue_serves_priority_first_then_age() -> None:
    t = Team(upsert("a"), route(1))  # a is now full
    t(route(2, priority=2))
    t(route(3, priority=1))
    t(route(4, priority=0))
    t(route(5, priority=1))
    assert t.s.queue_depth == 4 and [lane.priority for lane in t.s.lanes] == [0, 1, 2]
    served = []
    for n in (1, 4, 3, 5):
        (assigned,) = t(release(n, "a"))
        served.append(assigned.lead_id)  # type: ignore[attr-defined]
    assert served == ["l4", "l3", "l5", "l2"]
    assert t.s.queue_depth == 0 and t.queue.entries == {}


def test_a_queued_lead_learns_how_many_are_served_before_it() -> None:
    t = Team(upsert("a"), route(1), route(2, priority=2), route(3, priority=2))
    (queued,) = t(route(4, priority=0))
    assert isinstance(queued, LeadQueued)
    assert queued.depth == 3 and "to be served first" not in queued.decision.reason
    assert queued.decision.reason.endswith("queue priority 0")
    (queued,) = t(route(5, priority=9))
    assert queued.decision.reason.endswith("3 lead(s) to be served first; queue priority 9")


def test_priorities_out_of_range_are_clamped() -> None:
    t = Team(upsert("a"), route(1), route(2, priority=-5), route(3, priority=99))
    assert [lane.priority for lane in t.s.lanes] == [0, team.MAX_PRIORITY]


def test_a_high_priority_lead_is_assigned_past_a_long_low_priority_queue() -> None:
    # Many low-priority leads only "a" may take (and a is full): a new top-priority lead for "b"
    # must not wait behind them, the low lane is never looked at first.
    t = Team(upsert("a"), upsert("b", capacity=0), route(1, excluded=("b",)))
    for n in range(2, 2 + team.LOOKAHEAD + 5):
        t(route(n, excluded=("b",), priority=5))
    t(upsert("b", capacity=1))
    (assigned,) = t(route(999, priority=0))
    assert isinstance(assigned, LeadAssigned) and assigned.rep_id == "b"


def test_a_withdrawn_lead_leaves_the_queue_and_is_never_assigned_here() -> None:
    t = Team(upsert("a"), route(1), route(2), route(3))
    assert t.s.queue_depth == 2
    assert t(withdraw(2)) == []
    assert t.s.queue_depth == 1 and [e.lead_id for e in t.queue.entries.values()] == ["l3"]
    (assigned,) = t(release(1, "a"))
    assert assigned.lead_id == "l3"  # type: ignore[attr-defined]
    assert t(route(2)) == []  # a late replay of the withdrawn route is ignored
    assert t.s.queue_depth == 0


def test_withdrawing_an_assigned_lead_changes_nothing() -> None:
    t = Team(upsert("a"), route(1))
    before = t.s
    assert t(withdraw(1)) == [] and t.s == before  # the lead gives the assignment back itself


def test_a_queue_recheck_assigns_what_time_alone_made_assignable() -> None:
    # Nobody works before 09:00: a lead at 08:00 waits; the periodic recheck serves it once hours open.
    early = UpsertRep(team_id=TEAM, at=T0, profile=replace(profile("a"), working_hours={"mon-fri": ("09:00-17:00",)}))
    t = TeamDriver()
    t.send(early, T0 - timedelta(hours=2))
    (queued,) = [m.value for m in t.send(route(1), T0 - timedelta(hours=1)).outgoing]
    assert isinstance(queued, LeadQueued) and "outside working hours" in str(queued.decision.candidates[0].reasons)
    assert t.send(DrainQueue(team_id=TEAM, at=T0), T0 - timedelta(minutes=30)).outgoing == ()
    (assigned,) = [m.value for m in t.send(DrainQueue(team_id=TEAM, at=T0), T0 + timedelta(minutes=1)).outgoing]
    assert isinstance(assigned, LeadAssigned) and assigned.rep_id == "a"
    assert t.state is not None and t.state.queue_depth == 0


# --- holdings: who holds which lead lives beside the state, not in it ----------------------


def test_the_state_counts_open_leads_and_the_side_table_holds_them() -> None:
    t = Team(upsert("a", capacity=500))
    small = encode(t.s)
    for n in range(200):
        t(route(n))
    assert t.s.reps["a"].load == 200 and len(t.queue.holdings) == 200
    assert t.queue.holdings["l7:1:1"] == Holding(rep_id="a", lead_id="l7", assigned_at=T0 + timedelta(seconds=9))
    raw = encode(t.s)
    assert b"l7:1:1" not in raw  # no lead of the team is in its state ...
    assert len(raw) - len(small) < 50 * 40  # ... which grew by the bounded recent-assignment stamps only
    for n in range(200, 400):
        t(route(n))
    assert len(encode(t.s)) - len(raw) < 16  # twice the open leads, the same size (counters' digits)


def test_a_release_is_found_through_the_side_table_alone() -> None:
    queue = QueueTable()
    assigned = team.apply(team.apply(None, upsert("a"), T0, queue).state, route(1), T0, queue)
    assert assigned.holding_writes == (
        team.HoldingWrite(route_id="l1:1:1", holding=Holding(rep_id="a", lead_id="l1", assigned_at=T0)),)
    queue.write(assigned.queue_writes, assigned.holding_writes)
    # The state after the assignment, as a restarted worker reads it back from its changelog.
    state = decode(encode(assigned.state))
    assert state.reps["a"].load == 1
    released = team.apply(state, release(1, "a"), T0, queue)
    assert released.holding_writes == (team.HoldingWrite(route_id="l1:1:1", holding=None),)
    assert released.state.reps["a"].load == 0 and "l1:1:1" in released.state.released_routes
    # Without the holding (the side table lost it) the same release frees nothing: the side
    # table, not the state, is what says who holds the lead.
    lost = team.apply(state, release(1, "a"), T0, QueueTable())
    assert lost.state == state and lost.holding_writes == ()


def test_a_replayed_route_after_a_restart_answers_the_holding_in_the_table() -> None:
    t = Team(upsert("a"), upsert("b"), route(1))
    holder = t.holder(1)
    # A restart: the state and the holdings come back from their changelogs' bytes.
    restarted = TeamDriver()
    restarted.state = decode(encode(t.s))
    restarted.queue.holdings = {r: decode(encode(h)) for r, h in t.queue.holdings.items()}
    again = restarted.send(route(1), T0 + timedelta(minutes=5))
    (answer,) = [m.value for m in again.outgoing]
    assert isinstance(answer, LeadAssigned) and answer.rep_id == holder and answer.decision.strategy == "replay"
    assert again.state == restarted.state and again.holding_writes == () and again.queue_writes == ()
    # The same replay against a table without the holding would choose again: the test can fail.
    fresh = TeamDriver()
    fresh.state = decode(encode(t.s))
    (other,) = [m.value for m in fresh.send(route(1), T0 + timedelta(minutes=5)).outgoing]
    assert isinstance(other, LeadAssigned) and other.decision.strategy != "replay"


def test_a_release_naming_another_rep_keeps_the_holding() -> None:
    t = Team(upsert("a"), upsert("b"), route(1))
    holder = t.holder(1)
    other = "b" if holder == "a" else "a"
    held = dict(t.queue.holdings)
    assert t(release(1, other)) == []
    assert t.queue.holdings == held and t.s.reps[holder].load == 1


def test_a_departed_rep_stays_until_the_side_table_says_their_last_lead_is_released() -> None:
    t = Team(upsert("a", capacity=5), route(1), route(2), RemoveRep(team_id=TEAM, rep_id="a", reason="moved", at=T0))
    assert t.s.reps["a"].departed and t.s.reps["a"].load == 2
    t(release(1, "a"))
    assert "a" in t.s.reps and t.queue.held_by("a") == {("l2", "l2:1:1")}
    t(release(2, "a"))
    assert "a" not in t.s.reps and t.queue.holdings == {}


def test_a_drained_lead_gets_its_holding_in_the_same_transition() -> None:
    t = Team(upsert("a"), route(1), route(2))
    transition = t.send(release(1, "a"), T0 + timedelta(hours=1))
    assert [(w.route_id, w.holding is not None and w.holding.rep_id) for w in transition.holding_writes] == [
        ("l1:1:1", False), ("l2:1:1", "a")]
    assert set(t.queue.holdings) == {"l2:1:1"}


def test_a_lead_no_rep_may_take_has_no_wait_estimate_and_does_not_hold_others_up() -> None:
    # Two reps, each full; the team has a pace (two assignments ten seconds apart).
    t = Team(upsert("a"), upsert("b"), route(1))
    t.ticks += 9
    t(route(2))
    assert t.s.reps["a"].load == t.s.reps["b"].load == 1 and len(t.s.recent_assignments) == 2
    (hopeless,) = t(route(3, excluded=("a", "b")))  # both declined it or let it lapse
    assert isinstance(hopeless, LeadQueued)
    assert hopeless.expected_wait_s is None
    assert hopeless.decision.reason.endswith("no rep of the team may take this lead: no wait estimate")
    (waiting,) = t(route(4))
    assert isinstance(waiting, LeadQueued) and waiting.depth == 2
    # l3 is not ahead of l4 (nobody will ever serve it): l4 is next, its estimate is one slot's wait.
    assert "to be served first" not in waiting.decision.reason
    assert "(1 waiting that no rep may take not counted)" in waiting.decision.reason
    assert waiting.expected_wait_s == t.s.expected_wait_s(1, T0 + timedelta(seconds=t.ticks))
    (behind,) = t(route(5))
    assert isinstance(behind, LeadQueued) and "; 1 lead(s) to be served first" in behind.decision.reason
    # The estimate is the team's pace, nothing more: l4 is indeed served first when a slot frees.
    (assigned,) = t(release(1, t.holder(1)))
    assert isinstance(assigned, LeadAssigned) and assigned.lead_id == "l4"


def returned(n: int, rep_id: str) -> ReleaseLead:
    """The release of an offer ``rep_id`` declined, let lapse or never received."""
    return replace(release(n, rep_id), reason=f"declined by {rep_id}", returned=True)


def test_a_declined_offer_leaves_the_reps_daily_cap_and_a_worked_lead_stays_in_it() -> None:
    capped = Team(UpsertRep(team_id=TEAM, profile=replace(profile("a", capacity=5), daily_cap=1), at=T0), route(1))
    assert capped.holder(1) == "a" and capped.s.reps["a"].day_count == 1
    (queued,) = capped(route(2))
    assert isinstance(queued, LeadQueued)
    assert queued.decision.candidates[0].reasons == ("daily cap reached (1/1 today)",)
    (assigned,) = capped(returned(1, "a"))  # a declined l1: their cap is free again, l2 waits no more
    assert isinstance(assigned, LeadAssigned) and (assigned.lead_id, assigned.rep_id) == ("l2", "a")
    assert capped.s.reps["a"].day_count == 1 and capped.s.reps["a"].load == 1
    # A lead a worked and released stays counted: the cap holds.
    assert capped(release(2, "a")) == [] and capped.s.reps["a"].day_count == 1
    assert isinstance(capped(route(3))[0], LeadQueued)
    # The same returned release again (a replay) finds no holding and gives nothing back twice.
    assert capped(returned(1, "a")) == [] and capped.s.reps["a"].day_count == 1
    assert decode(encode(returned(1, "a"))) == returned(1, "a")  # it travels on team.commands


def test_a_rep_whose_stored_hours_cannot_be_read_is_skipped_and_the_team_routes_on() -> None:
    bad = replace(profile("b", capacity=5), working_hours={"mon-fri": ["09:00-17:00"], "fri": ["16:00-18:00"]})
    t = Team(UpsertRep(team_id=TEAM, profile=bad, at=T0), upsert("a", capacity=5))
    (assigned,) = t(route(1))  # it raised for every routing decision of the team
    assert isinstance(assigned, LeadAssigned) and assigned.rep_id == "a"
    (why,) = [c.reasons for c in assigned.decision.candidates if c.rep_id == "b"]
    assert why[0].startswith("working hours cannot be read")


def test_a_rep_s_new_time_zone_keeps_today_s_caps_without_shutting_them_out() -> None:
    tokyo = replace(profile("a", capacity=10), timezone="Asia/Tokyo", daily_cap=3)
    t = Team(UpsertRep(team_id=TEAM, profile=tokyo, at=T0))
    t.ticks += 16 * 3600
    t(route(1))  # Tuesday 10:00 in Tokyo, Monday 17:00 in Los Angeles
    t(route(2))
    assert (t.s.reps["a"].day, t.s.reps["a"].day_count) == ("2026-01-06", 2)
    t(UpsertRep(team_id=TEAM, profile=replace(tokyo, timezone="America/Los_Angeles"), at=T0))
    # Today's two leads now count in Los Angeles's Monday; Tokyo's Tuesday is not "later" than it.
    assert (t.s.reps["a"].day, t.s.reps["a"].day_count) == ("2026-01-05", 2)
    t(route(3))
    assert t.holder(3) == "a" and t.s.reps["a"].day_count == 3
    assert isinstance(t(route(4))[0], LeadQueued)  # the cap still holds in the new zone


def test_the_wait_estimate_is_given_to_a_tenth_of_a_second() -> None:
    stamps = tuple(T0 + timedelta(seconds=10 * i + (i % 3) / 7) for i in range(5))
    wait = TeamState(team_id=TEAM, recent_assignments=stamps).expected_wait_s(3, stamps[-1])
    assert wait is not None and wait == round(wait, 1)  # the timeline showed 230.17149999999998

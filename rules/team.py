"""The team state machine: roster, capacity and the waiting queue, one writer per team.

``apply`` is pure: ``(TeamState | None, command, now, queue) -> TeamTransition``. The queue's
entries live outside the state (one small table value per waiting lead, keyed by sequence
number) so a long queue never makes every write re-serialize the whole team; the state keeps
only the head and tail sequence numbers, and ``queue`` reads entries by number.

The queue is a priority queue, tier then age: one FIFO *lane* per priority (``RouteLead.priority``,
0 served first), each lane a range of sequence numbers of its own. The drain serves the lanes in
priority order and each lane in FIFO order among the leads someone may take: a head entry nobody
can take now (every free rep excluded, lacking a skill, ...) is skipped, not waited on. The skip
looks at most ``LOOKAHEAD`` entries past a lane's head per transition, so a transition stays
bounded however long the queue; an entry taken from the middle leaves a hole the head later
steps over.

Who holds which lead lives outside the state too: each assignment is a ``Holding`` under its
route id (``QueueReader.holding``, written through ``TeamTransition.holding_writes``), and each
``RepState`` keeps only how many it holds. So a team's state is bounded by its roster, not by
its open leads, and one assignment or release writes one small value beside the state. The
holding is what makes routing idempotent: a replayed ``RouteLead`` finds it and answers the same
assignment again, and a ``ReleaseLead`` frees capacity only when it names the holding's rep.

A lead can also leave the queue without an assignment (``WithdrawLead``: it overflowed to
another team after waiting too long): its route is remembered as released, so an entry the team
could not delete at once is dropped, never assigned, when the drain reaches it.

The roster is bounded, because the whole state is one table value and one Kafka record: a team
takes at most ``MAX_REPS`` reps, and its encoded state at most ``STATE_BYTES_BUDGET`` bytes. An
``UpsertRep`` past either bound is refused: the roster stays as it was, and the refusal is kept in
``TeamState.refused_reps`` (the team view shows it) for the agent to log and count. An
``UpsertRep`` the rep directory numbered (``join``) is answered either way (``ReportJoin``, with
what the team holds of the rep after it): a rep moving in leaves their old team only once this one
has taken them in, and a new rep or a change shows as taken only once it is (``rules.reps``). The API checks
the same bounds first (``admission_problem``); the team is the last line, for the PUTs the API
could not judge (a team owned by another worker, two PUTs racing).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import orjson

from rules.commands import (
    DrainQueue,
    KeepAssignment,
    LeadAssigned,
    LeadQueued,
    Outgoing,
    ReleaseLead,
    RemoveRep,
    RepProfile,
    ReportHeld,
    ReportJoin,
    RouteLead,
    RoutingDecision,
    SetHeldElsewhere,
    SetPresence,
    TeamCommand,
    UpsertRep,
    WithdrawLead,
)
from rules.roster import Holding, RepState
from rules.eligibility import lead_reasons, rep_reasons
from rules.routing import DEFAULT_STRATEGY, STRATEGIES, Choice, choose_rep

__all__ = ["DRAIN_MAX", "LOOKAHEAD", "MAX_PACE_GAP", "MAX_PRIORITY", "MAX_REPS", "STATE_BYTES_BUDGET", "Lane", "RepRefusal", "TeamState",
           "HoldingReader", "QueueReader", "QueueWrite", "QueueSlot", "HoldingWrite", "TeamTransition", "apply",
           "holder_of", "new_team", "lane_base", "admission_problem", "new_refusal", "state_bytes"]

_RATE_WINDOW = 50
#: A gap between two assignments longer than this is not pace: the team was off (a night, a
#: weekend, a holiday) or had nothing to assign, and the wait estimate leaves it out.
MAX_PACE_GAP = timedelta(hours=1)
#: How many queue entries from a lane's head one drain may look at for a lead someone can take.
LOOKAHEAD = 50
#: The most leads one command assigns. A drain that reaches it sends its own team a ``DrainQueue``
#: to go on, so one command's side writes stay bounded (about 0.4 KB per lead: the queue entry and
#: its slot deleted, the holding written) however many reps free up at once, and so does the
#: batch's journal in the team's record (``streams/tables/team_record.py``, ``JOURNAL_BYTES``).
DRAIN_MAX = 100
#: Priorities are clamped into ``[0, MAX_PRIORITY]``; 0 is served first.
MAX_PRIORITY = 9
# Each priority lane owns the sequence numbers [priority * span, (priority + 1) * span).
_LANE_SPAN = 1 << 40


def lane_base(priority: int) -> int:
    """The first sequence number of a priority's lane."""
    return priority * _LANE_SPAN


@dataclass(frozen=True, slots=True, kw_only=True)
class Lane:
    """One priority's FIFO: entries at sequence numbers ``[head, tail)``, ``holes`` of them taken."""

    priority: int
    head: int
    tail: int
    holes: int = 0

    @property
    def depth(self) -> int:
        return self.tail - self.head - self.holes

    @property
    def span(self) -> int:
        """How many slots the drain would walk to see every entry (holes included)."""
        return self.tail - self.head

#: The most reps a team holds, departed reps who still hold leads here included. A usual profile
#: encodes to ~0.8 KB, so a full team of them takes ~0.4 MB, inside ``STATE_BYTES_BUDGET``.
MAX_REPS = 500
#: The most bytes a team's encoded state may take after a rep joins or changes. The state is
#: written whole as one changelog record (``streams/tables/team_record.py``: with the batch's side
#: writes beside it), and the producer refuses a record over 1,000,000 bytes (Faust's
#: ``producer_max_request_size``; the broker's ``message.max.bytes`` is 1,048,588): a team that grew
#: past it crashed the worker at every restart. 60% of it leaves the rest for what the state grows
#: by beside the roster (counters, released routes, refusals) and the batch's journal, bounded by
#: ``team_record.JOURNAL_BYTES`` and ``DRAIN_MAX`` (tests/agents/test_team_bounds.py adds it up).
STATE_BYTES_BUDGET = 600_000
# How many refused reps a team remembers (one entry per rep, newest last).
_REFUSALS_KEPT = 20

# How many released route ids a team remembers. A RouteLead redelivered after its assignment
# was released comes from the short at-least-once replay window, so a small bound suffices.
_RELEASED_MEMORY = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class RepRefusal:
    """An ``UpsertRep`` the team refused (full, or its state would grow too big), and why."""

    rep_id: str
    #: Counts and bounds only: never a name, address or other part of the profile.
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamState:
    """What the team agent needs to decide: reps (at most ``MAX_REPS``) and queue bounds."""

    team_id: str
    reps: dict[str, RepState] = field(default_factory=dict)
    #: The queue's priority lanes, in priority order (a lane stays once created: at most 10).
    lanes: tuple[Lane, ...] = ()
    routed_total: int = 0
    # Route ids whose assignment was released (newest last, bounded): a replayed RouteLead for
    # one of them must not assign the lead a second time, to this rep or another.
    released_routes: tuple[str, ...] = ()
    #: How reps are picked (``rules.routing.STRATEGIES``); set by config-born ``UpsertRep``.
    strategy: str = DEFAULT_STRATEGY
    # When the latest assignments happened (newest last, bounded): the team's drain rate, from
    # which a waiting lead's expected wait is estimated.
    recent_assignments: tuple[datetime, ...] = ()
    #: Reps the team refused to take in, newest last (bounded): each stays until the rep is taken
    #: in or removed, so the API's 202 for a PUT the team then refused is visible in the team view.
    refused_reps: tuple[RepRefusal, ...] = ()

    def expected_wait_s(self, position: int, now: datetime) -> float | None:
        """Seconds until the lead at ``position`` in the queue is likely assigned (None: no data).

        The pace is the mean gap between the recent assignments, the time since the latest one
        counted as one more gap (a team that has assigned nothing for a while is slowing down).
        A gap longer than ``MAX_PACE_GAP`` is left out: the team was off, and a night or a
        weekend is not the time a lead waits for the next free rep on a working morning. With a
        steady pace and no long gap this is ``position * (now - oldest) / len(stamps)``.
        """
        if len(self.recent_assignments) < 2:
            return None
        # Sorted: the team decides at each command's own time, which may go back a little.
        stamps = sorted(self.recent_assignments)
        gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
        if now > stamps[-1]:
            gaps.append(now - stamps[-1])
        kept = [gap.total_seconds() for gap in gaps if gap <= MAX_PACE_GAP]
        if not kept or sum(kept) <= 0:
            return None
        return round(position * sum(kept) / len(kept), 1)  # seconds: a tenth is all an estimate holds

    @property
    def queue_depth(self) -> int:
        return sum(lane.depth for lane in self.lanes)

    def lane(self, priority: int) -> Lane:
        for lane in self.lanes:
            if lane.priority == priority:
                return lane
        base = lane_base(priority)
        return Lane(priority=priority, head=base, tail=base)

    def with_lane(self, lane: Lane) -> TeamState:
        others = [existing for existing in self.lanes if existing.priority != lane.priority]
        return replace(self, lanes=tuple(sorted([*others, lane], key=lambda x: x.priority)))


class HoldingReader(Protocol):
    """Who holds which route: the team's holdings, kept beside its state."""

    def holding(self, route_id: str) -> Holding | None:
        """Who holds the lead of this route (None: nobody in this team)."""
        ...


class QueueReader(HoldingReader, Protocol):
    """The team's side table, read: queue entries by number, which routes wait, who holds what."""

    def get(self, seq: int) -> RouteLead | None: ...

    def contains(self, route_id: str) -> bool:
        """Whether a RouteLead with this ``route_id`` is waiting in the queue."""
        ...

    def seq_of(self, route_id: str) -> int | None:
        """The sequence number of the waiting RouteLead with this ``route_id`` (None: not known)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueWrite:
    """Put (``entry``) or delete (``entry is None``) one queue entry."""

    seq: int
    entry: RouteLead | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSlot:
    """Where a waiting route sits in the queue (the value of the queue's route index)."""

    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldingWrite:
    """Put (``holding``) or delete (``holding is None``) the holding of one route."""

    route_id: str
    holding: Holding | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamTransition:
    state: TeamState
    outgoing: tuple[Outgoing, ...] = ()
    queue_writes: tuple[QueueWrite, ...] = ()
    #: At most one per route (its value after the transition), in the order first touched.
    holding_writes: tuple[HoldingWrite, ...] = ()


def new_team(team_id: str) -> TeamState:
    return TeamState(team_id=team_id)


def holder_of(state: TeamState, holdings: HoldingReader, lead_id: str, route_id: str) -> RepState | None:
    """The rep of ``state`` who holds ``lead_id`` under ``route_id``, if any."""
    holding = holdings.holding(route_id)
    if holding is None or holding.lead_id != lead_id:
        return None
    return state.reps.get(holding.rep_id)


class _Work:
    """Accumulates one transition's effects; keeps pure code linear to read."""

    def __init__(self, state: TeamState, queue: QueueReader) -> None:
        self.state = state
        self.queue = queue
        self.outgoing: list[Outgoing] = []
        self.writes: dict[int, RouteLead | None] = {}
        self.dequeued: set[str] = set()
        #: route id -> this transition's holding for it (``None``: released), over ``queue``'s
        self.holdings: dict[str, Holding | None] = {}
        #: Leads assigned by this transition (at most ``DRAIN_MAX`` from the queue).
        self.assigned = 0
        #: The drain stopped at ``DRAIN_MAX``: a ``DrainQueue`` to this team goes on with it.
        self.cut = False

    def holding(self, route_id: str) -> Holding | None:
        if route_id in self.holdings:
            return self.holdings[route_id]
        return self.queue.holding(route_id)

    def holder(self, lead_id: str, route_id: str) -> RepState | None:
        return holder_of(self.state, self, lead_id, route_id)

    def entry(self, seq: int) -> RouteLead | None:
        if seq in self.writes:
            return self.writes[seq]
        return self.queue.get(seq)

    def set_lane(self, lane: Lane) -> None:
        self.state = self.state.with_lane(lane)

    def is_queued(self, route_id: str) -> bool:
        for entry in self.writes.values():
            if entry is not None and entry.route_id == route_id:
                return True
        if route_id in self.dequeued:
            return False
        return self.queue.contains(route_id)

    def emit(self, key: str, value: LeadAssigned | LeadQueued) -> None:
        self.outgoing.append(Outgoing(channel="lead.commands", key=key, value=value))

    def report_held(self, rep_id: str, open_leads: int, move: int, now: datetime) -> None:
        """Tell the rep directory how many leads a rep who left holds here (``rules.reps``)."""
        self.outgoing.append(Outgoing(channel="rep.commands", key=rep_id, value=ReportHeld(
            rep_id=rep_id, team_id=self.state.team_id, open_leads=open_leads, move=move, at=now)))

    def result(self) -> TeamTransition:
        writes = tuple(QueueWrite(seq=s, entry=e) for s, e in sorted(self.writes.items()))
        held = tuple(HoldingWrite(route_id=r, holding=h) for r, h in self.holdings.items())
        return TeamTransition(state=self.state, outgoing=tuple(self.outgoing), queue_writes=writes,
                              holding_writes=held)


def apply(state: TeamState | None, command: TeamCommand, now: datetime, queue: QueueReader) -> TeamTransition:
    """Apply one command to a team. Replaying a command already applied changes nothing new."""
    work = _Work(state or new_team(command.team_id), queue)
    if isinstance(command, RouteLead):
        _route(work, command, now)
    elif isinstance(command, ReleaseLead):
        _release(work, command, now)
        _drain(work, now)
    elif isinstance(command, KeepAssignment):
        _keep(work, command, now)
        _drain(work, now)
    elif isinstance(command, WithdrawLead):
        _withdraw(work, command)
    elif isinstance(command, DrainQueue):
        _drain(work, now)
    elif isinstance(command, UpsertRep):
        _upsert(work, command, now)
        _drain(work, now)
    elif isinstance(command, RemoveRep):
        _remove(work, command, now)
    elif isinstance(command, SetHeldElsewhere):
        rep = work.state.reps.get(command.rep_id)
        if rep is not None and not rep.departed:
            _put_rep(work, replace(rep, held_elsewhere=command.open_leads,
                                   awaiting_handover=not command.settled))
            _drain(work, now)
    elif isinstance(command, SetPresence):
        rep = work.state.reps.get(command.rep_id)
        if rep is not None:
            credit = rep.credit
            if command.status == "available" and rep.presence != "available":
                # Fair-share calibration: back from away, no credit owed from before they left.
                credit = min(credit, 0)
            _put_rep(work, replace(rep, presence=command.status, credit=credit))
            _drain(work, now)
    return work.result()


def _put_rep(work: _Work, rep: RepState) -> None:
    work.state = replace(work.state, reps={**work.state.reps, rep.rep_id: rep})


def _route(work: _Work, command: RouteLead, now: datetime) -> None:
    holder = work.holder(command.lead_id, command.route_id)
    if holder is not None:
        # A replay of a RouteLead already assigned: say it again (the lead dedups by route_id).
        work.emit(command.lead_id, _assigned(work.state, holder, command, _replayed_decision(work.state, holder, now), now))
        return
    if command.route_id in work.state.released_routes:
        # A replay of a route already assigned and released: the lead has moved on.
        return
    if work.is_queued(command.route_id):
        # A replay of a RouteLead still waiting: one queue entry per route; answer again.
        decision = _choose(work, command, now).decision
        work.emit(command.lead_id, LeadQueued(
            lead_id=command.lead_id, route_id=command.route_id, team_id=work.state.team_id,
            depth=work.state.queue_depth, decision=replace(decision, reason=f"{decision.reason}; already waiting"),
            queued_at=now,
        ))
        return
    # Serve the waiting leads first (time may have made some assignable). Afterwards every entry
    # the drain looked at is one nobody may take, so when it looked at every lane served before
    # or with this lead, it jumps no assignable one by being assigned straight away.
    _drain(work, now)
    priority = priority_of(command)
    # A drain cut short (DRAIN_MAX) left assignable leads waiting: this one waits behind them.
    ahead_seen = not work.cut and all(lane.span < LOOKAHEAD for lane in work.state.lanes if lane.priority <= priority)
    if ahead_seen and _try_assign(work, command, now):
        return
    ahead, stuck = _waiting_ahead(work, priority)
    lane = work.state.lane(priority)
    work.writes[lane.tail] = command
    work.set_lane(replace(lane, tail=lane.tail + 1))
    decision = _choose(work, command, now).decision
    if ahead:
        decision = replace(decision, reason=f"{decision.reason}; {ahead} lead(s) to be served first")
    if stuck:
        decision = replace(decision, reason=f"{decision.reason} ({stuck} waiting that no rep may take not counted)")
    if priority != 2:
        decision = replace(decision, reason=f"{decision.reason}; queue priority {priority}")
    # A lead no rep of the team may take waits for the roster to change or for its SLA ladder (the
    # release to the overflow team), not for a free slot: the team's pace says nothing about it.
    hopeless = _nobody_may_take(work.state, command)
    if hopeless:
        decision = replace(decision, reason=f"{decision.reason}; no rep of the team may take this lead: no wait estimate")
    work.emit(command.lead_id, LeadQueued(
        lead_id=command.lead_id, route_id=command.route_id, team_id=work.state.team_id,
        depth=work.state.queue_depth, decision=decision, queued_at=now,
        expected_wait_s=None if hopeless else work.state.expected_wait_s(ahead + 1, now),
    ))


def _nobody_may_take(state: TeamState, entry: RouteLead) -> bool:
    """Whether no rep of the team may ever take ``entry`` as the roster stands: each one is
    excluded for it (had it, declined it, let its offer lapse) or lacks what it asks (skills,
    language, territory). A team without reps is not judged: a rep may join."""
    reps = [rep for rep in state.reps.values() if not rep.departed]
    return bool(reps) and all(lead_reasons(rep, entry) for rep in reps)


def _waiting_ahead(work: _Work, priority: int) -> tuple[int, int]:
    """``(leads served before a new lead of priority, leads ahead of it that no rep may take)``.

    Leads no rep may take are never served, so they do not hold the new lead up. Each lane is
    looked at ``LOOKAHEAD`` entries from its head (as the drain does); entries past that are
    counted as ones someone may take.
    """
    served = stuck = 0
    for lane in work.state.lanes:
        if lane.priority > priority:
            continue
        seen = 0
        for seq in range(lane.head, min(lane.tail, lane.head + LOOKAHEAD)):
            entry = work.entry(seq)
            if entry is None:
                continue  # a hole
            seen += 1
            if _nobody_may_take(work.state, entry):
                stuck += 1
            else:
                served += 1
        served += max(lane.depth - seen, 0)
    return served, stuck


def priority_of(command: RouteLead) -> int:
    return min(max(command.priority, 0), MAX_PRIORITY)


def _choose(work: _Work, command: RouteLead, now: datetime) -> Choice:
    return choose_rep(work.state.team_id, list(work.state.reps.values()), now=now,
                      lead=command, strategy=work.state.strategy)


def _try_assign(work: _Work, command: RouteLead, now: datetime) -> bool:
    choice = _choose(work, command, now)
    if choice.decision.winner is None:
        return False
    reps = {**work.state.reps, **choice.reps}
    winner = reps[choice.decision.winner].with_lead(now)
    reps[winner.rep_id] = winner
    work.assigned += 1
    work.holdings[command.route_id] = Holding(rep_id=winner.rep_id, lead_id=command.lead_id, assigned_at=now)
    recent = (work.state.recent_assignments + (now,))[-_RATE_WINDOW:]
    work.state = replace(work.state, reps=reps, routed_total=work.state.routed_total + 1, recent_assignments=recent)
    work.emit(command.lead_id, _assigned(work.state, winner, command, choice.decision, now))
    return True


def _drain(work: _Work, now: datetime) -> None:
    """Assign waiting leads by priority, then oldest first, skipping entries nobody may take.

    In each lane it looks at the ``LOOKAHEAD`` entries from the head (the window slides as the
    head moves), so one call visits at most that many entries nobody may take per lane plus
    those it removes. Taking a lead only ever makes reps less able to take more (load and caps
    go up), so one pass in order is priority-then-FIFO among the assignable.
    """
    for priority in [lane.priority for lane in work.state.lanes]:
        if not _anyone_free(work, now):
            return
        _drain_lane(work, priority, now)


def _anyone_free(work: _Work, now: datetime) -> bool:
    return any(not rep_reasons(rep, now) for rep in work.state.reps.values())


def _drain_lane(work: _Work, priority: int, now: datetime) -> None:
    seq = work.state.lane(priority).head
    while True:
        lane = work.state.lane(priority)
        if seq >= min(lane.tail, lane.head + LOOKAHEAD):
            return
        if not _anyone_free(work, now):
            return  # nobody can take anything now: the rest of the look-ahead would be wasted
        if work.assigned >= DRAIN_MAX:
            _go_on_later(work, now)
            return
        seq = max(seq, lane.head)
        entry = work.entry(seq)
        if entry is not None:  # None: a hole left by an earlier skip, which the head walks over
            stale = (work.holder(entry.lead_id, entry.route_id) is not None
                     or entry.route_id in work.state.released_routes)
            if stale or _try_assign(work, entry, now):
                _take_out(work, priority, seq, entry.route_id)
        _advance_head(work, priority)
        seq += 1


def _go_on_later(work: _Work, now: datetime) -> None:
    """The drain reached ``DRAIN_MAX``: the team tells itself to go on (a command, read after this one)."""
    if not work.cut:
        work.cut = True
        work.outgoing.append(Outgoing(channel="team.commands", key=work.state.team_id,
                                      value=DrainQueue(team_id=work.state.team_id, at=now)))


def _take_out(work: _Work, priority: int, seq: int, route_id: str) -> None:
    """Delete the entry at ``seq`` from its lane: the head moves, or a hole is left behind it."""
    work.dequeued.add(route_id)
    work.writes[seq] = None
    lane = work.state.lane(priority)
    if seq == lane.head:
        work.set_lane(replace(lane, head=seq + 1))
    else:
        work.set_lane(replace(lane, holes=lane.holes + 1))


def _advance_head(work: _Work, priority: int) -> None:
    """Move a lane's head over holes (entries already taken from behind it)."""
    lane = work.state.lane(priority)
    head, holes = lane.head, lane.holes
    while head < lane.tail and work.entry(head) is None:
        work.writes[head] = None
        head, holes = head + 1, max(0, holes - 1)
    holes = min(holes, lane.tail - head)
    if (head, holes) != (lane.head, lane.holes):
        work.set_lane(replace(lane, head=head, holes=holes))


def _withdraw(work: _Work, command: WithdrawLead) -> None:
    """The lead left the queue (overflowed elsewhere): never assign this route here."""
    if work.holder(command.lead_id, command.route_id) is not None:
        return  # already assigned here: the lead hands that assignment back itself
    if command.route_id in work.state.released_routes:
        return  # a replay: the route is already out
    released = (work.state.released_routes + (command.route_id,))[-_RELEASED_MEMORY:]
    work.state = replace(work.state, released_routes=released)
    _dequeue(work, command.route_id)


def _dequeue(work: _Work, route_id: str) -> None:
    """Take the route's entry out of its lane, if it is waiting."""
    seq = work.queue.seq_of(route_id) if work.is_queued(route_id) else None
    if seq is not None and work.entry(seq) is not None:
        _take_out(work, seq // _LANE_SPAN, seq, route_id)


def _remove(work: _Work, command: RemoveRep, now: datetime) -> None:
    """The rep moved to another team or was retired: they keep the leads they hold here; say how many.

    The count goes to the rep directory, which has the rep's new team count those leads against
    the rep's capacity (``rules.reps``); it is sent again at each release until none is left.
    """
    rep = work.state.reps.get(command.rep_id)
    if rep is not None and rep.load:
        # Their open leads stay theirs: the rep stays, never eligible, until the last is released.
        _put_rep(work, replace(rep, departed=True, left_move=command.move, held_elsewhere=0,
                               awaiting_handover=False))
    else:
        work.state = replace(work.state, reps={k: v for k, v in work.state.reps.items() if k != command.rep_id})
    _forget_refusal(work, command.rep_id)
    work.report_held(command.rep_id, rep.load if rep is not None else 0, command.move, now)


def _release(work: _Work, command: ReleaseLead, now: datetime) -> None:
    rep = work.holder(command.lead_id, command.route_id)
    if rep is not None and rep.rep_id == command.rep_id:
        # Only the exact assignment frees capacity: a stale release (another rep, another route
        # of the same lead, or one already applied) finds no holding of this rep and does nothing.
        holding = work.holding(command.route_id)
        returned_from = holding.assigned_at if command.returned and holding is not None else None
        _free(work, command.route_id, rep, now, returned_from=returned_from)
        released = (work.state.released_routes + (command.route_id,))[-_RELEASED_MEMORY:]
        work.state = replace(work.state, released_routes=released)


def _keep(work: _Work, command: KeepAssignment, now: datetime) -> None:
    """Count the route for the rep the lead kept, taking it from whoever the team chose since."""
    if command.route_id in work.state.released_routes:
        return  # the lead has released this route since: a late replay of the message
    holder = work.holder(command.lead_id, command.route_id)
    if holder is not None and holder.rep_id == command.rep_id:
        return  # already counted there (the usual case, or this message again)
    if holder is not None:
        # The re-decision's rep never got the lead: it leaves their caps too.
        decided = work.holding(command.route_id)
        _free(work, command.route_id, holder, now, returned_from=decided.assigned_at if decided else None)
    else:
        work.state = replace(work.state, routed_total=work.state.routed_total + 1)
    _dequeue(work, command.route_id)  # the re-decision may have queued it: the lead is not waiting
    keeper = work.state.reps.get(command.rep_id)
    if keeper is None:
        return  # the rep left the team meanwhile: the lead's own release finds no holding either
    work.holdings[command.route_id] = Holding(rep_id=keeper.rep_id, lead_id=command.lead_id,
                                              assigned_at=command.assigned_at)
    keeper = keeper.with_late_lead(command.assigned_at)
    _put_rep(work, keeper)
    if keeper.departed:
        work.report_held(keeper.rep_id, keeper.load, keeper.left_move, now)


def _free(work: _Work, route_id: str, rep: RepState, now: datetime, *,
          returned_from: datetime | None = None) -> None:
    """Delete the route's holding and give ``rep`` the capacity back (a departed rep's last lead: gone).

    ``returned_from``: the rep never took the lead, assigned then; it leaves their caps too.
    """
    work.holdings[route_id] = None
    rep = rep.without_lead(returned_from=returned_from)
    if rep.departed:
        work.report_held(rep.rep_id, rep.load, rep.left_move, now)  # one fewer to count in their new team
    if rep.departed and not rep.load:
        work.state = replace(work.state, reps={k: v for k, v in work.state.reps.items() if k != rep.rep_id})
    else:
        _put_rep(work, rep)


def _upsert(work: _Work, command: UpsertRep, now: datetime) -> None:
    profile = command.profile
    current = work.state.reps.get(profile.rep_id)
    if current is None:
        # New reps start available: a rep RevOps just created is expected to take leads.
        rep = RepState(profile=profile, presence="available", held_elsewhere=command.held_elsewhere,
                       awaiting_handover=command.awaiting_handover)
    else:
        if command.keep:
            # Fields the update left out keep their value here (the directory could not fill them).
            profile = replace(profile, **{name: getattr(current.profile, name) for name in command.keep
                                          if name not in ("rep_id", "team_id", "team_strategy")})
        if profile.webhook_secret is None:
            profile = replace(profile, webhook_secret=current.profile.webhook_secret)
        # Back in this team, if they had left: their leads here count here again, as a member's.
        rep = replace(current, profile=profile, departed=False, left_move=0,
                      held_elsewhere=command.held_elsewhere, awaiting_handover=command.awaiting_handover)
        if profile.timezone != current.profile.timezone:
            rep = rep.with_timezone_of(current.profile, now)
    problem = _admission_problem(work.state, rep)
    if command.join:
        # The directory's question: a rep moving in moves only on a yes, else they stay in their
        # team; a new rep or a change shows as taken only once it is. The answer says what this
        # team holds after it: the new profile on a yes, the one it had (or none) on a no.
        held = rep if problem is None else current
        member = held is not None and not held.departed
        work.outgoing.append(Outgoing(channel="rep.commands", key=rep.rep_id, value=ReportJoin(
            rep_id=rep.rep_id, team_id=work.state.team_id, move=command.join, refused=problem, at=now,
            member=member, profile=held.profile if held is not None and member else None)))
    if problem is not None:
        # The roster stays as it was; the refusal is kept (one per rep) for the team view and the agent's log.
        refusal = RepRefusal(rep_id=rep.rep_id, reason=problem, at=now)
        kept = (*_without(work.state.refused_reps, rep.rep_id), refusal)[-_REFUSALS_KEPT:]
        work.state = replace(work.state, refused_reps=kept)
        return
    if profile.team_strategy in STRATEGIES and profile.team_strategy != work.state.strategy:
        # The team's strategy travels on config-born upserts (the API's leave it None).
        work.state = replace(work.state, strategy=profile.team_strategy)
    _put_rep(work, rep)
    _forget_refusal(work, rep.rep_id)


def state_bytes(state: TeamState) -> int:
    """How many bytes ``state`` takes encoded: orjson's dataclass encoding, which the codec writes
    (``streams/codec.py``), less the envelope and the record's other fields."""
    return len(orjson.dumps(state))


def admission_problem(state: TeamState | None, profile: RepProfile) -> str | None:
    """Why the team would refuse ``profile`` now (too many reps, or a state too big), or ``None``.

    The API asks it before accepting a PUT, with the team as this worker sees it; the team asks it
    again (``_upsert``) with the profile it would really hold.
    """
    if state is None:
        state = new_team(profile.team_id)
    current = state.reps.get(profile.rep_id)
    rep = RepState(profile=profile, presence="available") if current is None else replace(current, profile=profile)
    return _admission_problem(state, rep)


def _admission_problem(state: TeamState, rep: RepState) -> str | None:
    current = state.reps.get(rep.rep_id)
    if current is None and len(state.reps) >= MAX_REPS:
        return (f"team {state.team_id} has {len(state.reps)} reps, the most a team may have ({MAX_REPS}; reps who "
                "left it and still hold leads there count until those leads are closed)")
    after = state_bytes(replace(state, reps={**state.reps, rep.rep_id: rep},
                                refused_reps=_without(state.refused_reps, rep.rep_id)))
    # An update that makes the state no bigger is taken even over the budget: it only helps.
    if after > STATE_BYTES_BUDGET and (current is None or after > state_bytes(state)):
        return (f"team {state.team_id} would take {after} bytes encoded with this rep, more than the "
                f"{STATE_BYTES_BUDGET} a team may ({len(state.reps)} reps now): shorten the reps' profiles "
                "(skills, languages, territories, webhook_url, name) or split the team")
    return None


def _without(refusals: tuple[RepRefusal, ...], rep_id: str) -> tuple[RepRefusal, ...]:
    return tuple(r for r in refusals if r.rep_id != rep_id)


def _forget_refusal(work: _Work, rep_id: str) -> None:
    """The rep was taken in or removed: an earlier refusal of them no longer says anything."""
    if any(r.rep_id == rep_id for r in work.state.refused_reps):
        work.state = replace(work.state, refused_reps=_without(work.state.refused_reps, rep_id))


def new_refusal(before: TeamState | None, after: TeamState | None, rep_id: str) -> RepRefusal | None:
    """The refusal of ``rep_id`` that ``after`` keeps and ``before`` did not: the one a command just made."""
    if after is None:
        return None
    seen = before.refused_reps if before is not None else ()
    for refusal in after.refused_reps:
        if refusal.rep_id == rep_id and refusal not in seen:
            return refusal
    return None


def _replayed_decision(state: TeamState, holder: RepState, now: datetime) -> RoutingDecision:
    return RoutingDecision(
        team_id=state.team_id, strategy="replay", candidates=(), winner=holder.rep_id,
        reason="already assigned by an earlier decision for this route", decided_at=now,
    )


def _assigned(
    state: TeamState, rep: RepState, command: RouteLead, decision: RoutingDecision, now: datetime
) -> LeadAssigned:
    return LeadAssigned(
        lead_id=command.lead_id, route_id=command.route_id, team_id=state.team_id,
        rep_id=rep.rep_id, rep_name=rep.profile.name, webhook_url=rep.profile.webhook_url,
        webhook_secret=rep.profile.webhook_secret, decision=decision, assigned_at=now,
    )

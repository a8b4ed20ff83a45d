"""The lead <-> team handshake end to end, purely: both state machines on a tiny in-memory bus."""
from __future__ import annotations

from collections import Counter

import pytest

from rules.capture import CapturedLead, derive_lead_id
from rules.commands import (
    CaptureLead,
    DispositionLead,
    LeadAssigned,
    LeadQueued,
    Notify,
    PutRep,
    ReleaseLead,
    RepProfile,
    RouteLead,
)
from rules.lead import LeadPolicy
from tests.rules._sim import Bus, events, values

TEAM = LeadPolicy().default_team  # the brief: LeadPolicy() as is
REPS = ("rep-a", "rep-b", "rep-c")


def email(i: int) -> str:
    return f"person{i:02d}@example.com"


def lead_id(i: int) -> str:
    return derive_lead_id(email=email(i), phone=None, source="webform", external_id=None)


def capture(bus: Bus, i: int, capture_id: str | None = None, **fields: object) -> list[object]:
    data: dict[str, object] = {"email": email(i), "source": "webform", **fields}
    command = CaptureLead(lead_id=lead_id(i), capture_id=capture_id or f"cap-{i:02d}", captured_at=bus.clock.now(),
                          lead=CapturedLead(**data))  # type: ignore[arg-type]
    return bus.send("lead.commands", command.lead_id, command)  # type: ignore[return-value]


def dispose(bus: Bus, i: int, status: str = "disqualified") -> list[object]:
    state = bus.leads[lead_id(i)]
    rep_id = state.assignment.rep_id if state.assignment else None
    command = DispositionLead(lead_id=lead_id(i), status=status, reason=None, rep_id=rep_id, at=bus.clock.now())
    return bus.send("lead.commands", command.lead_id, command)  # type: ignore[return-value]


@pytest.fixture
def bus() -> Bus:
    """Three reps of capacity 5, then 30 leads captured one after the other."""
    bus = Bus()
    for rep_id in REPS:
        profile = RepProfile(rep_id=rep_id, team_id=TEAM, name=rep_id.title(), capacity=5,
                             webhook_url=f"https://hooks.test/{rep_id}", webhook_secret=f"whsec_{rep_id}")
        bus.send("rep.commands", rep_id, PutRep(rep_id=rep_id, profile=profile, at=bus.clock.now()))
    for i in range(30):
        capture(bus, i)
    return bus


def routing(bus: Bus) -> Counter[str]:
    return Counter(state.routing for state in bus.leads.values())


def loads(bus: Bus) -> dict[str, int]:
    return {rep_id: rep.load for rep_id, rep in bus.team(TEAM).reps.items()}


def test_thirty_leads_over_three_reps_of_five(bus: Bus) -> None:
    assert routing(bus) == {"assigned": 15, "queued": 15}
    assert loads(bus) == {"rep-a": 5, "rep-b": 5, "rep-c": 5}
    team = bus.team(TEAM)
    assert team.queue_depth == 15 and len(bus.teams[TEAM].queue.entries) == 15
    # The first fifteen captured got the reps, the last fifteen wait, in capture order.
    assert [bus.leads[lead_id(i)].routing for i in range(30)] == ["assigned"] * 15 + ["queued"] * 15
    assert [e.lead_id for e in values(bus.sent, "team.commands", RouteLead)] == [lead_id(i) for i in range(30)]
    assert [e.depth for e in values(bus.sent, "lead.commands", LeadQueued)] == list(range(1, 16))
    notes = values(bus.sent, "notifications", Notify)
    assert len(notes) == 15 and len({n.webhook_id for n in notes}) == 15
    assert Counter(n.rep_id for n in notes) == {"rep-a": 5, "rep-b": 5, "rep-c": 5}
    assert all(n.url == f"https://hooks.test/{n.rep_id}" for n in notes)
    assert len(events(bus.sent, "lead.captured")) == 30
    assert len(events(bus.sent, "lead.assigned")) == 15
    assert len(events(bus.sent, "lead.queued")) == 15
    # Nothing was ever handed back: every assignment was wanted.
    assert values(bus.sent, "team.commands", ReleaseLead) == []


def test_dispositions_let_the_queue_drain_in_fifo_order(bus: Bus) -> None:
    waiting = [lead_id(i) for i in range(15, 30)]
    newly: list[str] = []
    for i in (3, 0, 7, 1, 14, 9, 2):
        freed = bus.leads[lead_id(i)].assignment
        assert freed is not None
        sent = dispose(bus, i)
        (taken,) = values(sent, "lead.commands", LeadAssigned)
        assert taken.rep_id == freed.rep_id  # the only rep with a free slot
        newly.append(taken.lead_id)
        assert max(loads(bus).values()) <= 5
    assert newly == waiting[:7]
    assert routing(bus) == {"assigned": 15, "queued": 8, "released": 7}
    assert bus.team(TEAM).queue_depth == 8
    assert all(bus.leads[w].routing == "assigned" for w in waiting[:7])


def test_all_dispositions_drain_everything(bus: Bus) -> None:
    for i in range(30):
        dispose(bus, i)
        assert max(loads(bus).values()) <= 5
    assert routing(bus) == {"released": 30}
    assert bus.team(TEAM).queue_depth == 0
    assert loads(bus) == {"rep-a": 0, "rep-b": 0, "rep-c": 0}
    assert bus.teams[TEAM].queue.entries == {}
    assert len(values(bus.sent, "notifications", Notify)) == 30


@pytest.mark.parametrize("i", [0, 20])  # an assigned lead and a queued one
def test_duplicate_capture_changes_nothing(bus: Bus, i: int) -> None:
    leads, team, queue = dict(bus.leads), bus.team(TEAM), dict(bus.teams[TEAM].queue.entries)
    sent = capture(bus, i)  # same capture_id as the original
    assert sent[1:] == []   # only the replayed command itself went on the bus
    assert bus.leads == leads and bus.team(TEAM) == team and bus.teams[TEAM].queue.entries == queue


@pytest.mark.parametrize("i", [0, 20])
def test_same_person_new_capture_is_a_touch(bus: Bus, i: int) -> None:
    before = bus.leads[lead_id(i)]
    team = bus.team(TEAM)
    sent = capture(bus, i, capture_id=f"cap-{i:02d}-again", source="ads", title="VP Sales")
    assert values(sent, "team.commands") == []  # no second RouteLead
    assert [e["type"] for e in values(sent, "lead.events")] == ["lead.touched"]
    after = bus.leads[lead_id(i)]
    assert (after.touches, after.cycle, after.route_id, after.routing) == (2, 1, before.route_id, before.routing)
    assert after.lead.title == "VP Sales" and after.last_touch.source == "ads"
    assert bus.team(TEAM) == team


def test_disposition_then_capture_again_reopens_cycle_two(bus: Bus) -> None:
    first = bus.leads[lead_id(4)]
    dispose(bus, 4)  # frees a slot: lead 15 takes it
    assert bus.leads[lead_id(15)].routing == "assigned"
    for i in range(16, 30):
        dispose(bus, i)  # close the waiting leads so the reopened one can be routed at once
    dispose(bus, 0)
    sent = capture(bus, 4, capture_id="cap-04-back")
    reopened = bus.leads[lead_id(4)]
    assert (reopened.cycle, reopened.routing) == (2, "assigned")
    assert reopened.route_id == f"{lead_id(4)}:2:1" != first.route_id
    (route,) = values(sent, "team.commands", RouteLead)
    assert route.route_id == reopened.route_id
    assert [e["type"] for e in values(sent, "lead.events")] == ["lead.reopened", "lead.scored", "lead.assigned"]
    (note,) = values(sent, "notifications", Notify)
    assert first.assignment is not None and note.webhook_id != first.assignment.webhook_id


def test_reopened_lead_waits_its_turn_in_the_queue(bus: Bus) -> None:
    dispose(bus, 4)
    sent = capture(bus, 4, capture_id="cap-04-back")
    assert bus.leads[lead_id(4)].routing == "queued"
    (queued,) = values(sent, "lead.commands", LeadQueued)
    assert queued.depth == 15


@pytest.mark.parametrize("stale", ["wrong route", "already released", "unknown lead"])
def test_stale_assignment_is_released_back_to_the_team(bus: Bus, stale: str) -> None:
    if stale == "already released":
        old = bus.leads[lead_id(2)].assignment
        assert old is not None
        dispose(bus, 2)
        target, route_id, rep_id = lead_id(2), old.route_id, old.rep_id
    elif stale == "wrong route":
        target, route_id, rep_id = lead_id(5), f"{lead_id(5)}:1:9", "rep-a"
    else:
        target, route_id, rep_id = "ld_nobody", "ld_nobody:1:1", "rep-b"
    before_team, before_lead = bus.team(TEAM), bus.leads.get(target)
    command = LeadAssigned(lead_id=target, route_id=route_id, team_id=TEAM, rep_id=rep_id, rep_name="X",
                           webhook_url="https://hooks.test/x", webhook_secret="whsec_x",
                           decision=values(bus.sent, "lead.commands", LeadAssigned)[0].decision,
                           assigned_at=bus.clock.now())
    sent = bus.send("lead.commands", target, command)
    (back,) = values(sent, "team.commands", ReleaseLead)
    assert (back.lead_id, back.route_id, back.rep_id) == (target, route_id, rep_id)
    assert values(sent, "notifications") == []
    assert bus.leads.get(target) == before_lead
    # The team held nothing for it, so handing it back changes nothing there.
    assert bus.team(TEAM).reps == before_team.reps


def test_replayed_route_after_release_is_not_assigned_again(bus: Bus) -> None:
    route = values(bus.sent, "team.commands", RouteLead)[6]
    dispose(bus, 6)
    team = bus.team(TEAM)
    sent = bus.send("team.commands", TEAM, route)  # an at-least-once redelivery
    assert sent[1:] == []
    assert bus.team(TEAM).reps == team.reps


def test_replayed_assignment_resends_the_same_notification(bus: Bus) -> None:
    original = values(bus.sent, "lead.commands", LeadAssigned)[8]
    (first,) = [n for n in values(bus.sent, "notifications", Notify) if n.lead_id == original.lead_id]
    state = bus.leads[original.lead_id]
    sent = bus.send("lead.commands", original.lead_id, original)
    (again,) = values(sent, "notifications", Notify)
    assert again.webhook_id == first.webhook_id
    assert again == first
    assert bus.leads[original.lead_id] == state
    assert values(sent, "team.commands") == [] and values(sent, "lead.events") == []


def test_replayed_route_of_an_assigned_lead_resends_the_same_notification(bus: Bus) -> None:
    route = values(bus.sent, "team.commands", RouteLead)[11]
    (first,) = [n for n in values(bus.sent, "notifications", Notify) if n.lead_id == route.lead_id]
    team = bus.team(TEAM)
    sent = bus.send("team.commands", TEAM, route)
    (again,) = values(sent, "lead.commands", LeadAssigned)
    assert again.decision.strategy == "replay"
    assert values(sent, "notifications", Notify) == [first]
    assert bus.team(TEAM).reps == team.reps

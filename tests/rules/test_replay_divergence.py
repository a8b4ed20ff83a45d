"""A team that decides a route again after a crash, and differently, still counts the lead.

A team batch tells the lead its decision before the team's record reaches the changelog. A kill
between the two makes the restarted team decide the batch's ``RouteLead`` again, from the record
before it. A decision that depends on the clock can come out different: here the first rep's
working hours end between the two runs. The lead keeps the rep it told (who was notified), and
the team must end up counting the lead there: no rep's load may miss it, none may count it twice.
"""
from __future__ import annotations

import copy
import pytest

from rules.capture import CapturedLead, derive_lead_id
from rules.commands import (
    CaptureLead, DispositionLead, DrainQueue, KeepAssignment, LeadAssigned, LeadQueued, Notify, PutRep, RepProfile,
    RouteLead,
)
from rules.lead import LeadPolicy
from sla.clock import FakeClock
from tests.rules._sim import T0, Bus, values

TEAM = LeadPolicy().default_team
LEAD = derive_lead_id(email="ada@example.com", phone=None, source="webform", external_id=None)
#: Monday 16:59 UTC: a minute before the first rep's working day ends.
BEFORE_FIVE = T0.replace(hour=16, minute=59)


def put(bus: Bus, rep_id: str, hours: str) -> None:
    profile = RepProfile(rep_id=rep_id, team_id=TEAM, name=rep_id.upper(), capacity=2,
                         working_hours={"mon-fri": (hours,)}, webhook_url=f"https://hooks.test/{rep_id}",
                         webhook_secret=f"whsec_{rep_id}")
    bus.send("rep.commands", rep_id, PutRep(rep_id=rep_id, profile=profile, at=bus.clock.now()))


def loads(bus: Bus) -> dict[str, int]:
    return {rep_id: rep.load for rep_id, rep in bus.team(TEAM).reps.items()}


def crash_and_redecide(bus: Bus, later_hours: str) -> list[object]:
    """Rep ``a`` works until 17:00 and takes the lead; then the team loses that decision, the
    clock passes 17:00, and the team decides the same ``RouteLead`` again."""
    put(bus, "a", "09:00-17:00")
    put(bus, "b", later_hours)
    before = copy.deepcopy(bus.teams[TEAM])
    capture = CaptureLead(lead_id=LEAD, capture_id="cap-1", captured_at=bus.clock.now(),
                          lead=CapturedLead(email="ada@example.com", source="webform"))
    sent = bus.send("lead.commands", LEAD, capture)
    (routed,) = values(sent, "team.commands", RouteLead)
    (first,) = values(sent, "lead.commands", LeadAssigned)
    assert first.rep_id == "a" and loads(bus) == {"a": 1, "b": 0}

    bus.teams[TEAM] = before  # the record of the batch never reached the changelog
    bus.clock.advance(90)
    return [m.value for m in bus.send("team.commands", TEAM, routed)[1:]]


@pytest.mark.parametrize(("later_hours", "redecided"), [("17:00-23:00", LeadAssigned), ("18:00-23:00", LeadQueued)],
                         ids=["another rep", "the queue"])
def test_the_lead_keeps_its_rep_and_the_team_counts_it_there(later_hours: str, redecided: type) -> None:
    bus = Bus(clock=FakeClock(BEFORE_FIVE))
    replayed = crash_and_redecide(bus, later_hours)

    assert isinstance(replayed[0], redecided)  # the team really decided differently
    lead = bus.leads[LEAD]
    assert lead.routing == "assigned" and lead.assignment is not None and lead.assignment.rep_id == "a"
    assert loads(bus) == {"a": 1, "b": 0}
    (kept,) = [v for v in replayed if isinstance(v, KeepAssignment)]
    assert (kept.route_id, kept.rep_id, kept.assigned_at) == (f"{LEAD}:1:1", "a", lead.assignment.assigned_at)
    assert bus.team(TEAM).queue_depth == 0 and bus.teams[TEAM].queue.entries == {}
    assert bus.teams[TEAM].holder_of(LEAD, f"{LEAD}:1:1") == "a"
    # Only a was ever notified, and b's hours opening later gives b nothing.
    bus.clock.advance(3600)
    bus.send("team.commands", TEAM, DrainQueue(team_id=TEAM, at=bus.clock.now()))
    assert {n.rep_id for n in values(bus.sent, "notifications", Notify)} == {"a"}
    assert loads(bus) == {"a": 1, "b": 0}

    # The lead's own release then frees a, and nobody's load goes below zero or stays behind.
    bus.send("lead.commands", LEAD, DispositionLead(lead_id=LEAD, status="disqualified", reason=None, rep_id="a",
                                                    at=bus.clock.now()))
    assert loads(bus) == {"a": 0, "b": 0}
    assert bus.teams[TEAM].holder_of(LEAD, f"{LEAD}:1:1") is None


def test_a_route_closed_before_the_replay_queued_it_is_withdrawn() -> None:
    """The lead was worked and closed before the restart; the replay finds nobody working and
    queues the route. The lead tells the team to drop it: no rep is assigned a closed lead."""
    bus = Bus(clock=FakeClock(BEFORE_FIVE))
    put(bus, "a", "09:00-17:00")
    put(bus, "b", "18:00-23:00")
    before = copy.deepcopy(bus.teams[TEAM])
    capture = CaptureLead(lead_id=LEAD, capture_id="cap-1", captured_at=bus.clock.now(),
                          lead=CapturedLead(email="ada@example.com", source="webform"))
    (routed,) = values(bus.send("lead.commands", LEAD, capture), "team.commands", RouteLead)
    closed = bus.send("lead.commands", LEAD, DispositionLead(lead_id=LEAD, status="disqualified", reason=None,
                                                             rep_id="a", at=bus.clock.now()))
    (release,) = values(closed, "team.commands")

    bus.teams[TEAM] = before  # neither batch's record reached the changelog: both are read again
    bus.clock.advance(90)
    replayed = [m.value for m in bus.send("team.commands", TEAM, routed)[1:]]
    bus.send("team.commands", TEAM, release)
    assert isinstance(replayed[0], LeadQueued)
    assert bus.team(TEAM).queue_depth == 0 and bus.teams[TEAM].queue.entries == {}
    bus.clock.advance(3600)  # b's hours open: nothing is waiting for them
    bus.send("team.commands", TEAM, DrainQueue(team_id=TEAM, at=bus.clock.now()))
    assert {a.rep_id for a in values(bus.sent, "lead.commands", LeadAssigned)} == {"a"}
    assert loads(bus) == {"a": 0, "b": 0}

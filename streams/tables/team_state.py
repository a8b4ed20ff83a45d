"""``team_state`` (roster and queue bounds by ``team_id``) and ``team_queue`` (the team's side table).

Both are written only by the team agent, from ``team.commands``, so their changelog entries
land in the team's partition. ``team_queue`` holds, under three key forms of the team's id:

* ``"{team_id}:{seq}"`` -> ``RouteLead``: one entry per waiting lead;
* ``"{team_id}@{route_id}"`` -> ``QueueSlot``: the queue's route index (where a route waits);
* ``"{team_id}#{route_id}"`` -> ``Holding``: which rep holds the lead of an assigned route.

Keeping the holdings here, one small value per assigned route, keeps ``TeamState`` bounded by the
roster (each ``RepState`` counts its open leads), and needs no table of its own (a table costs a
changelog topic, a store and restore time).
"""
from __future__ import annotations

from rules.commands import RouteLead
from rules.roster import Holding
from rules.team import QueueSlot
from streams.tables._table import entity_table

__all__ = ["team_state", "team_queue", "queue_key", "route_key", "holding_key", "TeamQueue"]

team_state = entity_table("team_state", help="TeamState by team_id (written only by the team agent).")
team_queue = entity_table(
    "team_queue",
    help="Waiting RouteLead commands by '{team_id}:{seq}', indexed by '{team_id}@{route_id}' -> "
         "QueueSlot, and holdings by '{team_id}#{route_id}' -> Holding (written only by the team agent).",
)


def queue_key(team_id: str, seq: int) -> str:
    return f"{team_id}:{seq}"


def route_key(team_id: str, route_id: str) -> str:
    return f"{team_id}@{route_id}"


def holding_key(team_id: str, route_id: str) -> str:
    return f"{team_id}#{route_id}"


class TeamQueue:
    """The ``QueueReader`` of one team over ``team_queue``."""

    def __init__(self, team_id: str) -> None:
        self.team_id = team_id

    def get(self, seq: int) -> RouteLead | None:
        value = team_queue.get(queue_key(self.team_id, seq))
        return value if isinstance(value, RouteLead) else None

    def contains(self, route_id: str) -> bool:
        return route_key(self.team_id, route_id) in team_queue

    def seq_of(self, route_id: str) -> int | None:
        slot = team_queue.get(route_key(self.team_id, route_id))
        return slot.seq if isinstance(slot, QueueSlot) else None

    def holding(self, route_id: str) -> Holding | None:
        value = team_queue.get(holding_key(self.team_id, route_id))
        return value if isinstance(value, Holding) else None

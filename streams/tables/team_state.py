"""``team_state``: everything the team agent keeps, in one table rebuilt from its changelog.

Written only by the team agent, from ``team.commands``, so every key lands in the team's
partition. Under the team's id it holds a ``TeamRecord`` (the ``TeamState`` and the journal of
its batch's side writes); beside it, under three key forms of the team's id, the side keys:

* ``"{team_id}:{seq}"`` -> ``RouteLead``: one entry per waiting lead;
* ``"{team_id}@{route_id}"`` -> ``QueueSlot``: the queue's route index (where a route waits);
* ``"{team_id}#{route_id}"`` -> ``Holding``: which rep holds the lead of an assigned route.

Keeping queue and holdings outside the state, one small value each, keeps ``TeamState`` bounded
by the roster. Keeping them in the state's own table, in memory, is what lets a crash never
leave a team half-written (``streams/tables/team_record.py``). Its size is bounded by the
waiting and open leads, not by all leads, so the memory store and a full restore from the
changelog on start cost little.
"""
from __future__ import annotations

from rules.team import TeamState
from streams.tables._table import entity_table
from streams.tables.team_record import TeamRecord, TeamSide

__all__ = ["CHANGELOG_CONFIGS", "team_state", "read_team", "team_side"]

#: The table is rebuilt from its whole changelog on every start, so the changelog must stay
#: compact. Kafka compacts only closed segments, and a segment closes at 1 GiB or after 7 days by
#: default: a busy team's log (a ~20 KB record per batch) would grow for days, every record read
#: and decoded at each start. Small segments that close within minutes keep it near the live keys.
CHANGELOG_CONFIGS = {
    "segment.bytes": str(8 * 2**20),
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
}

team_state = entity_table(
    "team_state",
    help="TeamRecord by team_id, and the team's queue entries, queue slots and holdings under "
         "'{team_id}:{seq}', '{team_id}@{route_id}' and '{team_id}#{route_id}' (written only by the team agent).",
    store="memory://",
    changelog_configs=CHANGELOG_CONFIGS,
)


def read_team(team_id: str) -> TeamState | None:
    """The team's state, if the team exists (on this worker)."""
    value = team_state.get(team_id)
    return value.state if isinstance(value, TeamRecord) else None


def team_side(team_id: str) -> TeamSide:
    """The team's side keys (queue and holdings) as its record sees them, for reading."""
    value = team_state.get(team_id)
    return TeamSide(team_id, team_state.get, value.journal if isinstance(value, TeamRecord) else ())

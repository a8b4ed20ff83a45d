"""The rep directory: which team owns each rep, so rep commands reach the right team agent.

A rep's capacity lives in their team's state (one writer per team); the directory only
remembers the team, keyed by ``rep_id``, and turns rep commands into team commands.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rules.commands import ChangePresence, Outgoing, PutRep, RemoveRep, RepCommand, SetPresence, UpsertRep

__all__ = ["RepEntry", "RepTransition", "apply"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RepEntry:
    rep_id: str
    team_id: str
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RepTransition:
    entry: RepEntry | None
    outgoing: tuple[Outgoing, ...] = ()


def apply(entry: RepEntry | None, command: RepCommand, now: datetime) -> RepTransition:
    """Route a rep command to the rep's team; a team change removes the rep from the old team."""
    if isinstance(command, PutRep):
        team_id = command.profile.team_id
        outgoing: list[Outgoing] = []
        if entry is not None and entry.team_id != team_id:
            outgoing.append(Outgoing(channel="team.commands", key=entry.team_id, value=RemoveRep(
                team_id=entry.team_id, rep_id=command.rep_id, reason=f"moved to team {team_id}", at=now)))
        outgoing.append(Outgoing(channel="team.commands", key=team_id,
                                 value=UpsertRep(team_id=team_id, profile=command.profile, at=now)))
        return RepTransition(entry=RepEntry(rep_id=command.rep_id, team_id=team_id, updated_at=now),
                             outgoing=tuple(outgoing))
    assert isinstance(command, ChangePresence)
    if entry is None:
        return RepTransition(entry=None)
    return RepTransition(entry=entry, outgoing=(Outgoing(channel="team.commands", key=entry.team_id, value=SetPresence(
        team_id=entry.team_id, rep_id=command.rep_id, status=command.status, at=now)),))

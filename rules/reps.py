"""The rep directory: which team owns each rep, so rep commands reach the right team agent.

A rep's capacity lives in their team's state (one writer per team); the directory only
remembers the team, keyed by ``rep_id``, and turns rep commands into team commands.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime

import orjson

from rules.commands import ChangePresence, Outgoing, PutRep, RemoveRep, RepCommand, RepProfile, SetPresence, UpsertRep

__all__ = ["RepEntry", "RepTransition", "apply", "profile_digest"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RepEntry:
    rep_id: str
    team_id: str
    updated_at: datetime
    #: Fingerprint of the YAML profile last applied (``None``: never seeded from the YAML).
    config_digest: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RepTransition:
    entry: RepEntry | None
    outgoing: tuple[Outgoing, ...] = ()


def apply(entry: RepEntry | None, command: RepCommand, now: datetime) -> RepTransition:
    """Route a rep command to the rep's team; a team change removes the rep from the old team."""
    if isinstance(command, PutRep):
        team_id = command.profile.team_id
        digest = entry.config_digest if entry is not None else None
        if command.from_config:
            if entry is not None and entry.config_digest == profile_digest(command.profile):
                return RepTransition(entry=entry)  # the YAML did not change: keep what the API changed
            digest = profile_digest(command.profile)
        outgoing: list[Outgoing] = []
        if entry is not None and entry.team_id != team_id:
            outgoing.append(Outgoing(channel="team.commands", key=entry.team_id, value=RemoveRep(
                team_id=entry.team_id, rep_id=command.rep_id, reason=f"moved to team {team_id}", at=now)))
        outgoing.append(Outgoing(channel="team.commands", key=team_id,
                                 value=UpsertRep(team_id=team_id, profile=command.profile, at=now)))
        return RepTransition(entry=RepEntry(rep_id=command.rep_id, team_id=team_id, updated_at=now,
                                            config_digest=digest), outgoing=tuple(outgoing))
    assert isinstance(command, ChangePresence)
    if entry is None:
        return RepTransition(entry=None)
    return RepTransition(entry=entry, outgoing=(Outgoing(channel="team.commands", key=entry.team_id, value=SetPresence(
        team_id=entry.team_id, rep_id=command.rep_id, status=command.status, at=now)),))


def profile_digest(profile: RepProfile) -> str:
    """A stable fingerprint of a profile (the secret included, so a rotated secret is applied)."""
    return hashlib.sha256(orjson.dumps(asdict(profile), option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]

"""The rep directory: which team owns each rep, so rep commands reach the right team agent.

A rep's capacity lives in their team's state (one writer per team); the directory remembers
the team, keyed by ``rep_id``, and turns rep commands into team commands.

A rep who moves team keeps the leads they hold in the old one (nobody's lead is taken away
mid-conversation), and those leads keep counting against their capacity: the old team reports
how many the rep still holds there (``ReportHeld``, once at the move and at every release),
the directory keeps the count per team left, and tells the rep's current team the total
(``SetHeldElsewhere``). Until every team the rep left has reported, the current team does not
give the rep a lead, so there is no moment at which the old leads are counted nowhere. The
current team alone decides on the rep's capacity; the directory, one writer per rep, is the
only one that knows which teams the rep left and in what order.

A move asks first: the directory sends the new team ``UpsertRep`` with the move's number
(``join``), and keeps the rep in their team until the new team answers (``ReportJoin``). A team
that takes the rep in holds them, not eligible, until the handover above; only then does the old
team get ``RemoveRep``. A team that refuses (full, ``rules.team.MAX_REPS``, or too big to write)
leaves the rep where they were, with the profile they had: the refusal is kept in the entry
(``move_refused``, ``GET /v1/reps/{rep_id}``) and in the team's ``refused_reps``. Any change made
while a move waits for its answer calls the move off (``RemoveRep`` to the team asked, which
drops the rep if it took them in) and starts from the rep's team again. An answer can be lost (a
team batch left out, a command the team could not apply): the YAML's unchanged ``PutRep``, sent at
every worker start, then asks the same move again (``_ask_again``), and the directory reads the
first answer only. A question can so be answered more than once (asked again, or sent again by a
replay), and a team that said no can say yes to a copy of it (it made room in between): the team
then holds the rep, never eligible, without the directory having moved them. The directory keeps
each no until nothing that team answers can be a yes to it any more (``refused_moves``), and a
yes read to it gets the team a ``RemoveRep`` (``_late_answer``), whatever changed in between.

A rep is *retired* (``RetireRep``, ``DELETE /v1/reps/{rep_id}``; or ``ApplyRoster``, the YAML no
longer naming a rep it seeded) the way a move leaves a team, without a team to go to: the team
gets ``RemoveRep`` and keeps the rep, departed and never eligible, until their last lead there is
released; the entry stays, marked ``retired``, so a later ``PutRep`` brings the rep back with the
profile they had. The roster retires only reps whose last change came from the YAML: a rep made
or changed through the API is the API's, and a file that never named them says nothing about them.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Literal, TypeAlias

import orjson

from rules.commands import (
    ApplyRoster,
    ChangePresence,
    Outgoing,
    PutRep,
    RemoveRep,
    RepCommand,
    RepProfile,
    ReportHeld,
    ReportJoin,
    RetireRep,
    SetHeldElsewhere,
    SetPresence,
    UpsertRep,
)

__all__ = ["Origin", "Joining", "MoveRefusal", "Refusal", "RepEntry", "RepTransition", "apply", "latest_profile",
           "profile_changes", "profile_digest"]

#: Where a rep's last applied change came from: the YAML (``PutRep.from_config``) or the API.
Origin: TypeAlias = Literal["config", "api"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Joining:
    """A question that waits for a team's answer (``ReportJoin``): a move to another team, or (its
    ``team_id`` the entry's) a new rep or a change in the rep's team.

    What the entry becomes when the team takes the rep in; until then the entry is the rep as
    they were (a new rep: in no team yet, ``RepEntry.member``).
    """

    team_id: str
    #: The move's number (``RepEntry.moves``), in the ``UpsertRep.join`` the team answers.
    move: int
    #: The profile as the entry will hold it (``None``: not known, see ``RepEntry.profile``).
    profile: RepProfile | None
    config_digest: str | None
    origin: Origin
    since: datetime
    #: The team asked holds the rep already: it said yes to a copy of an earlier question after
    #: its no to it (``RepEntry.refused_moves``). A no to this move must then let them go too.
    taken_in: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """A change of the rep that a team refused (a move, or a new rep or change in their team)."""

    team_id: str
    #: The team's reason: counts and bounds only, never a name or an address.
    reason: str
    at: datetime


#: The name ``move_refused`` was first kept under.
MoveRefusal = Refusal


@dataclass(frozen=True, slots=True, kw_only=True)
class RepEntry:
    rep_id: str
    team_id: str
    updated_at: datetime
    #: Fingerprint of the YAML profile last applied (``None``: never seeded from the YAML).
    config_digest: str | None = None
    #: The last number given to a question or a departure of the rep (each ``UpsertRep.join`` and
    #: each ``RemoveRep.move``): they grow, so an answer or a report is told apart from older ones.
    moves: int = 0
    #: The rep's profile as their team holds it, as last heard (``None``: not known, an entry from
    #: before it was kept); for a rep no team took, as last asked. A ``PutRep`` that leaves fields
    #: out takes them from here (or from the change waiting in their team, ``joining``).
    profile: RepProfile | None = None
    #: Teams the rep left while they may still hold leads there -> the move that left them.
    left: dict[str, int] = field(default_factory=dict)
    #: Teams the rep left -> how many leads the rep holds there (as last reported; absent: not
    #: reported yet since the move in ``left``).
    held_in: dict[str, int] = field(default_factory=dict)
    #: Where the last applied change came from (``None``: an entry from before this was kept).
    origin: Origin | None = None
    #: Retired by whom (``None``: active): ``"config"``, the YAML no longer names them (naming them
    #: again brings them back); ``"api"``, ``DELETE /v1/reps`` (an unchanged YAML entry does not).
    retired: Origin | None = None
    #: A move to another team not answered yet (``None``: none). (Between f9c1b98 and ``asked``, a
    #: question of the rep's own team was kept here too, ``joining.team_id == team_id``: still read.)
    joining: Joining | None = None
    #: The last move a team refused, until the rep's next change is applied (``None``: none).
    move_refused: Refusal | None = None
    #: Teams that said no to a move of the rep -> that move, while a copy of the question may still
    #: be answered (asked again, or sent again by a replay): the team may say yes to it, having
    #: made room, and then holds the rep without the directory having moved them. Kept until the
    #: team answers a later question or is sent ``RemoveRep`` (both come after every copy), not
    #: until the rep's next change (``move_refused``): a change does not make the copies go away.
    #: At most one per team (its last no).
    refused_moves: dict[str, int] = field(default_factory=dict)
    #: Whether ``team_id`` holds the rep as a member, as its last answer said (``False``: a new rep
    #: it has not taken yet or refused). For a retired rep: whether it did when they were retired
    #: (and stays so on a no to bringing them back), so a rep no team ever held is not shown nor
    #: counted as one a team lost (``in_team`` is false either way). An entry from before it was
    #: kept: ``True``.
    member: bool = True
    #: The last change in the rep's team that it refused, until a change there is taken (``None``:
    #: none): the entry keeps what the team holds, and a new rep stays in no team.
    refused: Refusal | None = None
    #: The number of the last answer read from the rep's team, or of the departure that made the
    #: earlier ones stale (a retirement): an older answer from it (a replay) says nothing new.
    answered: int = 0
    #: A question of the rep's team that a move replaced in ``joining`` before its answer was read
    #: (``None``: none): until that answer (or a later one from the team) is read, the directory
    #: does not know what the team holds. Asked again with the move (``_ask_again``); a change in
    #: the team, a yes to the move or a retirement makes it moot.
    unanswered: Joining | None = None
    #: A new rep or a change waiting for the answer of the rep's own team (``None``: none): kept out
    #: of ``joining``, so that a worker from before f9c1b98 (a rolling upgrade, a rollback), which
    #: ignores this field, sees nothing waiting. It would read a question in ``joining`` as a move
    #: and, on the team's yes, send ``RemoveRep`` to the rep's own team; and its ``PutRep`` would
    #: call that "move" off the same way. Never set together with ``joining``.
    asked: Joining | None = None

    @property
    def question_here(self) -> Joining | None:
        """The new rep or change waiting in the rep's own team (``asked``, or as kept before it)."""
        if self.asked is not None:
            return self.asked
        joining = self.joining
        return joining if joining is not None and joining.team_id == self.team_id else None

    @property
    def moving(self) -> Joining | None:
        """The move to another team waiting for that team's answer."""
        joining = self.joining
        return joining if joining is not None and joining.team_id != self.team_id else None

    @property
    def seeded(self) -> bool:
        """Whether the YAML made the rep's last change, so a YAML without them retires them.

        An entry from before ``origin`` was kept counts as the YAML's when the YAML ever seeded it:
        an API change since cannot be told apart, and the YAML having dropped the rep says enough.
        """
        return self.origin == "config" or (self.origin is None and self.config_digest is not None)

    @property
    def in_team(self) -> bool:
        """Whether the rep is a member of ``team_id``, active: what the team takes them for."""
        return self.member and self.retired is None

    @property
    def held_elsewhere(self) -> int:
        return sum(self.held_in.values())

    @property
    def awaiting_handover(self) -> bool:
        return any(team_id not in self.held_in for team_id in self.left)


@dataclass(frozen=True, slots=True, kw_only=True)
class RepTransition:
    entry: RepEntry | None
    outgoing: tuple[Outgoing, ...] = ()


def apply(entry: RepEntry | None, command: RepCommand, now: datetime) -> RepTransition:
    """Route a rep command to the rep's team; a team change removes the rep from the old team.

    The rules below keep the question waiting, a move or one of the rep's own team, in ``joining``
    (at most one waits); the entry written keeps the second kind in ``asked`` (see there).
    """
    inner = _unpacked(entry)
    transition = _apply(inner, command, now)
    if transition.entry is inner or transition.entry is None:
        return RepTransition(entry=entry if transition.entry is inner else None, outgoing=transition.outgoing)
    packed = _packed(transition.entry)
    if packed == entry:
        return RepTransition(entry=entry, outgoing=transition.outgoing)
    return RepTransition(entry=packed, outgoing=transition.outgoing)


def _unpacked(entry: RepEntry | None) -> RepEntry | None:
    if entry is None or entry.asked is None:
        return entry
    return replace(entry, joining=entry.asked, asked=None)


def _packed(entry: RepEntry) -> RepEntry:
    joining = entry.joining
    if joining is None or joining.team_id != entry.team_id:
        return entry
    return replace(entry, joining=None, asked=joining)


def _apply(entry: RepEntry | None, command: RepCommand, now: datetime) -> RepTransition:
    if isinstance(command, PutRep):
        return _put(entry, command, now)
    if isinstance(command, ReportHeld):
        return _report(entry, command, now)
    if isinstance(command, ReportJoin):
        return _joined(entry, command, now)
    if isinstance(command, RetireRep):
        return _retire(entry, "api", command.reason, now)
    if isinstance(command, ApplyRoster):
        if entry is None or entry.retired is not None or not entry.seeded or entry.rep_id in command.rep_ids:
            return RepTransition(entry=entry)
        return _retire(entry, "config", f"retired: not in the config any more (digest {command.config_digest})", now)
    assert isinstance(command, ChangePresence)
    if entry is None or entry.retired is not None:
        return RepTransition(entry=entry)  # a retired rep has no team to be present in
    return RepTransition(entry=entry, outgoing=(Outgoing(channel="team.commands", key=entry.team_id, value=SetPresence(
        team_id=entry.team_id, rep_id=command.rep_id, status=command.status, at=now)),))


def _put(entry: RepEntry | None, command: PutRep, now: datetime) -> RepTransition:
    waiting = None if entry is None else entry.joining if entry.joining is not None else entry.unanswered
    if (entry is not None and waiting is not None and command.from_config
            and waiting.config_digest == profile_digest(command.profile)):
        # The YAML, unchanged, sent again (a worker's start) while a move waits for its answer: ask
        # the team again, the same move. Its answer may never come (a team batch left out as too
        # big, a command it could not apply or decode), and nothing else would ask again. The team
        # answers a repeat as the first (it holds the rep already, or takes them in now); the
        # directory reads the first answer and no other (``_joined``). The same for a change in the
        # rep's team that a move replaced, the move since refused (``unanswered``): the API's change
        # (it carries the YAML's digest) is asked again, not overwritten by the file it was made over.
        return RepTransition(entry=entry, outgoing=_ask_again(entry, now))
    called_off: tuple[Outgoing, ...] = ()
    if entry is not None and entry.joining is not None and entry.joining.team_id != entry.team_id:
        entry, called_off = _call_off(entry, now)
    # A change waiting in the rep's team is not called off: the next question replaces it, and
    # the team's answers, read in the order it gave them, each say what it holds (``_answered``).
    transition = _put_now(entry, command, now)
    return RepTransition(entry=transition.entry, outgoing=called_off + transition.outgoing)


def _put_now(entry: RepEntry | None, command: PutRep, now: datetime) -> RepTransition:
    team_id = command.profile.team_id
    profile, keep = command.profile, command.keep
    base = latest_profile(entry)
    if entry is not None and keep:
        if base is not None:
            # An update names what it changes; what it leaves out stays (the webhook above all).
            profile = replace(profile, **{name: getattr(base, name) for name in keep if name != "team_id"})
            keep = ()
        # else: the team fills them from the rep's profile there (UpsertRep.keep).
    elif entry is None:
        keep = ()
    digest = entry.config_digest if entry is not None else None
    if command.from_config:
        if (entry is not None and entry.config_digest == profile_digest(command.profile)
                and entry.retired != "config" and entry.joining is None and entry.unanswered is None):
            # The YAML did not change: keep what the API changed (a DELETE included). A rep the
            # YAML's roster retired and that it names again comes back. Not while a change in the
            # rep's team waits for its answer (another file's: the API's is asked again above):
            # what the team holds is not known, and this file is the latest word.
            return RepTransition(entry=entry)
        digest = profile_digest(command.profile)
    origin: Origin = "config" if command.from_config else "api"
    if entry is not None and entry.team_id != team_id:
        return _ask_to_join(entry, command, profile, keep, digest, origin, now)
    if entry is None:
        entry = RepEntry(rep_id=command.rep_id, team_id=team_id, updated_at=now, member=False, origin=origin)
    # A new rep, or a change in the rep's team: asked of the team as a move is, and shown as taken
    # only once the team says so (``_answered``); until then the entry is the rep as they were.
    move = entry.moves + 1
    joining = Joining(team_id=team_id, move=move, profile=None if keep else _known(profile, base),
                      config_digest=digest, origin=origin, since=now)
    # A question replaced earlier is answered before this one: this one's answer says it all.
    asked = replace(entry, moves=move, joining=joining, updated_at=now, unanswered=None)
    return RepTransition(entry=asked, outgoing=(_in_team_request(asked, profile, keep, move, now),))


def _in_team_request(entry: RepEntry, profile: RepProfile, keep: tuple[str, ...], move: int,
                     now: datetime) -> Outgoing:
    """The ``UpsertRep`` that asks the rep's own team to take the rep (new, changed, or back), as ``move``."""
    left, held_in = _back_in(entry, entry.team_id)
    settled = replace(entry, left=left, held_in=held_in)
    return Outgoing(channel="team.commands", key=entry.team_id, value=UpsertRep(
        team_id=entry.team_id, profile=profile, at=now, held_elsewhere=settled.held_elsewhere,
        awaiting_handover=settled.awaiting_handover, keep=keep, join=move))


def _back_in(entry: RepEntry, team_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """``left`` and ``held_in`` with the rep in ``team_id``: the leads they hold there count there, as a member's."""
    if team_id not in entry.left and team_id not in entry.held_in:
        return entry.left, entry.held_in
    return ({k: v for k, v in entry.left.items() if k != team_id},
            {k: v for k, v in entry.held_in.items() if k != team_id})


def latest_profile(entry: RepEntry | None) -> RepProfile | None:
    """The rep's profile as last asked for: a new rep or a change waiting in their team, else the entry's."""
    if entry is None:
        return None
    asked = entry.question_here or entry.unanswered  # a change in the team a move replaced (review s17-e, E2)
    if asked is not None and asked.profile is not None:
        return asked.profile
    return entry.profile


def _ask_to_join(entry: RepEntry, command: PutRep, profile: RepProfile, keep: tuple[str, ...],
                 digest: str | None, origin: Origin, now: datetime) -> RepTransition:
    """Ask the new team to take the rep in; the rep stays in their team until it answers (``_joined``).

    The new team holds them not eligible (``awaiting_handover``) until the team they leave has
    said what they hold there, which it says once the move is answered and it gets ``RemoveRep``.
    """
    team_id = profile.team_id
    move = entry.moves + 1
    joining = Joining(team_id=team_id, move=move, profile=None if keep else _known(profile, latest_profile(entry)),
                      config_digest=digest, origin=origin, since=now)
    unanswered = entry.unanswered
    again: tuple[Outgoing, ...] = ()
    if entry.joining is not None and entry.joining.team_id == entry.team_id:
        unanswered = entry.joining  # a change in the rep's team, not answered yet: kept (``unanswered``)
    elif unanswered is not None and unanswered.profile is not None:
        # Still not answered (lost, maybe): asked again with this move, so the team says what it holds.
        again = (_in_team_request(entry, unanswered.profile, (), unanswered.move, now),)
    return RepTransition(entry=replace(entry, moves=move, joining=joining, updated_at=now, unanswered=unanswered),
                         outgoing=again + (_join_request(entry, profile, keep, team_id, move, now),))


def _join_request(entry: RepEntry, profile: RepProfile, keep: tuple[str, ...], team_id: str, move: int,
                  now: datetime) -> Outgoing:
    """The ``UpsertRep`` that asks ``team_id`` to take the rep in, as move ``move``."""
    # Leads held in the teams left, but the new team's (it counts its own) and the one left now
    # (it reports once the move is answered).
    held = sum(n for k, n in entry.held_in.items() if k not in (team_id, entry.team_id))
    return Outgoing(channel="team.commands", key=team_id, value=UpsertRep(
        team_id=team_id, profile=profile, at=now, held_elsewhere=held, awaiting_handover=True, keep=keep, join=move))


def _ask_again(entry: RepEntry, now: datetime) -> tuple[Outgoing, ...]:
    """The move waiting for its answer, asked of its team again (nothing when its profile is not known).

    The profile is the one the entry will hold (``Joining.profile``): the one first sent, its
    secret filled from the entry when that one had none, as the team would have kept it.
    """
    joining, unanswered = entry.joining, entry.unanswered
    again: tuple[Outgoing, ...] = ()
    if unanswered is not None and unanswered.profile is not None:
        # The change in the rep's team the move replaced: its answer may be the lost one.
        again = (_in_team_request(entry, unanswered.profile, (), unanswered.move, now),)
    if joining is None or joining.profile is None:
        return again  # a partial update of an entry without a profile: the fields it left out are not known
    if joining.team_id == entry.team_id:
        return again + (_in_team_request(entry, joining.profile, (), joining.move, now),)
    return again + (_join_request(entry, joining.profile, (), joining.team_id, joining.move, now),)


def _joined(entry: RepEntry | None, command: ReportJoin, now: datetime) -> RepTransition:
    """The team a move asked answered: the rep moves (the old team gets ``RemoveRep``), or stays.

    An answer from the rep's own team is about a new rep or a change there (``_answered``).
    """
    if entry is None:
        return RepTransition(entry=None)
    if command.team_id == entry.team_id:
        return _answered(entry, command, now)
    joining = entry.joining
    if joining is None or (joining.team_id, joining.move) != (command.team_id, command.move):
        # About a move called off (its team got RemoveRep then), one answered already (a replay,
        # or a copy of a question asked again), or a yes after a no.
        return _late_answer(entry, command, now)
    # The team's answers are read in the order it gave them: every copy of a question it refused
    # before was answered before this one, so that refusal is over (replaced by this one if no).
    refused_moves = _without_teams(entry.refused_moves, command.team_id)
    if command.refused is not None:
        # The rep stays where they were, with the profile they had; the refusal is kept to be seen.
        refusal = MoveRefusal(team_id=command.team_id, reason=command.refused, at=command.at)
        if joining.taken_in:
            # The team holds the rep already (a yes to an earlier question, read after its no):
            # it keeps them on a no, so it is told to let them go, as a call-off does.
            let_go, outgoing = _call_off(replace(entry, refused_moves=refused_moves), now,
                                         reason=f"move refused by team {command.team_id}, which held the rep")
            return RepTransition(entry=replace(let_go, move_refused=refusal, updated_at=now), outgoing=outgoing)
        stayed = replace(entry, joining=None, move_refused=refusal, updated_at=now,
                         refused_moves={**refused_moves, command.team_id: command.move})
        # A change in their team the move replaced, not answered yet: asked again, so that team says
        # what it holds (its answer may be the one lost; nothing else would ask for the API's).
        unanswered = entry.unanswered
        again = () if unanswered is None or unanswered.profile is None else (
            _in_team_request(stayed, unanswered.profile, (), unanswered.move, now),)
        return RepTransition(entry=stayed, outgoing=again)
    team_id, old = joining.team_id, entry.team_id
    # Back in a team they left: that team counts its own leads again (its departed rep became a
    # member with them), so it is no longer a team "left". The team left now reports again.
    left = {**{k: v for k, v in entry.left.items() if k != team_id}, old: joining.move}
    held_in = {k: v for k, v in entry.held_in.items() if k not in (team_id, old)}
    profile = command.profile if command.member and command.profile is not None else joining.profile
    updated = RepEntry(rep_id=entry.rep_id, team_id=team_id, updated_at=now, config_digest=joining.config_digest,
                       profile=profile, moves=entry.moves, left=left, held_in=held_in,
                       origin=joining.origin, refused_moves=_without_teams(refused_moves, old), answered=joining.move)
    return RepTransition(entry=updated, outgoing=(Outgoing(channel="team.commands", key=old, value=RemoveRep(
        team_id=old, rep_id=entry.rep_id, reason=f"moved to team {team_id}", at=now, move=joining.move)),))


def _answered(entry: RepEntry, command: ReportJoin, now: datetime) -> RepTransition:
    """The rep's own team answered: a new rep or a change there was taken, or refused.

    The team answers its questions in the order they were asked, each answer saying what it holds
    after it (``ReportJoin.member`` and ``profile``), so the entry takes that as it comes, the
    answer to a change replaced since included: the later one may be refused, and the team then
    holds the earlier one. A yes makes the rep a member again (a retired rep brought back), and a
    no to the change waiting keeps the refusal to be seen (``refused``). An answer older than one
    read, or than a retirement, is a replay: the team has said or been told since.
    """
    if command.move < entry.answered:
        return RepTransition(entry=entry)
    joining = entry.joining
    waited = joining if joining is not None and (joining.team_id, joining.move) == (command.team_id, command.move) \
        else None
    member, profile = entry.member, entry.profile
    if command.member is not None and not (command.refused is not None and entry.retired is not None):
        member = command.member
        profile = command.profile if command.profile is not None else profile
    elif command.refused is None:
        # A yes from a worker older than ``member``: the team holds what it was asked to. Asked by a
        # question replaced since, that profile is not kept: not known, rather than the one from
        # before it (a later partial PUT would fill from that one, and take the team back to it);
        # the team then fills what a PUT leaves out from what it holds (``UpsertRep.keep``).
        member = True
        unanswered = entry.unanswered
        if waited is not None:
            profile = waited.profile if waited.profile is not None else profile
        elif unanswered is not None and (unanswered.team_id, unanswered.move) == (command.team_id, command.move):
            profile = unanswered.profile
        elif joining is not None and joining.team_id == command.team_id and joining.move > command.move:
            # Only when a newer question to this team waits: a late or repeated yes to a move an
            # old directory already read keeps the profile (review s17-e, E1).
            profile = None
    if waited is not None and profile is None and not member:
        profile = waited.profile  # a new rep no team took: kept as asked, for the next PUT to fill from
    unanswered = entry.unanswered if entry.unanswered is not None and entry.unanswered.move > command.move else None
    updated = replace(entry, member=member, profile=profile, answered=command.move, updated_at=now,
                      refused_moves=_without_teams(entry.refused_moves, command.team_id), unanswered=unanswered)
    if waited is not None:
        updated = replace(updated, joining=None)
        if command.refused is not None:
            updated = replace(updated, refused=Refusal(team_id=command.team_id, reason=command.refused, at=command.at))
        else:
            updated = replace(updated, config_digest=waited.config_digest, origin=waited.origin)
    if command.refused is None:
        # Taken: a member (back, if retired), whose leads in this team count as its own again.
        left, held_in = _back_in(updated, command.team_id)
        updated = replace(updated, member=True, retired=None, left=left, held_in=held_in, refused=None,
                          move_refused=None)
    if replace(updated, updated_at=entry.updated_at) == entry:
        return RepTransition(entry=entry)  # the same answer again (a replay): nothing to write
    return RepTransition(entry=updated)


def _late_answer(entry: RepEntry, command: ReportJoin, now: datetime) -> RepTransition:
    """An answer that is not the one the waiting move waits for: mostly nothing to do.

    A move called off had its team get ``RemoveRep`` after every copy of the question; a move taken
    made the team the rep's; another copy of a refused question says no again. What does matter is
    a yes to a question the team refused before (``refused_moves``), from a copy of it asked again
    or sent again: the team took the rep in (it made room in between) while the directory keeps
    them where the no left them. That team is told to let them go (``RemoveRep`` under that move,
    as a call-off), unless a move to it waits for its answer: the rep is in it already, and the
    answer says whether they stay (a yes moves them there, a no lets them go, ``Joining.taken_in``).
    """
    team_id, move = command.team_id, command.move
    if command.refused is not None or entry.refused_moves.get(team_id) != move:
        return RepTransition(entry=entry)
    entry = replace(entry, refused_moves=_without_teams(entry.refused_moves, team_id), updated_at=now)
    joining = entry.joining
    if joining is not None and joining.team_id == team_id:
        return RepTransition(entry=replace(entry, joining=replace(joining, taken_in=True)))
    stray = replace(entry, joining=Joining(team_id=team_id, move=move, profile=None, config_digest=None,
                                           origin="api", since=now))
    let_go, outgoing = _call_off(stray, now, reason=f"took the rep in on move {move} after refusing it")
    return RepTransition(entry=replace(let_go, joining=entry.joining), outgoing=outgoing)


def _call_off(entry: RepEntry, now: datetime, *, reason: str | None = None) -> tuple[RepEntry, tuple[Outgoing, ...]]:
    """Call off the move waiting for its answer: the team asked drops the rep if it took them in.

    Its ``RemoveRep`` carries the move's number. Where the rep had left that team holding leads,
    it reports them under this number from now on (``rules.team._remove``), so the directory
    waits for that report as after any departure.
    """
    joining = entry.joining
    assert joining is not None
    left, held_in = dict(entry.left), dict(entry.held_in)
    if joining.team_id in left:
        left[joining.team_id] = joining.move
        held_in.pop(joining.team_id, None)
    # The RemoveRep comes after every copy of every question sent to that team: none is open.
    refused_moves = _without_teams(entry.refused_moves, joining.team_id)
    return replace(entry, joining=None, left=left, held_in=held_in, refused_moves=refused_moves), (Outgoing(
        channel="team.commands", key=joining.team_id, value=RemoveRep(
            team_id=joining.team_id, rep_id=entry.rep_id, at=now, move=joining.move,
            reason=reason or f"move called off: changed again before team {joining.team_id} answered")),)


def _without_teams(refused_moves: dict[str, int], *team_ids: str) -> dict[str, int]:
    if not any(team_id in refused_moves for team_id in team_ids):
        return refused_moves
    return {k: v for k, v in refused_moves.items() if k not in team_ids}


def _retire(entry: RepEntry | None, by: Origin, reason: str, now: datetime) -> RepTransition:
    """Take the rep out of their team as a move would, to no team: no new leads, theirs stay theirs.

    The team answers ``RemoveRep`` with ``ReportHeld`` under the new move number, as for a move,
    so the directory knows what the rep still holds there if they come back in another team.
    """
    if entry is None:
        return RepTransition(entry=None)
    called_off: tuple[Outgoing, ...] = ()
    asked_here = entry.joining is not None and entry.joining.team_id == entry.team_id
    if entry.joining is not None and not asked_here:
        entry, called_off = _call_off(entry, now)
    if asked_here:
        # A change waiting in the rep's team (a retired rep brought back, maybe): the RemoveRep below
        # comes after it, and its answer, older than the retirement, says nothing (``_answered``).
        entry = replace(entry, joining=None)
    elif entry.retired is not None:
        # Already out of the team. A DELETE of a rep the roster retired makes it the API's: the
        # YAML naming them again, unchanged, no longer brings them back.
        if by == "api" and entry.retired != "api":
            entry = replace(entry, retired="api", origin="api", updated_at=now)
        return RepTransition(entry=entry, outgoing=called_off)
    moves = entry.moves + 1
    left = {**{k: v for k, v in entry.left.items() if k != entry.team_id}, entry.team_id: moves}
    held_in = {k: v for k, v in entry.held_in.items() if k != entry.team_id}
    updated = replace(entry, retired=by, origin=by, moves=moves, left=left, held_in=held_in, updated_at=now,
                      refused_moves=_without_teams(entry.refused_moves, entry.team_id),
                      answered=moves, unanswered=None)
    return RepTransition(entry=updated, outgoing=called_off + (Outgoing(
        channel="team.commands", key=entry.team_id, value=RemoveRep(
            team_id=entry.team_id, rep_id=entry.rep_id, reason=reason, at=now, move=moves)),))


def _known(profile: RepProfile, base: RepProfile | None) -> RepProfile:
    """The profile as the team will hold it: an update without a secret keeps the one it had."""
    if profile.webhook_secret is None and base is not None:
        return replace(profile, webhook_secret=base.webhook_secret)
    return profile


def _report(entry: RepEntry | None, command: ReportHeld, now: datetime) -> RepTransition:
    """A team the rep left says how many of its leads the rep still holds: tell the rep's team."""
    if entry is None or entry.left.get(command.team_id) != command.move:
        # About an earlier departure (the rep came back and left again since), or the rep is back
        # in that team, which counts its own leads: nothing to change.
        return RepTransition(entry=entry)
    left, held_in = dict(entry.left), dict(entry.held_in)
    if command.open_leads > 0:
        held_in[command.team_id] = command.open_leads
    else:
        left.pop(command.team_id)  # nothing left there: the team's later reports do not matter
        held_in.pop(command.team_id, None)
    updated = replace(entry, left=left, held_in=held_in, updated_at=now)
    if entry.retired is not None:
        return RepTransition(entry=updated)  # no current team to tell; a PutRep that brings them back does
    if (updated.held_elsewhere, updated.awaiting_handover) == (entry.held_elsewhere, entry.awaiting_handover):
        return RepTransition(entry=updated)
    return RepTransition(entry=updated, outgoing=(Outgoing(channel="team.commands", key=entry.team_id, value=SetHeldElsewhere(
        team_id=entry.team_id, rep_id=entry.rep_id, open_leads=updated.held_elsewhere,
        settled=not updated.awaiting_handover, at=now)),))


def profile_digest(profile: RepProfile) -> str:
    """A stable fingerprint of a profile (the secret included, so a rotated secret is applied)."""
    return hashlib.sha256(orjson.dumps(asdict(profile), option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


#: Profile fields whose values may be logged: ids, numbers, codes. The others (the name, the
#: e-mail, the webhook URL and secret) are personal data or secrets: only their change is told.
_LOGGABLE_FIELDS = ("team_id", "capacity", "daily_cap", "weekly_cap", "weight", "skills", "languages",
                    "territories", "timezone", "working_hours", "holidays_country", "team_strategy")
_UNTOLD_FIELDS = ("name", "email", "webhook_url", "webhook_secret")


def profile_changes(before: RepProfile | None, after: RepProfile) -> list[str]:
    """What changes from ``before`` to ``after``, one ``"field old → new"`` per changed field, fit
    for a log: ids and numbers with their values, personal data and secrets as ``"email changed"``.
    Empty when nothing differs or ``before`` is not known."""
    if before is None:
        return []
    changes = [f"{name} {_shown(getattr(before, name))} → {_shown(getattr(after, name))}"
               for name in _LOGGABLE_FIELDS if getattr(before, name) != getattr(after, name)]
    changes += [f"{name} changed" for name in _UNTOLD_FIELDS if getattr(before, name) != getattr(after, name)]
    return changes


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    return str(value)

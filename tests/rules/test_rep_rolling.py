"""The rep directory beside workers from before f9c1b98 (a rolling upgrade, or a rollback).

Since f9c1b98 a new rep or a change in the rep's own team is a numbered question the team answers
(``ReportJoin`` from the rep's own team). A directory from before it knows only moves: it reads a
question in ``RepEntry.joining`` as a move, and on the team's yes sends ``RemoveRep`` to the rep's
own team ("moved to team t"), which then holds the rep no more while the directory says it does;
its ``PutRep`` calls that "move" off, ``RemoveRep`` again (the rep deleted and made again, presence
reset). So the question of the rep's own team is kept in ``RepEntry.asked``, a field such a worker
does not know (pydantic leaves it out when it decodes the entry), and it sees nothing waiting.

The old worker's decisions are frozen below from ``f9c1b98^:rules/reps.py`` (``_put``, ``_joined``,
``_late_answer``, ``_call_off``), only as far as which teams get ``RemoveRep``, and are fed what
the codec writes (JSON), which is what such a worker would decode. Checked once by hand against the
whole of the old ``rules`` package (``git archive f9c1b98^ rules``) with the same entry and answer.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from rules import reps
from rules.commands import PutRep, RepProfile, ReportJoin
from rules.reps import Joining, RepEntry
from streams.codec import decode, encode
from tests.rules._sim import T0, Bus, TeamDriver, values

#: The fields of ``RepEntry`` a worker from before f9c1b98 decodes; it drops the others.
_OLD_FIELDS = ("rep_id", "team_id", "updated_at", "config_digest", "moves", "profile", "left", "held_in", "origin",
               "retired", "joining", "move_refused", "refused_moves")


def _as_old_worker_reads(value: object) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(encode(value))["data"]
    if isinstance(value, RepEntry):
        data = {k: v for k, v in data.items() if k in _OLD_FIELDS}
    return data


def old_directory_removes(entry: dict[str, Any], command: dict[str, Any], kind: str) -> list[str]:
    """The teams a directory from before f9c1b98 sends ``RemoveRep`` on reading ``command``.

    Frozen from ``f9c1b98^:rules/reps.py``. ``PutRep``: the YAML unchanged while a move waits asks
    it again (nothing removed); any other call off the waiting move (``_call_off``, its team). A
    ``ReportJoin`` matching ``joining`` (team and move): a yes "moves" the rep, the team it was in
    gets ``RemoveRep``; a no to a team that took the rep in already lets it go. Any other answer
    (``_late_answer``): only a yes to a move that team refused before, from another team than the
    rep's and than the one a waiting move asks, gets that team ``RemoveRep``.
    """
    joining = entry["joining"]
    if kind == "PutRep":
        # The ask-again case needs the YAML's digest; the callers here send API PUTs.
        assert not command["from_config"]
        return [joining["team_id"]] if joining is not None else []
    assert kind == "ReportJoin"
    team_id, move, refused = command["team_id"], command["move"], command["refused"]
    if joining is not None and (joining["team_id"], joining["move"]) == (team_id, move):
        if refused is None:
            return [entry["team_id"]]
        return [joining["team_id"]] if joining["taken_in"] else []
    if refused is not None or entry["refused_moves"].get(team_id) != move or team_id == entry["team_id"]:
        return []
    if joining is not None and joining["team_id"] == team_id:
        return []
    return [team_id]


def _put(capacity: int) -> PutRep:
    return PutRep(rep_id="ana", profile=RepProfile(rep_id="ana", team_id="t", name="Ana", capacity=capacity,
                                                   webhook_url="https://hooks.test/ana", webhook_secret="whsec_x"),
                  at=T0)


def _ana_in_team_with_a_change_asked() -> tuple[Bus, RepEntry, ReportJoin]:
    """``ana`` is in team ``t``; an API PUT asks capacity 3 of ``t`` (question 2), which says yes."""
    bus = Bus()
    bus.send("rep.commands", "ana", _put(2))
    asked = reps.apply(bus.directory["ana"], _put(3), T0)
    assert asked.entry is not None
    [yes] = values(list(bus.teams["t"].send(asked.outgoing[0].value, T0).outgoing), "rep.commands", ReportJoin)
    assert (yes.team_id, yes.move, yes.refused, yes.member) == ("t", 2, None, True)
    return bus, asked.entry, yes


def test_an_old_directory_sees_no_move_in_a_question_of_the_reps_own_team() -> None:
    bus, entry, yes = _ana_in_team_with_a_change_asked()
    old_entry = _as_old_worker_reads(entry)
    assert old_entry["joining"] is None
    # The team's yes, read by an old worker: nothing sent (it was "moved to team t" before).
    assert old_directory_removes(old_entry, _as_old_worker_reads(yes), "ReportJoin") == []
    # A PUT handled by an old worker while the question waits calls nothing off.
    assert old_directory_removes(old_entry, _as_old_worker_reads(_put(4)), "PutRep") == []
    # The same question as kept between f9c1b98 and ``asked`` (in ``joining``) is what went wrong:
    head = replace_question_into_joining(entry)
    assert old_directory_removes(_as_old_worker_reads(head), _as_old_worker_reads(yes), "ReportJoin") == ["t"]
    assert old_directory_removes(_as_old_worker_reads(head), _as_old_worker_reads(_put(4)), "PutRep") == ["t"]
    # The new directory reads the yes as before: ana in t with capacity 3, nothing sent.
    taken = reps.apply(decode(encode(entry)), yes, T0)
    assert taken.outgoing == () and taken.entry is not None and taken.entry.in_team
    assert taken.entry.profile == bus.team("t").reps["ana"].profile and taken.entry.profile.capacity == 3


def replace_question_into_joining(entry: RepEntry) -> RepEntry:
    assert entry.asked is not None and entry.joining is None
    return replace(entry, joining=entry.asked, asked=None)


def test_an_entry_written_before_asked_is_read_and_rewritten_with_the_question_in_asked() -> None:
    """A question of the rep's own team kept in ``joining`` (f9c1b98 up to ``asked``) is still read
    as one, and the entry written after it keeps any question in ``asked``."""
    bus, entry, yes = _ana_in_team_with_a_change_asked()
    head = replace_question_into_joining(entry)
    taken = reps.apply(head, yes, T0)
    assert taken.outgoing == () and taken.entry is not None and taken.entry.in_team
    assert (taken.entry.joining, taken.entry.asked, taken.entry.profile) == (
        None, None, bus.team("t").reps["ana"].profile)
    again = reps.apply(head, _put(5), T0)
    assert again.entry is not None and again.entry.joining is None
    assert isinstance(again.entry.asked, Joining) and again.entry.asked.move == 3
    assert [o.key for o in again.outgoing] == ["t"]  # the new question only: nothing called off

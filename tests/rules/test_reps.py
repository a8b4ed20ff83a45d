"""The rep directory: rep commands become commands to the rep's (one) team."""
from __future__ import annotations

import pytest

from rules import reps
from rules.commands import ChangePresence, Outgoing, PutRep, RemoveRep, RepProfile, SetPresence, UpsertRep
from rules.reps import RepEntry
from tests.rules._sim import T0


def put(team_id: str) -> PutRep:
    return PutRep(rep_id="rep-1", profile=RepProfile(rep_id="rep-1", team_id=team_id, capacity=3), at=T0)


def test_new_rep_is_upserted_into_its_team() -> None:
    result = reps.apply(None, put("emea"), T0)
    assert result.entry == RepEntry(rep_id="rep-1", team_id="emea", updated_at=T0)
    assert result.outgoing == (Outgoing(channel="team.commands", key="emea",
                                        value=UpsertRep(team_id="emea", profile=put("emea").profile, at=T0)),)


def test_same_team_is_just_an_upsert() -> None:
    result = reps.apply(RepEntry(rep_id="rep-1", team_id="emea", updated_at=T0), put("emea"), T0)
    assert [type(m.value) for m in result.outgoing] == [UpsertRep]


def test_moving_team_removes_the_rep_from_the_old_team_first() -> None:
    result = reps.apply(RepEntry(rep_id="rep-1", team_id="emea", updated_at=T0), put("amer"), T0)
    assert result.entry is not None and result.entry.team_id == "amer"
    remove, upsert = result.outgoing
    assert (remove.channel, remove.key) == ("team.commands", "emea")
    assert remove.value == RemoveRep(team_id="emea", rep_id="rep-1", reason="moved to team amer", at=T0, move=1)
    assert (upsert.channel, upsert.key) == ("team.commands", "amer")
    assert isinstance(upsert.value, UpsertRep) and upsert.value.team_id == "amer"
    # Not eligible in amer until emea says how many of its leads the rep still holds.
    assert upsert.value.awaiting_handover and result.entry.left == {"emea": 1}


@pytest.mark.parametrize("status", ["available", "busy", "offline"])
def test_presence_for_an_unknown_rep_emits_nothing(status: str) -> None:
    result = reps.apply(None, ChangePresence(rep_id="ghost", status=status, at=T0), T0)  # type: ignore[arg-type]
    assert result.entry is None
    assert result.outgoing == ()


@pytest.mark.parametrize("status", ["available", "busy", "offline"])
def test_presence_goes_to_the_reps_team(status: str) -> None:
    entry = RepEntry(rep_id="rep-1", team_id="emea", updated_at=T0)
    result = reps.apply(entry, ChangePresence(rep_id="rep-1", status=status, at=T0), T0)  # type: ignore[arg-type]
    assert result.entry == entry
    assert result.outgoing == (Outgoing(channel="team.commands", key="emea", value=SetPresence(
        team_id="emea", rep_id="rep-1", status=status, at=T0)),)  # type: ignore[arg-type]


def seed(capacity: int = 3, team_id: str = "emea") -> PutRep:
    return PutRep(rep_id="rep-1", profile=RepProfile(rep_id="rep-1", team_id=team_id, capacity=capacity), at=T0,
                  from_config=True)


def test_the_yaml_seed_is_applied_once_and_api_changes_survive_restarts() -> None:
    first = reps.apply(None, seed(), T0)
    assert first.entry is not None and first.entry.config_digest is not None
    assert [type(m.value) for m in first.outgoing] == [UpsertRep]
    # The API updates the rep; the entry keeps the YAML's fingerprint.
    api = reps.apply(first.entry, put("emea"), T0)
    assert api.entry is not None and api.entry.config_digest == first.entry.config_digest
    # A restart seeds the same YAML again: nothing is sent, the API's change stands.
    restart = reps.apply(api.entry, seed(), T0)
    assert restart.outgoing == () and restart.entry == api.entry
    # The YAML itself changed: that change is applied.
    edited = reps.apply(api.entry, seed(capacity=9), T0)
    (upsert,) = [m.value for m in edited.outgoing]
    assert isinstance(upsert, UpsertRep) and upsert.profile.capacity == 9
    assert edited.entry is not None and edited.entry.config_digest != first.entry.config_digest

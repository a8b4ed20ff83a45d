"""The rep directory: rep commands become commands to the rep's (one) team."""
from __future__ import annotations

import pytest

from rules import reps
from rules.commands import (
    ChangePresence,
    Outgoing,
    PutRep,
    RemoveRep,
    RepProfile,
    ReportJoin,
    SetPresence,
    UpsertRep,
)
from rules.reps import RepEntry
from tests.rules._sim import T0, Bus, taken_in


def put(team_id: str) -> PutRep:
    return PutRep(rep_id="rep-1", profile=RepProfile(rep_id="rep-1", team_id=team_id, capacity=3), at=T0)


yes = taken_in


def test_a_new_rep_is_asked_of_their_team_and_in_it_once_it_says_yes() -> None:
    result = reps.apply(None, put("emea"), T0)
    assert result.entry is not None
    assert (result.entry.team_id, result.entry.member, result.entry.profile, result.entry.in_team) == (
        "emea", False, None, False)
    assert result.entry.asked is not None and result.entry.asked.team_id == "emea"
    assert result.outgoing == (Outgoing(channel="team.commands", key="emea",
                                        value=UpsertRep(team_id="emea", profile=put("emea").profile, at=T0, join=1)),)
    assert yes(result) == RepEntry(rep_id="rep-1", team_id="emea", updated_at=T0, profile=put("emea").profile,
                                   origin="api", moves=1, answered=1)


def test_same_team_is_just_an_upsert() -> None:
    result = reps.apply(RepEntry(rep_id="rep-1", team_id="emea", updated_at=T0), put("emea"), T0)
    assert [type(m.value) for m in result.outgoing] == [UpsertRep]
    assert result.outgoing[0].key == "emea" and result.outgoing[0].value.join == 1  # type: ignore[attr-defined]


def test_moving_team_asks_the_new_team_first_and_removes_the_rep_from_the_old_one_on_its_yes() -> None:
    result = reps.apply(RepEntry(rep_id="rep-1", team_id="emea", updated_at=T0), put("amer"), T0)
    assert result.entry is not None and result.entry.team_id == "emea"  # still emea's until amer answers
    (upsert,) = result.outgoing
    assert (upsert.channel, upsert.key) == ("team.commands", "amer")
    assert isinstance(upsert.value, UpsertRep) and upsert.value.team_id == "amer" and upsert.value.join == 1
    # Not eligible in amer until emea says how many of its leads the rep still holds.
    assert upsert.value.awaiting_handover
    answered = reps.apply(result.entry, ReportJoin(rep_id="rep-1", team_id="amer", move=1, refused=None, at=T0), T0)
    assert answered.entry is not None and answered.entry.team_id == "amer" and answered.entry.joining is None
    (remove,) = answered.outgoing
    assert (remove.channel, remove.key) == ("team.commands", "emea")
    assert remove.value == RemoveRep(team_id="emea", rep_id="rep-1", reason="moved to team amer", at=T0, move=1)
    assert answered.entry.left == {"emea": 1} and answered.entry.profile == put("amer").profile


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
    asked = reps.apply(None, seed(), T0)
    assert [type(m.value) for m in asked.outgoing] == [UpsertRep]
    first = yes(asked)
    assert first.config_digest is not None
    # The API updates the rep; the entry keeps the YAML's fingerprint.
    api = yes(reps.apply(first, put("emea"), T0))
    assert api.config_digest == first.config_digest
    # A restart seeds the same YAML again: nothing is sent, the API's change stands.
    restart = reps.apply(api, seed(), T0)
    assert restart.outgoing == () and restart.entry == api
    # The YAML itself changed: that change is applied.
    edited = reps.apply(api, seed(capacity=9), T0)
    (upsert,) = [m.value for m in edited.outgoing]
    assert isinstance(upsert, UpsertRep) and upsert.profile.capacity == 9
    assert yes(edited).config_digest != first.config_digest


# --- an update keeps what it leaves out (PUT /v1/reps with only some fields) ---------------


def _eve(team_id: str = "direct", **fields: object) -> RepProfile:
    return RepProfile(rep_id="eve", team_id=team_id, **fields)  # type: ignore[arg-type]


FULL = _eve(name="Eve", capacity=3, weight=2, skills=("fintech",), webhook_url="https://hooks.test/eve",
            webhook_secret="whsec_eve")
KEEP = tuple(f for f in ("name", "daily_cap", "weight", "skills", "languages", "territories", "timezone",
                         "webhook_url", "webhook_secret", "email", "weekly_cap", "working_hours", "holidays_country"))


def _team_profile(bus: Bus, team_id: str) -> RepProfile:
    return bus.team(team_id).reps["eve"].profile


def test_a_partial_update_keeps_the_webhook_name_and_the_rest() -> None:
    bus = Bus()
    bus.send("rep.commands", "eve", PutRep(rep_id="eve", profile=FULL, at=T0))
    # What the API sends for {"team": "direct", "capacity": 1}: the fields left out are named.
    bus.send("rep.commands", "eve", PutRep(rep_id="eve", profile=_eve(name="eve", capacity=1), at=T0, keep=KEEP))
    eve = _team_profile(bus, "direct")
    assert (eve.capacity, eve.name, eve.weight, eve.skills) == (1, "Eve", 2, ("fintech",))
    assert (eve.webhook_url, eve.webhook_secret) == ("https://hooks.test/eve", "whsec_eve")
    # Moving team with the same partial body: the new team gets the whole profile too.
    bus.send("rep.commands", "eve", PutRep(rep_id="eve", profile=_eve("tiny", name="eve", capacity=1), at=T0,
                                           keep=KEEP))
    moved = _team_profile(bus, "tiny")
    assert (moved.name, moved.webhook_url, moved.webhook_secret) == ("Eve", "https://hooks.test/eve", "whsec_eve")
    # Naming a field changes it: an explicit null webhook_url clears the webhook.
    keep = tuple(f for f in KEEP if f != "webhook_url")
    bus.send("rep.commands", "eve", PutRep(rep_id="eve", profile=_eve("tiny", capacity=1), at=T0, keep=keep))
    assert _team_profile(bus, "tiny").webhook_url is None


def test_an_entry_without_a_profile_lets_the_team_keep_the_fields() -> None:
    """A directory entry written before profiles were kept there: the team fills what is left out."""
    bus = Bus()
    bus.send("rep.commands", "eve", PutRep(rep_id="eve", profile=FULL, at=T0))
    bus.directory["eve"] = RepEntry(rep_id="eve", team_id="direct", updated_at=T0)  # as before the upgrade
    bus.send("rep.commands", "eve", PutRep(rep_id="eve", profile=_eve(name="eve", capacity=1), at=T0, keep=KEEP))
    eve = _team_profile(bus, "direct")
    assert (eve.capacity, eve.name, eve.webhook_url, eve.webhook_secret) == (1, "Eve", "https://hooks.test/eve",
                                                                             "whsec_eve")

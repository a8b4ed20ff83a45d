"""The decoded-state cache of RocksDB tables (``streams/tables/_cache.py``) and its safety conditions."""
from __future__ import annotations

import copy
import itertools
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from faust.streams import _current_event
from faust.types import TP

from rules import lead, team
from rules.capture import CapturedLead, derive_lead_id
from rules.commands import (
    CaptureLead,
    DispositionLead,
    PutRep,
    RecordDelivery,
    RepProfile,
    RouteLead,
    SetPresence,
    UpsertRep,
)
from rules.lead import LeadState
from rules.team import TeamState
from streams.app import app
from streams.codec import SCHEMA, decode, encode
from streams.tables._cache import StateCache
from streams.tables._table import CodecTable
from tests.rules._sim import Bus, QueueTable
from tests.rules.test_lead import assigned, capture, delivery, run

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def a_lead(company: str = "Acme") -> LeadState:
    state, _ = run(capture(company=company), assigned(), delivery())
    assert isinstance(state, LeadState)
    return state


def a_team(reps: int = 3, open_leads: int = 5) -> TeamState:
    queue = QueueTable()
    state: Any = None
    for r in range(reps):
        profile = RepProfile(rep_id=f"rep-{r}", team_id="t1", capacity=100)
        state = team.apply(state, UpsertRep(team_id="t1", profile=profile, at=NOW), NOW, queue).state
        state = team.apply(state, SetPresence(team_id="t1", rep_id=f"rep-{r}", status="available", at=NOW),
                           NOW, queue).state
    for index in range(open_leads):
        route = RouteLead(team_id="t1", lead_id=f"ld_{index}", route_id=f"ld_{index}:1:1", requested_at=NOW)
        state = team.apply(state, route, NOW, queue).state
    assert isinstance(state, TeamState)
    return state


# --- the LRU itself ------------------------------------------------------------------------

def test_a_hit_returns_the_object_put_and_counts() -> None:
    cache = StateCache(max_bytes=1 << 20)
    state = a_lead()
    raw = encode(state)
    assert cache.get(raw) is None
    cache.put(raw, state)
    assert cache.get(bytes(bytearray(raw))) is state  # equal bytes, another object: as read from RocksDB
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)


def test_other_bytes_never_return_an_old_object() -> None:
    cache = StateCache(max_bytes=1 << 20)
    old = a_lead("Acme")
    new = replace(old, touches=old.touches + 1)
    cache.put(encode(old), old)
    assert cache.get(encode(new)) is None


def test_only_the_state_types_are_cached() -> None:
    cache = StateCache(max_bytes=1 << 20)
    route = RouteLead(team_id="t1", lead_id="ld_1", route_id="ld_1:1:1", requested_at=NOW)
    raw = encode(route)
    assert not cache.cacheable(raw)
    cache.put(raw, route)
    assert len(cache) == 0
    team_raw = encode(a_team())
    assert cache.cacheable(team_raw) and cache.cacheable(encode(a_lead()))


def test_it_is_bounded_by_bytes_and_drops_the_least_recently_used() -> None:
    states = [replace(a_lead(), touches=n) for n in range(1, 41)]
    raws = [encode(s) for s in states]
    budget = sum(len(r) for r in raws[:10])
    cache = StateCache(max_bytes=budget)
    for raw, state in zip(raws[:10], states[:10]):
        cache.put(raw, state)
    assert len(cache) == 10
    assert cache.get(raws[0]) is states[0]  # read: now the most recently used
    for raw, state in zip(raws[10:], states[10:]):
        cache.put(raw, state)
        assert cache.size_bytes <= budget
    assert len(cache) <= 10
    assert cache.get(raws[1]) is None  # evicted long ago
    assert cache.get(raws[-1]) is states[-1]
    assert cache.size_bytes == sum(len(r) for r in cache._entries)


def test_a_zero_budget_caches_nothing() -> None:
    cache = StateCache(max_bytes=0)
    state = a_lead()
    cache.put(encode(state), state)
    assert len(cache) == 0 and not cache.cacheable(encode(state))


def test_an_encoding_is_reused_only_for_the_very_same_object() -> None:
    cache = StateCache(max_bytes=1 << 20)
    state = a_lead()
    raw = encode(state)
    cache.written("ld_1", raw, state)
    assert cache.take_encoding(copy.copy(state)) is None  # equal but another object
    cache.written("ld_1", raw, state)
    assert cache.take_encoding(state) is raw
    assert cache.take_encoding(state) is None  # taken once


def test_a_key_written_again_keeps_only_its_latest_bytes() -> None:
    cache = StateCache(max_bytes=1 << 20)
    versions = [replace(a_lead(), touches=n) for n in range(1, 6)]
    for state in versions:
        cache.written("ld_1", encode(state), state)
    assert len(cache) == 1 and cache.size_bytes == len(encode(versions[-1]))
    assert cache.get(encode(versions[0])) is None and cache.get(encode(versions[-1])) is versions[-1]
    cache.deleted("ld_1")
    assert len(cache) == 0 and cache.size_bytes == 0 and cache._keys == {}


def test_the_key_index_never_outgrows_the_entries() -> None:
    budget = 4 * len(encode(a_lead()))
    cache = StateCache(max_bytes=budget)
    base = a_lead()
    for n in range(200):
        state = replace(base, touches=n)
        cache.written(f"ld_{n % 37}", encode(state), state)
        cache.put(encode(replace(base, touches=n + 1000)), base)  # a read of bytes nobody wrote here
        assert cache.size_bytes <= budget
        assert set(cache._keys.values()) <= set(cache._entries)
        assert all(cache._entries[raw][1] == key for key, raw in cache._keys.items())
    assert len(cache._keys) <= len(cache)


# --- through a real RocksDB store of a CodecTable ------------------------------------------

_names = itertools.count()


@pytest.fixture
def rocks_table() -> Iterator[Any]:
    table = CodecTable(app, name=f"state_cache_test_{next(_names)}", key_type=str, schema=SCHEMA)
    store = table._new_store_by_url("rocksdb://")
    yield table, store
    store._dbs.clear()


class _Event:
    """What a store reads of a changelog event (and what ``current_event`` must weakly refer to)."""

    def __init__(self, message: Any) -> None:
        self.message = message


def _event(partition: int, offset: int, key: bytes, value: bytes | None, topic: str = "t-changelog") -> Any:
    return _Event(SimpleNamespace(tp=TP(topic, partition), partition=partition, offset=offset, key=key, value=value))


def test_recovery_writing_new_bytes_is_read_not_the_cached_object(rocks_table: Any) -> None:
    table, store = rocks_table
    old = a_lead("Acme")
    store.apply_changelog_batch([_event(0, 0, b"ld_1", encode(old))], to_key=None, to_value=None)
    first = store["ld_1"]
    assert first == decode(encode(old)) and store["ld_1"] is first  # decoded once, then served from the cache
    # A changelog record written by the worker that owned the partition meanwhile (recovery, a
    # standby catching up): other bytes under the same key.
    new = replace(old, touches=old.touches + 5)
    store.apply_changelog_batch([_event(0, 1, b"ld_1", encode(new))], to_key=None, to_value=None)
    assert store["ld_1"] == decode(encode(new)) and store["ld_1"].touches == old.touches + 5
    # Deleted by the changelog: gone, whatever the cache holds.
    store.apply_changelog_batch([_event(0, 2, b"ld_1", None)], to_key=None, to_value=None)
    assert "ld_1" not in store and store.get("ld_1") is None
    assert table.state_cache.hits == 2


async def test_a_write_is_encoded_once_and_the_next_read_is_the_object_written(
        rocks_table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    table, store = rocks_table
    # Scans read the partitions the assignor made active; this store is not in a real group.
    monkeypatch.setattr(store, "_dbs_for_actives", lambda: iter(store._dbs.values()))
    state = a_team(open_leads=20)
    event = _event(3, 0, b"t1", None, topic="team.commands")
    token = _current_event.set(weakref.ref(event))
    try:
        sent = table.send_changelog(3, "t1", state)
        store["t1"] = state  # what Faust's Table.__setitem__ does right after the changelog send
        assert sent.message.value == encode(state)  # the changelog record is the codec's bytes
        misses = table.state_cache.misses
        assert store["t1"] is state
        assert table.state_cache.misses == misses
        assert dict(store.items())["t1"] is state  # the periodic scans read through it too
        later = replace(state, routed_total=state.routed_total + 1)
        table.send_changelog(3, "t1", later)
        store["t1"] = later
        assert store["t1"] is later and len(table.state_cache) == 1  # the old version left the cache
        table.send_changelog(3, "t1", None, value_serializer="raw")  # what a delete sends
        assert len(table.state_cache) == 0
    finally:
        _current_event.reset(token)


def test_commands_in_a_table_are_decoded_every_time(rocks_table: Any) -> None:
    table, store = rocks_table
    route = RouteLead(team_id="t1", lead_id="ld_1", route_id="ld_1:1:1", requested_at=NOW)
    store.apply_changelog_batch([_event(0, 0, b"t1:1", encode(route))], to_key=None, to_value=None)
    assert store["t1:1"] == route and store["t1:1"] is not store["t1:1"]
    assert len(table.state_cache) == 0


# --- why sharing one object between reads is safe --------------------------------------------

@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Make every lead and team transition check that it left the state it was given untouched."""
    checked: Counter[str] = Counter()

    def guard(apply: Any, kind: str) -> Any:
        def checked_apply(state: Any, *args: Any) -> Any:
            if state is None:
                return apply(state, *args)
            before, kept = encode(state), copy.deepcopy(state)
            transition = apply(state, *args)
            assert encode(state) == before and state == kept, f"a {kind} transition mutated its input"
            checked[kind] += 1
            return transition
        return checked_apply

    monkeypatch.setattr(lead, "apply", guard(lead.apply, "lead"))
    monkeypatch.setattr(team, "apply", guard(team.apply, "team"))
    return checked


def test_no_transition_mutates_the_state_it_reads(guarded: Counter[str]) -> None:
    """The agents' whole life of a lead and a team: assign, queue, merge touches, deliver, release, reopen."""
    bus = Bus()
    team_id = bus.policy.default_team
    for rep_id in ("rep-a", "rep-b", "rep-c"):
        profile = RepProfile(rep_id=rep_id, team_id=team_id, name=rep_id, capacity=3,
                             webhook_url=f"https://hooks.test/{rep_id}", webhook_secret=f"whsec_{rep_id}")
        bus.send("rep.commands", rep_id, PutRep(rep_id=rep_id, profile=profile, at=bus.clock.now()))

    def capture(i: int, capture_id: str, **fields: str) -> None:
        email = f"person{i:02d}@example.com"
        lead_id = derive_lead_id(email=email, phone=None, source="webform", external_id=None)
        data = CapturedLead(email=email, source="webform", company="Acme", attributes={"campaign": "spring"}, **fields)
        bus.send("lead.commands", lead_id, CaptureLead(lead_id=lead_id, capture_id=capture_id,
                                                       captured_at=bus.clock.now(), lead=data))

    for i in range(15):
        capture(i, f"cap-{i}")
    for i in range(0, 15, 2):
        capture(i, f"again-{i}", title="VP Sales")  # a new touch merges fields and attributes
    for lead_id, state in list(bus.leads.items()):
        if state.assignment is not None:
            bus.send("lead.commands", lead_id, RecordDelivery(
                lead_id=lead_id, webhook_id="msg_1", event_type="lead.assigned", rep_id=state.assignment.rep_id,
                delivered=True, attempts=1, status=200, error=None, at=bus.clock.now()))
    for lead_id, state in list(bus.leads.items()):  # releases let the queue drain
        holder = state.assignment.rep_id if state.assignment else None
        bus.send("lead.commands", lead_id, DispositionLead(lead_id=lead_id, status="disqualified", reason=None,
                                                           rep_id=holder, at=bus.clock.now()))
    for i in range(3):
        capture(i, f"back-{i}")  # a new cycle of a closed lead
    assert guarded["lead"] >= 50 and guarded["team"] >= 30
    assert bus.team(team_id).queue_depth == 0


def test_a_memory_store_table_caches_nothing() -> None:
    table = CodecTable(app, name=f"state_cache_test_{next(_names)}", key_type=str, schema=SCHEMA)
    table._new_store_by_url("memory://")  # it keeps the objects written: nothing to decode
    state = a_lead()
    table.state_cache.put(encode(state), state)
    assert len(table.state_cache) == 0


def test_the_budget_is_a_setting() -> None:
    from leadflow.errors import ConfigError
    from streams.settings import Settings

    assert Settings.from_env({}).state_cache_mb == 8
    assert Settings.from_env({"LEADFLOW_STATE_CACHE_MB": "0"}).state_cache_mb == 0  # off
    with pytest.raises(ConfigError, match="LEADFLOW_STATE_CACHE_MB"):
        Settings.from_env({"LEADFLOW_STATE_CACHE_MB": "-1"})
    assert CodecTable(app, name=f"state_cache_test_{next(_names)}", key_type=str, schema=SCHEMA).state_cache.max_bytes \
        == app.runtime.settings.state_cache_mb * 2**20

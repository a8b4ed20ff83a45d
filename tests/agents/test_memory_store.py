"""The memory store forgets a revoked partition's keys, also those written after its recovery."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from faust.types import TP
from yarl import URL

from streams.agents._batch import acting_for
from streams.tables._table import MemoryStore
from streams.tables.team_state import team_state


@dataclass
class _Message:
    partition: int


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


async def test_a_revoked_partitions_keys_go_and_the_others_stay() -> None:
    store = team_state.data
    assert isinstance(store, MemoryStore)
    changelog = team_state.changelog_topic.get_topic_name()
    three, two = _Event(3), _Event(2)
    with acting_for(three):
        store["gone#r1"] = "holding on partition 3"
        store["gone@r2"] = "slot on partition 3"
    with acting_for(two):
        store["kept#r3"] = "holding on partition 2"
    del store["gone@r2"]  # a delete forgets the key's partition too
    await store.on_rebalance({TP(changelog, 2)}, {TP(changelog, 3), TP("other-topic", 2)}, set())
    assert "gone#r1" not in store and "gone@r2" not in store
    assert store["kept#r3"] == "holding on partition 2"
    del store["kept#r3"]


def test_the_team_table_is_in_memory_whatever_the_apps_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # Workers run RocksDB by default (LEADFLOW_STORE); the team table must not follow it. Faust
    # took `store or app.conf.store`, and URL("memory://") is falsy: the table got RocksDB.
    monkeypatch.setattr(type(team_state.app.conf), "store", property(lambda conf: URL("rocksdb://")))
    assert team_state.app.conf.store.scheme == "rocksdb"
    assert isinstance(team_state._new_store(), MemoryStore)

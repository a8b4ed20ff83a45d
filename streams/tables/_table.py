"""Declare a leadflow table: raw ``str`` keys and ``leadflow``-codec values, in store and changelog."""
from __future__ import annotations

import logging
from typing import Any

import faust
from faust.stores import memory as faust_memory
from faust.stores.base import SerializedStore
from faust.streams import current_event
from faust.types import TP
from yarl import URL

from streams.app import app
from streams.codec import CODEC, SCHEMA
from streams.tables._cache import CACHED_TYPES, StateCache

__all__ = ["CodecTable", "MemoryStore", "ValueTooLarge", "entity_table", "RECORD_OVERHEAD"]

log = logging.getLogger(__name__)

#: Bytes of a changelog record besides its value: the key (a few hundred bytes at most), the
#: record's and its batch's headers (~100). Kept generous: a value must fit with them.
RECORD_OVERHEAD = 16 * 1024


class ValueTooLarge(Exception):
    """A table value whose changelog record Kafka would refuse: raised before anything is written."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the value encodes to {size} bytes, more than the {limit} a changelog record may carry")
        self.size = size
        self.limit = limit


class CodecTable(faust.Table):  # type: ignore[type-arg]
    """A ``faust.Table`` whose key and value serializers are ours, and whose states decode once.

    Faust derives a table's serializers from ``key_type``/``value_type`` alone (``json`` unless
    the type is a faust Record) and ignores the schema, both for its writes and for the
    changelog topic it creates at declaration. Keys must be raw UTF-8 like the command topics'
    keys (or the router would look for a key on the wrong worker), and values use our codec.

    A store that keeps bytes (RocksDB) decodes its ``LeadState``/``TeamState`` values through a
    ``StateCache`` keyed by those bytes (see ``streams/tables/_cache.py``), and a write encodes
    such a value once for both the changelog and the store instead of twice.

    Such a store also recovers without decoding: Faust decodes every changelog record it
    replays through the changelog topic's schema (pydantic, for nothing: the RocksDB store
    writes ``message.value``, the bytes as they came, and never looks at the decoded event).
    The channel recovery reads through takes the values raw instead (``_recovery_channel``):
    a cold restore of 1,000,000 leads replays 2,000,000 records, and a value is decoded only
    when read — through the cache — as before. A record that would not decode no longer
    fails in recovery either; it fails when read, as stored bytes always have.

    A value too big for one Kafka record is never written (``__setitem__``): the producer would
    refuse its changelog record (``MessageSizeTooLargeError``), Faust's producer buffer would crash
    the worker, and the command that wrote it, read again at every restart, would crash it again.
    The key keeps its previous value in the store and the changelog alike; the refusal is logged
    (key, sizes) and counted as a failed command (``leadflow_command_failures_total``, labelled
    with the table's name). Callers bound their values first (``rules.team.STATE_BYTES_BUDGET``):
    this is the last line, and what it refuses is lost.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state_cache = StateCache(max_bytes=app.runtime.settings.state_cache_mb * 2**20)
        #: The largest encoded value a write may have: what the producer takes, less the record's rest.
        self.max_value_bytes = int(self.app.conf.producer_max_request_size) - RECORD_OVERHEAD

    def __setitem__(self, key: Any, value: Any) -> None:
        # Faust's ``__setitem__`` sends the changelog record (``on_key_set``) before it writes the
        # store: ``send_changelog`` raising leaves both as they were.
        try:
            super().__setitem__(key, value)
        except ValueTooLarge as exc:
            app.runtime.metrics.command_failures.labels(self.name).inc()
            log.error("table %s: refused to write the %s under key %s: %s; the key keeps its previous value",
                      self.name, type(value).__name__, key, exc)

    def _serializer_from_type(self, typ: Any) -> str:
        return "raw" if typ is str else CODEC

    def _new_changelog_topic(self, **kwargs: Any) -> Any:
        topic = super()._new_changelog_topic(**kwargs)
        decoding = topic.clone_using_queue

        def clone_using_queue(queue: Any) -> Any:
            # Faust's TableManager builds the channel recovery (active and standby) reads from so.
            return _recovery_channel(topic, queue) if isinstance(self.data, SerializedStore) else decoding(queue)

        topic.clone_using_queue = clone_using_queue  # type: ignore[method-assign]
        return topic

    def _new_store(self) -> Any:
        # Faust takes ``self._store or app.conf.store``, and a URL of a scheme alone is falsy in
        # yarl (``bool(URL("memory://"))`` is False): a table's own ``store="memory://"`` was
        # ignored for the app's store, RocksDB by default. The team table ran on RocksDB that way,
        # and a kill -9 left it with side keys its restored record never wrote (the crash
        # verifier: three leads assigned that the team did not count; docs/RELIABILITY.md).
        return self._new_store_by_url(self._store if self._store is not None else self.app.conf.store)

    def _new_store_by_url(self, url: Any) -> Any:
        if URL(str(url)).scheme == "memory":
            self.state_cache.max_bytes = 0  # the memory store keeps the objects themselves
            return MemoryStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                               key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                               value_type=self.value_type, loop=self.loop, options=self.options)
        store = super()._new_store_by_url(url)
        if isinstance(store, SerializedStore):
            _CachedValues(store, self.state_cache)
        return store

    def send_changelog(self, partition: int | None, key: Any, value: Any,
                       key_serializer: Any = None, value_serializer: Any = None) -> Any:
        if value is None:
            self.state_cache.deleted(key)
            return super().send_changelog(partition, key, value, key_serializer, value_serializer)
        if value_serializer is not None:
            return super().send_changelog(partition, key, value, key_serializer, value_serializer)
        # Encoded here rather than in the producer's buffer (the same one encoding): a value too
        # big is refused before anything is sent, and the bytes serve the state cache too.
        raw = self.app.serializers.dumps_value(self.value_type, value, serializer=self.value_serializer)
        if raw is None:
            return super().send_changelog(partition, key, value, key_serializer, value_serializer)
        if len(raw) > self.max_value_bytes:
            raise ValueTooLarge(len(raw), self.max_value_bytes)
        if isinstance(value, CACHED_TYPES) and self.state_cache.max_bytes:
            self.state_cache.written(key, raw, value)
        return super().send_changelog(partition, key, raw, key_serializer, "raw")


class MemoryStore(faust_memory.Store):  # type: ignore[type-arg]
    """Faust's memory store, knowing the partition of every key, so a revoked partition's keys go.

    Faust's own records the partition only of the keys it recovers. A key written since stayed
    after its partition moved to another worker; when the partition came back, it was recovered
    from its changelog's start over that key, and a key deleted meanwhile, whose tombstone
    compaction had removed (``delete.retention.ms``, a day by default), came back to life: a
    released holding, or a queue slot that says a route waits.
    """

    def __setitem__(self, key: Any, value: Any) -> None:
        event = current_event()
        if event is not None:
            self._key_partition[key] = event.message.partition
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[key]
        self._key_partition.pop(key, None)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        topics = self.table.changelog_topic.topics
        gone = {tp.partition for tp in revoked if tp.topic in topics}
        for key in [key for key, partition in self._key_partition.items() if partition in gone]:
            self.data.pop(key, None)
            self._key_partition.pop(key, None)
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)


def _recovery_channel(topic: Any, queue: Any) -> Any:
    """A clone of a changelog ``topic`` on ``queue`` whose events carry the values' raw bytes."""
    raw: Any = faust.Schema(key_type=str, key_serializer="raw", value_serializer="raw")
    return topic.clone(queue=queue, is_iterator=True, schema=raw, key_serializer="raw", value_serializer="raw")


class _CachedValues:
    """Puts a ``StateCache`` in front of a serialized store's value decoding and encoding."""

    def __init__(self, store: SerializedStore[Any, Any], cache: StateCache) -> None:
        self._decode = store._decode_value
        self._encode = store._encode_value
        self.cache = cache
        # Instance attributes shadow the store's methods, which its reads and writes call.
        store._decode_value = self.decode  # type: ignore[method-assign, assignment]
        store._encode_value = self.encode  # type: ignore[method-assign]

    def decode(self, raw: bytes | None) -> Any:
        if raw is None or not self.cache.cacheable(raw):
            return self._decode(raw)
        value = self.cache.get(raw)
        if value is None:
            value = self._decode(raw)
            self.cache.put(raw, value)
        return value

    def encode(self, value: Any) -> bytes | None:
        raw = self.cache.take_encoding(value) if self.cache.max_bytes else None
        if raw is None:
            raw = self._encode(value)
        if raw is not None:
            self.cache.put(raw, value)
        return raw


def entity_table(name: str, help: str, store: str | None = None,
                 changelog_configs: dict[str, str] | None = None) -> Any:
    """A table of ours; ``store`` overrides the app's store URL (``memory://``) for this one, and
    ``changelog_configs`` are topic configs its changelog topic is created with."""
    table = CodecTable(app, name=name, key_type=str, schema=SCHEMA, help=help, beacon=app.tables.beacon, store=store,
                       extra_topic_configs=changelog_configs)
    return app.tables.add(table)

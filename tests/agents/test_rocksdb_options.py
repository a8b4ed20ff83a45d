"""Every RocksDB store the worker opens is bounded (``streams/app.py`` ``_bound_rocksdb``), and all of
them together share one block cache and one memtable budget."""
from __future__ import annotations

import uuid

from streams.app import (ROCKSDB_BLOCK_CACHE_BYTES, ROCKSDB_MAX_WRITE_BUFFERS, ROCKSDB_MEMTABLES_BYTES,
                         ROCKSDB_WRITE_BUFFER_BYTES, _rocksdb_shared, app)
from streams.codec import SCHEMA
from streams.tables._table import CodecTable


def test_a_table_store_opens_with_small_memtables_and_block_cache() -> None:
    table = CodecTable(app, name="rocksdb_options_test", key_type=str, schema=SCHEMA)
    store = table._new_store_by_url("rocksdb://")
    options = store.rocksdb_options
    assert (options.write_buffer_size, options.max_write_buffer_number, options.block_cache_size) == (
        ROCKSDB_WRITE_BUFFER_BYTES, ROCKSDB_MAX_WRITE_BUFFERS, ROCKSDB_BLOCK_CACHE_BYTES)
    # Faust's defaults were 64 MiB × 3 memtables and a 2 GiB block cache per partition store.
    assert options.write_buffer_size * options.max_write_buffer_number <= 16 * 2**20
    db = store._db_for_partition(0)  # the options reach RocksDB itself
    db.put(b"k", b"v")
    assert db.get(b"k") == b"v"
    store._dbs.clear()


def test_a_windowed_table_gets_them_too() -> None:
    from streams.tables.team_windows import team_minute

    store = team_minute.table._new_store_by_url("rocksdb://")
    assert store.rocksdb_options.write_buffer_size == ROCKSDB_WRITE_BUFFER_BYTES


def test_every_store_shares_one_block_cache_and_one_memtable_budget() -> None:
    table = CodecTable(app, name="rocksdb_shared_test", key_type=str, schema=SCHEMA)
    store = table._new_store_by_url("rocksdb://")
    cache, write_buffers = _rocksdb_shared()
    assert write_buffers.get_buffer_size() == ROCKSDB_MEMTABLES_BYTES
    first, second = store._db_for_partition(0), store._db_for_partition(1)
    for index in range(2000):
        first.put(f"a{index}".encode(), b"x" * 300)
        second.put(f"b{index}".encode(), b"y" * 300)
    memtables = [db.property_int_value("rocksdb.cur-size-all-mem-tables") for db in (first, second)]
    # Both stores' memtables are charged to the one budget (a store of its own would charge none).
    assert write_buffers.get_usage() >= sum(memtables) > 0
    # Both report the one cache: its capacity, and the same usage as it once a block is read through it.
    first.flush()
    assert first.get(b"a7") == b"x" * 300
    for db in (first, second):
        assert db.property_int_value("rocksdb.block-cache-capacity") == ROCKSDB_BLOCK_CACHE_BYTES
        assert db.property_int_value("rocksdb.block-cache-usage") == cache.get_usage() > 0
    store._dbs.clear()


def test_index_and_filter_blocks_are_charged_to_the_shared_cache() -> None:
    """RocksDB's default keeps each SST file's index and filter blocks in its table reader, outside
    the block cache and any bound: memory that grows with the data. Here they are in the shared
    cache, the newest files' (L0) pinned there."""
    table = CodecTable(app, name="rocksdb_index_test", key_type=str, schema=SCHEMA)
    store = table._new_store_by_url("rocksdb://")
    cache, _ = _rocksdb_shared()
    db = store._db_for_partition(0)
    for index in range(20_000):
        db.put(f"k{index}".encode(), b"z" * 300)
    db.flush()
    assert db.property_int_value("rocksdb.num-files-at-level0") >= 1
    assert db.get(b"k7") == b"z" * 300
    # Index and filter of ~6 MB of values: ~35 KB in the table reader by default, ~2 KB with them cached.
    assert db.property_int_value("rocksdb.estimate-table-readers-mem") < 8_000
    assert db.property_int_value("rocksdb.block-cache-pinned-usage") >= 20_000
    assert cache.get_pinned_usage() >= 20_000
    store._dbs.clear()


def test_a_reopened_store_keeps_the_shared_cache_and_table_options() -> None:
    """Given options without column families, rocksdict opens an existing store with the column
    family options of its OPTIONS file and a new 8 MiB cache of its own: every restart that kept its
    data dir left the shared budget. A reopened store must be configured as a new one."""
    table = CodecTable(app, name=f"rocksdb_reopen_test_{uuid.uuid4().hex[:8]}", key_type=str, schema=SCHEMA)
    store = table._new_store_by_url("rocksdb://")
    cache, _ = _rocksdb_shared()
    db = store._db_for_partition(0)
    for index in range(20_000):
        db.put(f"k{index}".encode(), b"r" * 300)
    db.flush()
    db.close()
    store._dbs.clear()
    db = store._db_for_partition(0)  # the restart: the same path, its files and OPTIONS kept
    assert db.get(b"k7") == b"r" * 300
    assert db.property_int_value("rocksdb.block-cache-capacity") == ROCKSDB_BLOCK_CACHE_BYTES
    assert db.property_int_value("rocksdb.block-cache-usage") == cache.get_usage() > 0
    assert db.property_int_value("rocksdb.estimate-table-readers-mem") < 8_000
    db.close()
    store._dbs.clear()

"""Every RocksDB store the worker opens is bounded (``streams/app.py`` ``_bound_rocksdb``)."""
from __future__ import annotations

from streams.app import ROCKSDB_BLOCK_CACHE_BYTES, ROCKSDB_MAX_WRITE_BUFFERS, ROCKSDB_WRITE_BUFFER_BYTES, app
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
    assert options.block_cache_size <= 64 * 2**20
    db = store._db_for_partition(0)  # the options reach RocksDB itself
    db.put(b"k", b"v")
    assert db.get(b"k") == b"v"
    store._dbs.clear()


def test_a_windowed_table_gets_them_too() -> None:
    from streams.tables.team_windows import team_minute

    store = team_minute.table._new_store_by_url("rocksdb://")
    assert store.rocksdb_options.write_buffer_size == ROCKSDB_WRITE_BUFFER_BYTES

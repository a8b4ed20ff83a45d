"""Memory probe for a leadflow worker: a debug tool, loaded only when its folder is on PYTHONPATH.

Python imports ``sitecustomize`` at start-up, so a worker started with this folder on its
``PYTHONPATH`` runs a daemon thread that appends one JSON line every ``MEMPROBE_INTERVAL``
seconds to ``MEMPROBE_OUT``: resident memory, RocksDB's own memory per table (memtables,
block cache, table readers: native memory Python's allocator never sees), the state caches'
size and hit counts, and with ``MEMPROBE_TRACEMALLOC=1`` the Python heap traced by tracemalloc
plus a snapshot every ``MEMPROBE_SNAP_EVERY`` samples (``<out>.NNNN.snap``; compare two with
``python ops/bench/memprobe/snapdiff.py <out>``). Nothing happens unless ``MEMPROBE_OUT`` is set.

    leadflow bench load --rates max --feed kafka --max-leads 5000 --passthrough-records 0 \\
        --worker-env PYTHONPATH=$PWD/ops/bench/memprobe --worker-env MEMPROBE_OUT=$PWD/.state/probe.jsonl

A/B switch for the same worker code: ``MEMPROBE_FAUST_ROCKSDB_DEFAULTS=1`` opens the stores with
Faust's RocksDB defaults instead of ``streams.app``'s bounded ones (the state cache has its own
setting, ``LEADFLOW_STATE_CACHE_MB=0``). tracemalloc slows the worker 2-3×, more with
``MEMPROBE_FRAMES`` > 1, and adds its own memory to the resident figure.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
import tracemalloc
from typing import Any

__all__: list[str] = []

_ROCKS = ("rocksdb.size-all-mem-tables", "rocksdb.block-cache-usage", "rocksdb.estimate-table-readers-mem")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tables() -> dict[str, Any]:
    module = sys.modules.get("streams.app")
    if module is None:
        return {}
    found: dict[str, Any] = {}
    for name, table in list(module.app.tables.items()):
        row: dict[str, Any] = {}
        dbs = getattr(getattr(table, "_data", None), "_dbs", None) or {}
        for prop in _ROCKS:
            total = 0
            for db in list(dbs.values()):
                try:
                    total += int(db.property_int_value(prop) or 0)
                except Exception:  # a store closing meanwhile
                    pass
            row[prop.removeprefix("rocksdb.")] = total
        cache = getattr(table, "state_cache", None)
        if cache is not None:
            row["cache"] = {"entries": len(cache), "bytes": cache.size_bytes, "hits": cache.hits,
                            "misses": cache.misses}
        found[str(name)] = row
    return found


def _shared() -> dict[str, int]:
    """The block cache and memtable budget every store shares (``streams.app``): each store reports
    the shared cache's usage as its own, so the per-table ``block-cache-usage`` sums count it once
    per store; this is the real figure."""
    shared = getattr(sys.modules.get("streams.app"), "_shared_memory", None)
    if shared is None:
        return {}
    cache, write_buffers = shared
    return {"block_cache": int(cache.get_usage()), "memtables": int(write_buffers.get_usage())}


def _sample(out: str, interval: float, trace: bool, snap_every: int) -> None:
    began = time.time()
    count = 0
    while True:
        time.sleep(interval)
        count += 1
        row: dict[str, Any] = {"t": round(time.time() - began, 1), "rss": _rss(), "gc_counts": gc.get_count()}
        # Never gc.get_objects() here: from this thread it can catch a tuple the event loop is
        # still building and make its resize fail with SystemError (seen: a lost command).
        if trace:
            row["traced"] = tracemalloc.get_traced_memory()[0]
        try:
            row["tables"] = _tables()
            row["shared"] = _shared()
        except Exception as exc:  # the app is starting or stopping
            row["tables_error"] = repr(exc)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        if trace and count % snap_every == 0:
            tracemalloc.take_snapshot().dump(f"{out}.{count:04d}.snap")


def _faust_rocksdb_defaults() -> None:
    from faust.stores import rocksdb

    init = rocksdb.RocksDBOptions.__init__
    faust_options = rocksdb.RocksDBOptions.as_options  # before streams.app shares one cache and budget

    def with_defaults(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.write_buffer_size = rocksdb.DEFAULT_WRITE_BUFFER_SIZE
        self.max_write_buffer_number = rocksdb.DEFAULT_MAX_WRITE_BUFFER_NUMBER
        self.block_cache_size = rocksdb.DEFAULT_BLOCK_CACHE_SIZE
        self.as_options = faust_options.__get__(self)  # a cache of its own per store, as in Faust

    rocksdb.RocksDBOptions.__init__ = with_defaults  # type: ignore[method-assign]


def _start() -> None:
    if "worker" not in sys.argv:
        return  # only `leadflow worker` / `python -m leadflow worker`
    if os.environ.get("MEMPROBE_FAUST_ROCKSDB_DEFAULTS") == "1":
        _faust_rocksdb_defaults()
    out = os.environ.get("MEMPROBE_OUT")
    if not out:
        return
    trace = os.environ.get("MEMPROBE_TRACEMALLOC") == "1"
    if trace:
        tracemalloc.start(int(os.environ.get("MEMPROBE_FRAMES", "1")))
    args = (out, float(os.environ.get("MEMPROBE_INTERVAL", "5")), trace, int(os.environ.get("MEMPROBE_SNAP_EVERY", "6")))
    threading.Thread(target=_sample, args=args, name="memprobe", daemon=True).start()


_start()

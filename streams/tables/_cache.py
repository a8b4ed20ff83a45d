"""Decoded table values cached by their encoded bytes: a state is decoded once, not on every read.

A RocksDB table stores bytes, and every read used to decode the whole value through pydantic:
a ``LeadState`` of ~3 KB takes 0.06–0.3 ms, a ``TeamState`` grows with the team's open leads
(~0.5 ms at 500), and the lead and team agents read their state for every command.

The cache maps the *exact bytes* of a value to the object they decode to, so it can never be
stale: a changelog recovery, a standby's writes, a rebalance that moves a partition away and
back, a crash (the cache dies with the process) all show up as different bytes under a key —
a miss — or as no bytes at all, which never reach the cache. The store is still read on every
``get``; only the decoding is skipped, when the bytes are the same as a value already decoded.

Writes feed it too: the object written is remembered under the bytes it was encoded to, so the
next read of that key (the next command for the same lead or team) finds it. It is shared, not
copied, which is safe because table values are frozen dataclasses replaced, never mutated
(DESIGN §5); nothing in ``rules/`` mutates a state's nested dicts (``TeamState.reps``,
``CapturedLead.attributes``…) either — they are rebuilt with ``{**old, …}`` — and
``tests/agents/test_state_cache.py`` checks that the transitions leave their input untouched.
(The memory store, used by the agent tests, has always served the very object written.)

Only the big state types are cached (``CACHED_TYPES``); commands and small values go through
the codec as before. The cache is bounded by the bytes it holds (least recently used first out),
``LEADFLOW_STATE_CACHE_MB`` per table (default 8 MiB: ~2,000–2,800 leads, ~28 MB resident). It
helps while the leads between two commands of one lead fit: a burst of 1,500 leads was served
with no miss, a burst of 5,000 cycled through more leads than it holds and hit 28% of reads.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from rules.lead import LeadState
from rules.team import TeamState

__all__ = ["CACHED_TYPES", "StateCache"]

#: The value types worth caching: big, read for every command of their key.
CACHED_TYPES: tuple[type, ...] = (LeadState, TeamState)

# How the codec's envelope starts for those types (orjson writes "type" first, without spaces):
# looking at the bytes' start skips even the hash for anything else. Bytes written another way
# merely miss the cache.
_PREFIXES = tuple(b'{"type":"%s"' % cls.__name__.encode() for cls in CACHED_TYPES)


class StateCache:
    """A bounded LRU of ``encoded bytes -> decoded state``, plus the last encoding made.

    ``max_bytes`` bounds the sum of the cached byte strings; the decoded objects take about
    2.3× that again (a 3 KB ``LeadState`` decodes to ~7 KB of Python objects). 0 disables it.

    A write names its table key (``written``): the key's previous bytes leave the cache then,
    so a team written 2,000 times holds one entry, not 2,000 dead versions pushing leads out.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0
        #: raw bytes -> (decoded value, table key if a write told us)
        self._entries: OrderedDict[bytes, tuple[Any, Hashable | None]] = OrderedDict()
        #: table key -> the bytes last written under it, while they are cached
        self._keys: dict[Hashable, bytes] = {}
        # The changelog send encodes a value just before the store does (Faust's __setitem__):
        # the store reuses that encoding when it gets the very same object.
        self._last_encoded: tuple[Any, bytes] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def cacheable(self, raw: bytes) -> bool:
        return self.max_bytes > 0 and raw.startswith(_PREFIXES)

    def get(self, raw: bytes) -> Any | None:
        """The state ``raw`` decodes to, if cached (``None`` for a miss)."""
        entry = self._entries.get(raw)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(raw)
        return entry[0]

    def put(self, raw: bytes, value: Any, key: Hashable | None = None) -> None:
        """Remember that ``raw`` decodes to ``value`` (ignored unless a cached type)."""
        if not isinstance(value, CACHED_TYPES) or not self.cacheable(raw) or len(raw) > self.max_bytes:
            return
        if key is not None:
            previous = self._keys.get(key)
            if previous is not None and previous != raw:
                self._drop(previous)
        cached = self._entries.get(raw)
        if cached is not None:
            if key is None:
                key = cached[1]
            elif cached[1] is not None and cached[1] != key:
                self._keys.pop(cached[1], None)  # the same bytes written under another key
            self._entries[raw] = (value, key)
            self._entries.move_to_end(raw)
            if key is not None:
                self._keys[key] = raw
            return
        if key is not None:
            self._keys[key] = raw
        self._entries[raw] = (value, key)
        self.size_bytes += len(raw)
        while self.size_bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def written(self, key: Hashable, raw: bytes, value: Any) -> None:
        """``value`` was just encoded to ``raw`` to be written under ``key``."""
        self.put(raw, value, key)
        self._last_encoded = (value, raw)

    def deleted(self, key: Hashable) -> None:
        raw = self._keys.get(key)
        if raw is not None:
            self._drop(raw)

    def take_encoding(self, value: Any) -> bytes | None:
        """The bytes ``value`` (this very object) was just encoded to, if it was the last one."""
        last, self._last_encoded = self._last_encoded, None
        if last is not None and last[0] is value:
            return last[1]
        return None

    def _drop(self, raw: bytes) -> None:
        entry = self._entries.pop(raw, None)
        if entry is None:
            return
        self.size_bytes -= len(raw)
        key = entry[1]
        if key is not None and self._keys.get(key) == raw:
            del self._keys[key]

    def clear(self) -> None:
        self._entries.clear()
        self._keys.clear()
        self.size_bytes = 0
        self._last_encoded = None

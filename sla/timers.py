"""An in-memory index of pending deadlines: one timer per key, popped earliest first.

Each worker keeps one for the partitions it owns and rebuilds it from the table (the durable
truth) when partitions are assigned; a loop pops what is due and turns it into ``SlaDue``
commands. Time is always an argument (float seconds, e.g. a Unix timestamp); the index never
reads a clock.

Implementation: a binary heap (``heapq``, in C) of plain ``int`` entries with lazy deletion,
sized for a million pending timers in one worker (``docs/sla.md`` has the measurements).
Per-timer Python objects are what cost memory, so a timer is just two ints:

* the **entry** packs ``due | key | token`` into one int whose order is the firing order: the
  due time's IEEE-754 bits mapped to an order-preserving unsigned 64-bit code, then the key's
  code (97 bits), then the token's code (12 bits);
* the **key code**: a lead id (``ld_`` + 24 lowercase hex digits, see ``rules.capture``) *is*
  its 96-bit number, so the index holds no key string and ties on the due time fall to the key,
  as they would on the strings; any other key is interned in a side table (bit 96 set) whose
  ids are recycled when the key's timer goes;
* the **token code** indexes a small table of interned tokens (``None``, ints, short strings and
  short tuples of those, such as the agent's ``(cycle, step)``); any other token (bools, floats,
  objects) is kept per key in a side dict. Tokens are never compared for ordering.

``_live`` maps the key code to its current entry, the same int object as in the heap, so a
timer costs one dict slot, one key int (40 bytes) and one entry int (48 bytes). Re-scheduling
or cancelling leaves the old entry in the heap; an entry fires only if it still *equals* the
live entry of its key, and the heap is compacted when stale entries outnumber live ones. An
equal stale twin (cancel, then the same due and token again) fires once: whichever surfaces
first fires the live timer and removes it, the other then finds nothing live.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from heapq import heapify, heappop, heappush
from typing import Final

__all__ = ["Rebuild", "TimerIndex"]

_COMPACT_SLACK: Final = 1024  # stale entries tolerated beyond the live count before compacting

_TOKEN_BITS: Final = 12
_TOKEN_MASK: Final = (1 << _TOKEN_BITS) - 1
_ODD: Final = _TOKEN_MASK  # the token lives in the side dict ``_odd``
_MAX_TOKENS: Final = _ODD  # interned tokens 0 .. 4094; bounded whatever the caller does
_KEY_BITS: Final = 97
_KEY_MASK: Final = (1 << _KEY_BITS) - 1
_NAMED: Final = 1 << 96  # key codes with this bit are ids of interned non-lead-id keys
_SHIFT: Final = _KEY_BITS + _TOKEN_BITS
_SIGN: Final = 1 << 63
_NOTHING: Final[frozenset[str]] = frozenset()

_LEAD_PREFIX: Final = "ld_"
_LEAD_LEN: Final = 27  # "ld_" + 24 hex digits
_HEX_DIGITS: Final = "0123456789abcdef"

_pack_double = struct.Struct("<d").pack
_unpack_double = struct.Struct("<d").unpack
_pack_int64 = struct.Struct("<q").pack
_unpack_int64 = struct.Struct("<q").unpack


def _due_code(due: float) -> int:
    """An unsigned 64-bit code of ``due`` whose integer order is the float order (finite, no -0.0)."""
    bits: int = _unpack_int64(_pack_double(due))[0]
    return bits | _SIGN if bits >= 0 else ~bits


def _due_of(code: int) -> float:
    bits = code ^ _SIGN if code >= _SIGN else ~code
    (due,) = _unpack_double(_pack_int64(bits))
    return float(due)


def _lead_code(key: object) -> int | None:
    """The 96-bit number of a canonical lead id, or ``None`` for any other key."""
    if type(key) is not str or len(key) != _LEAD_LEN or not key.startswith(_LEAD_PREFIX):
        return None
    # Lower-case hex digits only: int() would also take upper case, "_", spaces, signs and "0x".
    return None if key[3:].strip(_HEX_DIGITS) else int(key[3:], 16)


def _same_types(token: object, interned: object) -> bool:
    """An interned token equal to ``token`` is also of its exact types ((1, True) == (1, 1))."""
    if type(token) is not type(interned):
        return False
    if type(token) is tuple:
        for a, b in zip(token, interned):  # type: ignore[call-overload]
            if type(a) is not type(b):
                return False
    return True


def _internable(token: object) -> bool:
    """Tokens safe to share by equality: equal ones are of the same exact types."""
    kind = type(token)
    if kind is tuple:
        if len(token) > 4:  # type: ignore[arg-type]
            return False
        for item in token:  # type: ignore[attr-defined]
            if not (item is None or type(item) is int or (type(item) is str and len(item) <= 64)):
                return False
        return True
    return token is None or kind is int or (kind is str and len(token) <= 64)  # type: ignore[arg-type]


class TimerIndex:
    """Pending deadlines by key: ``schedule`` (replaces), ``cancel``, ``pop_due`` earliest first."""

    __slots__ = ("_heap", "_live", "_names", "_name_ids", "_free_ids", "_tokens", "_token_ids", "_odd")

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._live: dict[int, int] = {}          # key code -> its live entry (the heap's int)
        self._names: dict[int, object] = {}      # interned key code -> the key (non-lead-id keys)
        self._name_ids: dict[object, int] = {}
        self._free_ids: list[int] = []
        self._tokens: list[object] = [None]      # token code -> token
        self._token_ids: dict[object, int] = {None: 0}
        self._odd: dict[int, object] = {}        # key code -> a token that is not interned

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        code = self._find_code(key)
        return code is not None and code in self._live

    def get(self, key: str) -> tuple[float, object] | None:
        """``(due, token)`` of the pending timer for ``key``, or ``None``."""
        code = self._find_code(key)
        entry = None if code is None else self._live.get(code)
        if entry is None or code is None:
            return None
        return _due_of(entry >> _SHIFT), self._token_of(entry, code)

    def schedule(self, key: str, due_at_s: float, token: object = None) -> None:
        """Arm the timer of ``key`` at ``due_at_s``, replacing any pending one for that key.

        Scheduling the pending timer again (same due time, an equal token) changes nothing, so a
        replay costs no heap entry.
        """
        due = _finite(due_at_s, "due_at_s")
        code = self._code_for(key)
        entry = (_due_code(due) << _SHIFT) | (code << _TOKEN_BITS) | self._token_code(token, code)
        live = self._live
        old = live.get(code)
        if old == entry:
            return  # the same timer again (a replay), or only an uninterned token replaced
        live[code] = entry
        heappush(self._heap, entry)
        if old is not None:
            self._maybe_compact()

    def cancel(self, key: str) -> bool:
        """Disarm the timer of ``key``; ``False`` when none was pending."""
        code = self._find_code(key)
        if code is None or self._live.pop(code, None) is None:
            return False
        self._release(code)
        self._maybe_compact()
        return True

    def pop_due(self, now_s: float, limit: int | None = None) -> list[tuple[str, object]]:
        """Remove and return ``(key, token)`` of the timers due at ``now_s`` or before, earliest first.

        ``limit`` caps how many are returned (the rest stay due for the next call), so a loop
        that wakes after a long pause can send its backlog in bounded batches.
        """
        now = float(now_s)
        if math.isnan(now):
            raise ValueError("now_s must be a number of seconds (got nan)")
        fired: list[tuple[str, object]] = []
        if now == math.inf:
            bound = (_SIGN << 1) << _SHIFT  # above every finite due time
        else:
            bound = (_due_code(now + 0.0) + 1) << _SHIFT  # every entry below is due
        heap, live, tokens = self._heap, self._live, self._tokens
        while heap and heap[0] < bound:
            if limit is not None and len(fired) >= limit:
                break
            entry = heappop(heap)
            code = (entry >> _TOKEN_BITS) & _KEY_MASK
            if live.get(code) != entry:
                continue  # stale: replaced or cancelled since it was pushed
            del live[code]
            token_code = entry & _TOKEN_MASK
            if code & _NAMED or token_code == _ODD or self._odd:
                fired.append((self._key_of(code), self._token_of(entry, code)))
                self._release(code)
            else:  # the common case, inlined: a lead id with an interned token
                fired.append(("ld_%024x" % code, tokens[token_code]))
        return fired

    def next_due_s(self) -> float | None:
        """When the earliest pending timer is due (``None`` when there is none)."""
        heap, live = self._heap, self._live
        while heap and live.get((heap[0] >> _TOKEN_BITS) & _KEY_MASK) != heap[0]:
            heappop(heap)
        return _due_of(heap[0] >> _SHIFT) if heap else None

    def load(self, items: Iterable[tuple[str, float, object]]) -> int:
        """Schedule many ``(key, due, token)`` at once — the rebuild after a partition assignment.

        Later items win over earlier ones and over pending timers of the same key, as with
        ``schedule``; the heap is rebuilt in O(n) instead of n pushes. Returns how many were given.
        (``Rebuild`` does the same a slice at a time, for a loop that must not stall.)
        """
        count = self._fill(items, _NOTHING)
        self._compact()
        return count

    def drop(self, predicate: Callable[[str], bool]) -> int:
        """Forget every timer whose key satisfies ``predicate`` (e.g. keys of revoked partitions)."""
        doomed = [code for code in self._live if predicate(self._key_of(code))]
        for code in doomed:
            del self._live[code]
            self._release(code)
        if doomed:
            self._compact()
        return len(doomed)

    def clear(self) -> None:
        """Forget every timer."""
        self._heap.clear()
        self._live.clear()
        self._names.clear()
        self._name_ids.clear()
        self._free_ids.clear()
        self._odd.clear()

    # --- internals ----------------------------------------------------------------------

    def _fill(self, items: Iterable[tuple[str, float, object]], skip: AbstractSet[str]) -> int:
        """``load`` without ordering the heap: set the live entry of every item whose key is not
        in ``skip``. The heap misses these entries until ``_compact``. Returns the items read."""
        # ``schedule`` inlined: this runs for every pending timer of the assigned partitions.
        live, odd, code_for, token_code = self._live, self._odd, self._code_for, self._token_code
        token_ids, tokens = self._token_ids, self._tokens
        isfinite, pack, unpack = math.isfinite, _pack_double, _unpack_int64
        count = 0
        for key, due_at_s, token in items:
            count += 1
            if skip and key in skip:
                continue
            due = float(due_at_s) + 0.0
            if not isfinite(due):
                raise ValueError(f"{key}: due must be a finite number of seconds (got {due_at_s!r})")
            bits: int = unpack(pack(due))[0]
            digits = key[3:] if type(key) is str and len(key) == _LEAD_LEN and key[:3] == _LEAD_PREFIX else "_"
            code = code_for(key) if digits.strip(_HEX_DIGITS) else int(digits, 16)
            tcode = token_ids.get(token) if type(token) is tuple or token is None else None
            if tcode is None or not _same_types(token, tokens[tcode]):
                tcode = token_code(token, code)
            elif odd:
                odd.pop(code, None)
            live[code] = (((bits | _SIGN) if bits >= 0 else ~bits) << _SHIFT) | (code << _TOKEN_BITS) | tcode
        return count

    def _find_code(self, key: object) -> int | None:
        code = _lead_code(key)
        return self._name_ids.get(key) if code is None else code

    def _code_for(self, key: object) -> int:
        code = self._find_code(key)
        if code is None:
            code = self._free_ids.pop() if self._free_ids else _NAMED | len(self._name_ids)
            self._name_ids[key] = code
            self._names[code] = key
        return code

    def _key_of(self, code: int) -> str:
        if code & _NAMED:
            return self._names[code]  # type: ignore[return-value]
        return "ld_%024x" % code

    def _token_code(self, token: object, key_code: int) -> int:
        if _internable(token):
            code = self._token_ids.get(token)
            if code is None and len(self._tokens) < _MAX_TOKENS:
                code = self._token_ids[token] = len(self._tokens)
                self._tokens.append(token)
            if code is not None:
                if self._odd:
                    self._odd.pop(key_code, None)
                return code
        self._odd[key_code] = token
        return _ODD

    def _token_of(self, entry: int, key_code: int) -> object:
        code = entry & _TOKEN_MASK
        return self._odd[key_code] if code == _ODD else self._tokens[code]

    def _release(self, code: int) -> None:
        """The key's timer is gone: drop its side data and recycle its id (stale twins are harmless,
        an entry only fires while it equals its key's live entry)."""
        if self._odd:
            self._odd.pop(code, None)
        if code & _NAMED:
            del self._name_ids[self._names.pop(code)]
            self._free_ids.append(code)

    def _maybe_compact(self) -> None:
        if len(self._heap) > 2 * len(self._live) + _COMPACT_SLACK:
            self._compact()

    def _compact(self) -> None:
        self._heap = list(self._live.values())
        heapify(self._heap)


class Rebuild:
    """Refill an index from the table's rows a slice at a time, while its owner keeps deciding.

    The owner of the timers (the lead agent) goes on scheduling and cancelling between slices,
    through ``schedule`` and ``cancel`` here. The rows come from a snapshot of the table taken
    when the reading began, so a row read after such a decision can be older than it (the timer
    re-armed or cancelled since): every key decided during the rebuild is remembered and its
    rows are skipped. ``finish`` orders the heap once (O(n)); until then the index holds the
    right live timers but must not be popped. Starting a rebuild clears the index; an abandoned
    one (a rebalance: the rows are no longer this worker's) is simply replaced by a new one.
    """

    __slots__ = ("index", "rows_read", "_decided")

    def __init__(self, index: TimerIndex) -> None:
        index.clear()
        self.index = index
        self.rows_read = 0
        self._decided: set[str] = set()  # keys scheduled or cancelled since the rebuild began

    def schedule(self, key: str, due_at_s: float, token: object = None) -> None:
        """``TimerIndex.schedule``, and this key's rows still to come are older than it."""
        self.index.schedule(key, due_at_s, token)
        self._decided.add(key)

    def cancel(self, key: str) -> bool:
        """``TimerIndex.cancel``, and this key's rows still to come are older than it."""
        self._decided.add(key)
        return self.index.cancel(key)

    def feed(self, rows: Iterable[tuple[str, float, object]]) -> int:
        """Load a slice of ``(key, due, token)`` rows, but not those of keys decided since the start.

        Returns how many rows were read (skipped ones included).
        """
        count = self.index._fill(rows, self._decided)
        self.rows_read += count
        return count

    def finish(self) -> int:
        """Order the heap over everything loaded and decided; the index may be popped again.

        Returns how many timers are pending.
        """
        self.index._compact()
        self._decided.clear()
        return len(self.index)


def _finite(value: float, what: str) -> float:
    due = float(value)
    if not math.isfinite(due):
        raise ValueError(f"{what} must be a finite number of seconds (got {value!r})")
    return due + 0.0  # -0.0 -> 0.0: equal floats get equal codes

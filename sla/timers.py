"""An in-memory index of pending deadlines: one timer per key, popped earliest first.

Each worker keeps one for the partitions it owns and rebuilds it from the table (the durable
truth) when partitions are assigned; a loop pops what is due and turns it into ``SlaDue``
commands. Time is always an argument (float seconds, e.g. a Unix timestamp); the index never
reads a clock.

Implementation: a binary heap (``heapq``, in C) with lazy deletion. ``_live`` maps each key to
its current heap entry, the truth; re-scheduling or cancelling leaves the old entry in the
heap, where it is recognised by identity and skipped when it surfaces, and the heap is
compacted when stale entries outnumber live ones, so memory stays bounded under churn.

Entries are ``(due, key, token)`` tuples — no sequence number, which would cost ~40 bytes a
timer (see ``docs/sla.md`` for the measurements). Ties on ``due`` fall to the key; the token
is compared only when due *and* key are equal, which can only happen between a key's stale and
new entries, so a key that may still have stale entries gets its token wrapped in ``_Tied``,
which never wins a comparison (and never raises on an incomparable token).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from heapq import heapify, heappop, heappush
from typing import Final

__all__ = ["TimerIndex"]

_COMPACT_SLACK: Final = 1024  # stale entries tolerated beyond the live count before compacting


class _Tied:
    """A token that is invisible to ordering: ``(due, key, token)`` ties stay unordered, never errors."""

    __slots__ = ("token",)

    def __init__(self, token: object) -> None:
        self.token = token

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return False


_Entry = tuple[float, str, object]


def _token(entry: _Entry) -> object:
    token = entry[2]
    return token.token if type(token) is _Tied else token


def _same(a: object, b: object) -> bool:
    return a is b or bool(a == b)


class TimerIndex:
    """Pending deadlines by key: ``schedule`` (replaces), ``cancel``, ``pop_due`` earliest first."""

    __slots__ = ("_heap", "_live", "_stale")

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[str, _Entry] = {}
        self._stale: dict[str, int] = {}  # key -> stale entries of it still in the heap

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def get(self, key: str) -> tuple[float, object] | None:
        """``(due, token)`` of the pending timer for ``key``, or ``None``."""
        entry = self._live.get(key)
        return None if entry is None else (entry[0], _token(entry))

    def schedule(self, key: str, due_at_s: float, token: object = None) -> None:
        """Arm the timer of ``key`` at ``due_at_s``, replacing any pending one for that key.

        Scheduling the pending timer again (same due time, an equal token) changes nothing, so a
        replay costs no heap entry. Tokens are compared with ``==`` only for that.
        """
        due = float(due_at_s)
        if not math.isfinite(due):
            raise ValueError(f"due_at_s must be a finite number of seconds (got {due_at_s!r})")
        live = self._live
        old = live.get(key)
        entry: _Entry
        if old is None and key not in self._stale:
            entry = (due, key, token)  # the common case: nothing of this key in the heap
        else:
            if old is not None:
                if old[0] == due and _same(_token(old), token):
                    return  # the same timer again (a replay): nothing to do
                self._stale[key] = self._stale.get(key, 0) + 1
            entry = (due, key, _Tied(token))
        live[key] = entry
        heappush(self._heap, entry)
        if old is not None:
            self._maybe_compact()

    def cancel(self, key: str) -> bool:
        """Disarm the timer of ``key``; ``False`` when none was pending."""
        if self._live.pop(key, None) is None:
            return False
        self._stale[key] = self._stale.get(key, 0) + 1
        self._maybe_compact()
        return True

    def pop_due(self, now_s: float, limit: int | None = None) -> list[tuple[str, object]]:
        """Remove and return ``(key, token)`` of the timers due at ``now_s`` or before, earliest first.

        ``limit`` caps how many are returned (the rest stay due for the next call), so a loop
        that wakes after a long pause can send its backlog in bounded batches.
        """
        heap, live = self._heap, self._live
        fired: list[tuple[str, object]] = []
        while heap and heap[0][0] <= now_s:
            if limit is not None and len(fired) >= limit:
                break
            entry = heappop(heap)
            key = entry[1]
            if live.get(key) is entry:
                del live[key]
                fired.append((key, _token(entry)))
            else:
                self._forget_stale(key)
        return fired

    def next_due_s(self) -> float | None:
        """When the earliest pending timer is due (``None`` when there is none)."""
        heap, live = self._heap, self._live
        while heap and live.get(heap[0][1]) is not heap[0]:
            self._forget_stale(heappop(heap)[1])
        return heap[0][0] if heap else None

    def load(self, items: Iterable[tuple[str, float, object]]) -> int:
        """Schedule many ``(key, due, token)`` at once — the rebuild after a partition assignment.

        Later items win over earlier ones and over pending timers of the same key, as with
        ``schedule``; the heap is rebuilt in O(n) instead of n pushes. Returns how many were given.
        """
        live = self._live
        count = 0
        for key, due_at_s, token in items:
            due = float(due_at_s)
            if not math.isfinite(due):
                raise ValueError(f"{key}: due must be a finite number of seconds (got {due_at_s!r})")
            live[key] = (due, key, token)
            count += 1
        self._compact()
        return count

    def drop(self, predicate: Callable[[str], bool]) -> int:
        """Forget every timer whose key satisfies ``predicate`` (e.g. keys of revoked partitions)."""
        doomed = [key for key in self._live if predicate(key)]
        for key in doomed:
            del self._live[key]
        if doomed:
            self._compact()
        return len(doomed)

    def clear(self) -> None:
        """Forget every timer."""
        self._heap.clear()
        self._live.clear()
        self._stale.clear()

    # --- internals ----------------------------------------------------------------------

    def _forget_stale(self, key: str) -> None:
        left = self._stale.get(key, 0) - 1
        if left > 0:
            self._stale[key] = left
        else:
            self._stale.pop(key, None)

    def _maybe_compact(self) -> None:
        if len(self._heap) > 2 * len(self._live) + _COMPACT_SLACK:
            self._compact()

    def _compact(self) -> None:
        # Only live entries remain, one per key, so no (due, key) tie is possible any more:
        # the stale bookkeeping starts afresh.
        self._heap = list(self._live.values())
        heapify(self._heap)
        self._stale.clear()

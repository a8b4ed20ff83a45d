"""Process commands in batches: apply in memory, one acknowledged publish, then write the states.

A batch turns one Kafka round trip per command into one per batch, and decodes each entity's
state once per batch instead of once per command. The order that makes crashes harmless is
kept: every message of the batch is acknowledged before any state of the batch is written.

Faust gives a table write the changelog partition of the *current event*, and a batch spans
partitions, so each state is read and written "acting for" the last event of its key (every
event of a key comes from the same partition).
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event  # private: the event a table read or write belongs to

__all__ = ["BATCH", "WITHIN_S", "acting_for"]

#: Most commands per batch, and how long to wait for more before processing what has come.
BATCH = 200
WITHIN_S = 0.01


@contextmanager
def acting_for(event: Any) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)

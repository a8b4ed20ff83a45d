"""At most one line per message template and 10 s from aiokafka's warnings and errors.

aiokafka logs every failed attempt of its retry loops: with Kafka down, "Unable connect to node
with id 1", "Unable to update metadata from [1]", "Failed fetch messages from 1: …" and "Group
Coordinator Request failed: …" come back every few milliseconds to every second. A loop without a
backoff once wrote 333,441 lines in a 37 s outage (``streams/metadata_backoff.py``); the backed-off
loops still write ~25 lines a second, all saying the same thing. This filter lets the first
record of a template through, holds back the rest of it for :data:`WINDOW_S`, and the next one it
lets through says how many it held back:
``Unable to update metadata from [1] (and 8,312 more like it in the last 10 s)``.

The key is (logger, level, template): two templates never merge, and neither do a WARNING and an
ERROR of the same one; the arguments are not compared (``Failed fetch messages from %s: %s``
with another error is held back as one like it, and counted). DEBUG and INFO lines pass
untouched: a debug log is asked for to see every request, and aiokafka's INFO lines are rare
(joins, assignments). Held-back records of the last window are only counted in the next line
of their template, so a flood's last seconds may go unmentioned.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LOGGERS", "WINDOW_S", "RepeatLimit", "install"]

#: How long a template's first line stands for the ones like it.
WINDOW_S = 10.0
#: aiokafka's loggers with retry loops (a filter applies to its own logger's records only, not to
#: a child's); :func:`install` adds every other ``aiokafka.*`` logger that exists by then.
LOGGERS = (
    "aiokafka",  # aiokafka.client: connections and metadata
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)


class RepeatLimit(logging.Filter):
    """One WARNING-or-worse record per (logger, level, template) and ``window_s``; the next says
    how many were held back."""

    def __init__(self, window_s: float = WINDOW_S, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        #: (logger, level, template) -> [when its last line went out, records held back since]
        self._last: dict[tuple[str, int, str], list[Any]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not isinstance(record.msg, str):
            return True
        key = (record.name, record.levelno, record.msg)
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.window_s:
                last[1] += 1
                return False
            held = last[1] if last is not None else 0
            since = now - last[0] if last is not None else 0.0
            self._last[key] = [now, 0]
        if held:
            # The text added has no "%": the handler still formats the template with its arguments.
            record.msg = f"{record.msg} (and {held:,} more like it in the last {since:.0f} s)"
        return True


def install(window_s: float = WINDOW_S) -> None:
    """Put one :class:`RepeatLimit` on each of aiokafka's loggers (idempotent), after the filters
    already there (``streams/log_redaction.py`` matches templates as aiokafka wrote them)."""
    names = set(LOGGERS) | {name for name in logging.root.manager.loggerDict if name.startswith("aiokafka.")}
    for name in sorted(names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatLimit) for f in logger.filters):
            logger.addFilter(RepeatLimit(window_s))

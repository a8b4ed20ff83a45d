"""A table's persisted changelog offset moves only over records its store has seen (no gap skipped).

Each RocksDB partition store keeps the offset of the last changelog record it holds; recovery
reads the changelog from there on (``Recovery._add``). Faust 0.15 also stores the offset of
every changelog record *this worker produced* (``Collection._on_changelog_sent``, at-least-once
branch), on the assumption that nobody else writes the partition. A worker that lost its
partitions without knowing it breaks that: paused (SIGSTOP, a VM freeze) past its session, it
was replaced by another worker that wrote offsets 313-334 of ``lead_state``'s changelog; on
waking it finished its old batch and wrote 335, Faust stored 335, and when the partition came
back to it the recovery began at 335 and never read 313-334 (deploy audit, session 16: 50
accepted leads answered 404 for good, 6 showed stale states).

The fix: a produced offset becomes the persisted one only when it directly follows it
(``stored + 1``), or is offset 0 with nothing stored. Otherwise the store keeps the old offset,
and the next recovery reads the gap (and our own write after it; replaying records is what
recovery does). Cases:

* Normal active writes after a recovery or a standby's promotion: the recovery left the store
  at the last record it applied, the highwater less one, so the next write follows it.
  Compaction never removes a partition's last record, so this holds on compacted changelogs.
* A fresh store with an empty changelog: our first write is offset 0. With nothing stored and a
  first write elsewhere (records we never read, or a partition whose records retention deleted),
  nothing is stored: recovery reads the partition from its start, as it did before.
* A producer retry that duplicated a batch (the first attempt was stored, its answer lost) also
  leaves a gap of records that are ours: the offset then stays put until the next recovery,
  which re-reads them (cost: a longer recovery, never a wrong state).
* Callbacks come in offset order for a partition (aiokafka has one batch in flight per
  partition and resolves a batch's futures in order), so a run of our own writes advances.
* The in-memory store keeps no offset (``persisted_offset`` is ``None``, ``set`` does nothing):
  unchanged. Records applied by recovery or a standby set the offset through the store's
  ``apply_changelog_batch``, not here: unchanged (they are records the store has seen).
* ``processing_guarantee="exactly_once"`` keeps Faust's branch (offsets stored at commit).
* A recovery that starts past the stored offset (``Recovery._build_offsets``: reading starts
  after ``max(stored, earliest - 1)``): the records before the partition's earliest offset were
  deleted by retention (``team_sla_minute``/``team_sla_5min`` are ``compact,delete``; another
  worker may have written and retention removed a whole stretch), so no recovery can ever read
  them. If nothing is left to read, nothing is applied and the stored offset would stay behind:
  every write of ours would then be held, and logged, for ever. So when the active recovery's
  starting points are built, each one past the stored offset becomes the stored offset
  (``follow_recovery_start``): what lies below it exists nowhere, and what lies after it the
  recovery reads. Our writes then follow on.

This keeps recovery complete; it cannot keep a zombie's own late record from being the newest
in the changelog (``streams/stall_guard.py`` stops the zombie before it writes).
"""
from __future__ import annotations

import logging
from typing import Any

from faust.stores import memory as faust_memory
from faust.tables.base import Collection
from faust.tables.recovery import Recovery

__all__ = ["follow_recovery_start", "install", "next_persisted"]

log = logging.getLogger(__name__)

_installed = False
#: (store id, partition, stored offset) already logged as held: one line per gap, not per write.
_logged: set[tuple[int, Any, int | None]] = set()


def next_persisted(stored: int | None, produced: int) -> int | None:
    """The offset to persist after our record at ``produced`` was stored, or ``None``: keep ``stored``.

    Only a record right after the last one the store holds (``stored + 1``; offset 0 when it holds
    none) may advance it: any other offset means records between were written by someone else
    (or by an earlier attempt of ours) and never applied here.
    """
    if produced == (0 if stored is None else stored + 1):
        return produced
    return None


def _on_changelog_sent(self: Any, fut: Any) -> None:
    """``Collection._on_changelog_sent`` (at-least-once): persist the offset only when no gap."""
    res = fut.result()  # a failed send raises here, as in Faust's
    if self.app.in_transaction:
        self.app.tables.persist_offset_on_commit(self.data, res.topic_partition, res.offset)
        return
    if isinstance(self.data, faust_memory.Store):
        return  # keeps no offset: every recovery reads the whole changelog
    tp = res.topic_partition
    stored = self.data.persisted_offset(tp)
    offset = next_persisted(stored, res.offset)
    if offset is not None:
        self.data.set_persisted_offset(tp, offset)
        return
    if stored is not None and res.offset <= stored:
        return  # already covered (a recovery applied past it): nothing skipped
    mark = (id(self.data), tp, stored)
    if mark not in _logged:
        if len(_logged) > 10_000:
            _logged.clear()
        _logged.add(mark)
        log.warning("table %s: changelog %s:%s got our record at offset %s while the store holds %s: the records "
                    "between were never applied here (written by another worker while this one had lost the "
                    "partition, sent twice by a retry, or deleted by retention before a recovery read them); "
                    "%s so the next recovery reads what is left of them",
                    self.name, tp.topic, tp.partition, res.offset,
                    "none" if stored is None else f"up to {stored}",
                    "no offset is stored" if stored is None else f"the stored offset stays at {stored}")


def follow_recovery_start(table: Any, tp: Any, start: int | None) -> None:
    """Store ``start``, where an active recovery of ``tp`` starts reading after, when it lies past the
    stored offset: the records up to it were deleted by retention (Faust starts at the partition's
    earliest offset less one), so the store has seen all of them that still exist."""
    if start is None or start < 0 or isinstance(table.data, faust_memory.Store) or table.app.in_transaction:
        return
    stored = table.data.persisted_offset(tp)
    if stored is not None and start <= stored:
        return
    table.data.set_persisted_offset(tp, start)
    log.info("table %s: changelog %s:%s: recovery starts after offset %s, past the stored %s (retention deleted "
             "the records before it): the stored offset follows, so this worker's next write there is the next record",
             table.name, tp.topic, tp.partition, start, "none" if stored is None else stored)


def install() -> None:
    """Patch ``Collection._on_changelog_sent`` and ``Recovery._build_offsets`` (once per process)."""
    global _installed
    if _installed:
        return
    Collection._on_changelog_sent = _on_changelog_sent  # type: ignore[method-assign]
    build_offsets = Recovery._build_offsets

    async def _build_offsets(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await build_offsets(self, consumer, tps, destination, title)
        if title == "active":
            for tp in tps:
                table = self.tp_to_table.get(tp)
                if table is not None:
                    follow_recovery_start(table, tp, destination.get(tp))

    Recovery._build_offsets = _build_offsets  # type: ignore[method-assign]
    _installed = True

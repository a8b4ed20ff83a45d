"""A fix for a faust-streaming 0.15 consumer race that loses records across a rebalance.

When a rebalance starts, Faust stops the flow and, once the new generation is assigned, skips
every record still queued from before (``Stream._py_aiter``: "Skipping message ... generation_id").
It also *acknowledges* each record it skips. Between the revoke and the seek back to the
committed offsets (which waits for table recovery), the consumer has forgotten the committed
offset of the partition, so such an ack is taken as progress: the periodic commit writes the
skipped offsets, the seek then starts after them, and those records are never processed.

Seen here as whole runs of accepted leads never captured after a ``kill -9`` and restart (the
restarted worker joins while its dead predecessor still holds a place in the group, so a second
rebalance follows a few seconds later, while records are queued): offsets 107-118 of a partition
of ``leads.inbound`` committed unprocessed, 106 and 119 processed.

The fix: an ack is recorded only for a record of the current generation while the flow is on.
Any other ack still releases the record (so a rebalance never waits for it) but does not move
the committed offset, so after the seek the record is delivered again and processed: at least
once, as every leadflow command is idempotent.
"""
from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer
from mode.utils.futures import notify

__all__ = ["install", "ack_counts"]

_installed = False


def ack_counts(message: Any, app: Any) -> bool:
    """Whether acknowledging ``message`` may move the committed offset of its partition."""
    return bool(message.generation_id == app.consumer_generation_id and app.flow_control.is_active())


def install() -> None:
    """Patch ``Consumer.ack`` once per process (idempotent)."""
    global _installed
    if _installed:
        return
    original = Consumer.ack

    def ack(self: Consumer, message: Any) -> bool:
        if ack_counts(message, self.app):
            return original(self, message)
        # Released, not recorded: the rebalance's wait for in-flight records must not hang on it.
        message.acked = True
        self._unacked_messages.discard(message)
        notify(self._waiting_for_ack)
        return False

    Consumer.ack = ack  # type: ignore[method-assign]
    _installed = True

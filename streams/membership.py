"""Watch this worker's consumer-group membership; stop the worker loudly rather than hang or fight.

With static membership (``LEADFLOW_INSTANCE_ID``) two failure modes would otherwise be silent:

* **The group coordination died.** aiokafka's coordination task ends on an unexpected error and
  nothing restarts it: the worker stays up, never (re)joins the group and never becomes ready.
  A static member that rejoined under another URL than the one its old assignment was made for
  hits this: Faust's assignor asserts the URL and the task dies.
* **Two live processes share one instance id.** The broker hands the id to whichever joined
  last; the other's next heartbeat is refused (aiokafka's heartbeat cannot carry the instance
  id, so it sees "unknown member", not "fenced"), it rejoins, takes the id back and fences
  the first: both keep stealing the same partitions, each processing them for seconds at a
  time. Such a rejoin keeps the group's generation (no rebalance happens) but changes the
  member id; a legitimate one (a rebalance, a session that expired) changes the generation.

Either way the worker stops with an error that names the instance id, so a supervisor restarts
it and the logs say why. ``TakeoverWatch`` is the pure decision; ``watch_membership`` polls.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from leadflow.errors import LeadflowError

__all__ = ["MembershipLost", "TakeoverWatch", "watch_membership"]

log = logging.getLogger(__name__)


class MembershipLost(LeadflowError):
    """This worker cannot keep its place in the consumer group; it must stop."""


@dataclass
class TakeoverWatch:
    """Count rejoins that kept the generation but not the member id: the instance id was taken."""

    #: Takeovers within ``window_s`` that stop the worker. One is tolerated: a process that
    #: started with this worker's id and died at once (e.g. on the URL check) causes one.
    limit: int = 2
    window_s: float = 300.0
    _last: tuple[str, int] | None = None
    _takeovers: deque[float] = field(default_factory=deque)

    def observe(self, member_id: str, generation: int, now: float) -> int:
        """Record one stable reading; return the takeovers seen in the window (0: none now)."""
        if not member_id or generation < 0:
            return 0  # between a reset and the next join
        last, self._last = self._last, (member_id, generation)
        if last is None or last == (member_id, generation) or last[1] != generation:
            return 0
        self._takeovers.append(now)
        while self._takeovers and now - self._takeovers[0] > self.window_s:
            self._takeovers.popleft()
        return len(self._takeovers)


def _coordinator(app: Any) -> Any:
    """aiokafka's group coordinator under Faust's consumer thread, or None before it exists."""
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    return getattr(consumer, "_coordinator", None)


async def watch_membership(app: Any, instance_id: str | None, interval_s: float = 1.0) -> None:
    """Raise ``MembershipLost`` when coordination has died or the instance id keeps being taken."""
    watch = TakeoverWatch()
    while True:
        await asyncio.sleep(interval_s)
        coordinator = _coordinator(app)
        if coordinator is None:
            continue
        task = getattr(coordinator, "_coordination_task", None)
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            raise MembershipLost(
                f"Kafka group coordination stopped ({task.exception()!r}); instance id {instance_id!r}. "
                "With static membership this happens when a worker joins under an instance id whose "
                "assignment was made for another URL: another live worker has this LEADFLOW_INSTANCE_ID, "
                "or this worker's LEADFLOW_WEB_HOST/LEADFLOW_WEB_PORT changed but its instance id did not")
        if instance_id is None:
            continue
        member_id, generation = coordinator.member_id, coordinator.generation
        await asyncio.sleep(0.2)  # the consumer thread sets the two one after the other: read a settled pair
        if (coordinator.member_id, coordinator.generation) != (member_id, generation):
            continue
        takeovers = watch.observe(member_id, generation, asyncio.get_running_loop().time())
        if takeovers:
            log.error("another process joined the group as instance id %s; this worker took it back "
                      "(generation %s, %s time(s) in %.0f s)", instance_id, generation, takeovers, watch.window_s)
        if takeovers >= watch.limit:
            raise MembershipLost(
                f"instance id {instance_id!r} is in use by another live worker (taken back and forth "
                f"{takeovers} times): give each worker its own LEADFLOW_INSTANCE_ID, or none")

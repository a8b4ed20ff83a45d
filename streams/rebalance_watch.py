"""When this worker's current rebalance began, and whether its tables were ever settled: for ``/readyz``.

Since ec3145c a worker that was ready once stays ready (``200``) through a rebalance: every worker
of a group rebalances at once, and a readiness-gated Service had no worker for 5-6 s per rollout
step. The s16 review found two gaps, closed here:

* "ready once" was set by a ``/readyz`` call that answered ``200``: a worker nobody had probed yet
  (or probed only while Kafka refused its writes) answered ``503`` through its first rebalance,
  and one probed once stayed ``200`` whatever happened later. Now it is the fact itself: the
  worker's tables had been settled (recovered, the outcome board loaded) when a rebalance began.
* the ``200`` had no end: a rebalance that never finishes (a group that keeps rebalancing, a
  recovery that never completes) kept the worker in rotation for ever. ``/readyz`` now bounds it
  (``streams/web.py``, ``READY_THROUGH_REBALANCE_S``), with the time measured from the rebalance's
  start as Faust reports it, not from whenever somebody asked.

It is a Faust sensor: Faust calls ``on_rebalance_start`` synchronously when the consumer revokes
partitions, the earliest moment a rebalance is known (``faust/transport/drivers/aiokafka.py``).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from faust.sensors import Sensor

__all__ = ["RebalanceWatch"]


class RebalanceWatch(Sensor):
    """The start of the current unsettled period, and whether the worker has ever been settled.

    ``settled()`` says whether the tables are settled *apart from* the rebalance flag (Faust sets
    that flag before it calls the sensors): recovered and the outcome board loaded. A rebalance
    that begins while the previous one is still recovering continues the same period: the worker
    has not been settled in between, so its time keeps counting.
    """

    def __init__(self, settled: Callable[[], bool], clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._settled = settled
        self._clock = clock
        #: When the current unsettled period began (the start-up's first rebalance, then each
        #: rebalance that found the tables settled); ``None`` before the first rebalance.
        self.since: float | None = None
        #: Whether the tables were settled when a rebalance began: the worker has been ready.
        self.ready_once = False

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        state: dict[str, Any] = super().on_rebalance_start(app)
        settled = self._settled()  # never at the start-up's first rebalance: nothing recovered yet
        self.ready_once = self.ready_once or settled
        if settled or self.since is None:
            self.since = self._clock()
        return state

    def lasted(self) -> float:
        """Seconds since the current unsettled period began; call it while the worker is unsettled.

        A period Faust did not report (a sensor added after the first rebalance) counts from the
        first call: late, never endless."""
        if self.since is None:
            self.since = self._clock()
        return max(0.0, self._clock() - self.since)

"""The Kafka consumer on the worker's own event loop, instead of in a thread of its own.

Faust runs aiokafka's consumer in a ``ServiceThread`` with a second event loop, and every call
into it (each fetch, each commit, each seek) goes through a method queue and back with
``call_soon_threadsafe`` on both loops. Both threads then take turns with the GIL: py-spy at a
steady 55 leads/s showed the consumer thread busy 35% of the time (half of it parsing fetch
responses) and the event loop losing ~17% of its time in socket writes, waiting for the GIL
back (docs/PERFORMANCE.md). Nothing in leadflow blocks the loop for long (RocksDB reads and
writes are sub-millisecond, the slow work is awaited I/O), so the thread buys nothing here
and costs a hand-off per call.

:class:`InlineConsumer` keeps everything of Faust's aiokafka consumer but runs its
``AIOKafkaConsumerThread`` as a plain service on the worker's loop: ``call_thread`` awaits the
method directly, ``start``/``stop`` run the thread's start and shutdown sequence in place. The
heartbeat runs on the same loop, so a callback that blocked the loop for longer than the
session timeout (10 s, ``streams/app.py``) would now cost the partitions; none comes close.

``LEADFLOW_CONSUMER_THREAD=1`` brings Faust's own thread back (a switch for A/B runs and a way
out if a deployment's workload blocks the loop).

The fetch wait: Faust asks the broker to hold an empty fetch for 1.5 s (``fetch_max_wait_ms``,
fixed in its driver), and aiokafka keeps one fetch in flight per broker. When a stream's buffer
is full, Faust stops taking that partition's records; aiokafka then fetches only the other
partitions, and if those are quiet the broker holds that fetch for the whole 1.5 s, while the
busy partitions, taken again a moment later, cannot be fetched until it returns. Repeated under
load this starved the worker for ~10 s at a time (docs/PERFORMANCE.md, session 6, "Stalls").
``FETCH_MAX_WAIT_MS`` bounds that wait; an idle worker fetches that much more often.
"""
from __future__ import annotations

from typing import AbstractSet, Any, Awaitable, Callable

from faust.transport.consumer import ensure_TPset
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from mode import Service
from mode.utils.futures import maybe_async

__all__ = ["FETCH_MAX_WAIT_MS", "InlineConsumer", "InlineConsumerThread", "install"]

#: How long the broker may hold a fetch that finds no record (Faust's driver: 1,500 ms).
FETCH_MAX_WAIT_MS = 100


class InlineConsumerThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer "thread", run on the caller's event loop."""

    _assigned_from: object = None
    _assigned: frozenset[Any] = frozenset()

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        loop = kwargs["loop"]
        super().__init__(consumer, thread_loop=loop, **kwargs)

    async def start(self) -> None:
        self._thread_started.set()
        await Service._default_start(self)  # on_start creates and starts the aiokafka consumer

    async def stop(self) -> None:
        # ServiceThread.stop waits for a thread to run this sequence (``_shutdown_thread``).
        if not self._started.is_set() or self._stopped.is_set():
            return
        self._stopped.set()
        await self.on_stop()
        await self.on_thread_stop()  # stops the aiokafka consumer: leaves the group, closes sockets
        await self._default_stop_children()
        await self._default_stop_futures()
        await self._default_stop_exit_stacks()
        self._shutdown.set()
        await self.on_shutdown()

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when aiokafka starts its fetcher
        return consumer

    async def call_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return await maybe_async(fun(*args, **kwargs))

    def assignment(self) -> AbstractSet[Any]:  # type: ignore[override]
        """The assigned partitions as Faust's TP tuples, converted once per assignment.

        Faust converts aiokafka's set afresh on every call, and its commit calls this once per
        offset it commits: quadratic in the partitions, 1.7% of the event loop at 70 leads/s.
        aiokafka's assignment is an immutable set per generation, so its identity says when to
        convert again. Read-only (a frozenset): no caller in Faust changes what it gets.
        """
        tps = self._ensure_consumer().assignment()
        if tps is not self._assigned_from:
            self._assigned = frozenset(ensure_TPset(tps))
            self._assigned_from = tps
        return self._assigned

    async def cast_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        self.add_future(maybe_async(fun(*args, **kwargs)))


class InlineConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer with its consumer "thread" on the worker's loop."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return InlineConsumerThread(self, loop=self.loop, beacon=self.beacon)


def install(app: Any) -> None:
    """Make ``app`` create :class:`InlineConsumer` (call before the app's consumer exists)."""
    app.transport.Consumer = InlineConsumer

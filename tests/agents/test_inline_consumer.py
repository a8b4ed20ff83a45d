"""The Kafka consumer runs on the worker's event loop unless ``LEADFLOW_CONSUMER_THREAD`` asks for
Faust's thread (``streams/inline_consumer.py``). Starting, fetching, committing and stopping
against a real broker are exercised by every integration test's worker."""
from __future__ import annotations

import asyncio
import threading

import pytest
from aiokafka import TopicPartition
from faust.transport.drivers.aiokafka import Consumer as ThreadedConsumer
from faust.types import TP

from leadflow.errors import ConfigError
from streams.app import create_app
from streams.inline_consumer import FETCH_MAX_WAIT_MS, InlineConsumer, InlineConsumerThread
from streams.settings import Settings


def test_the_consumer_is_inline_by_default_and_the_thread_can_be_asked_for() -> None:
    assert Settings.from_env({}).consumer_thread is False
    assert Settings.from_env({"LEADFLOW_CONSUMER_THREAD": "1"}).consumer_thread is True
    assert create_app(Settings.from_env({})).transport.Consumer is InlineConsumer
    threaded = create_app(Settings.from_env({"LEADFLOW_CONSUMER_THREAD": "true"}))
    assert threaded.transport.Consumer is ThreadedConsumer


def test_a_bad_switch_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="LEADFLOW_CONSUMER_THREAD"):
        Settings.from_env({"LEADFLOW_CONSUMER_THREAD": "maybe"})


async def test_calls_into_the_consumer_run_on_the_callers_loop_and_thread() -> None:
    app = create_app(Settings.from_env({}))
    consumer = app.consumer
    assert isinstance(consumer, InlineConsumer)
    thread = consumer._thread
    assert isinstance(thread, InlineConsumerThread)
    loop = asyncio.get_running_loop()
    assert thread.thread_loop is loop and thread.loop is loop

    seen: list[tuple[int, asyncio.AbstractEventLoop]] = []

    async def probe(value: int, *, plus: int) -> int:
        seen.append((threading.get_ident(), asyncio.get_running_loop()))
        return value + plus

    assert await thread.call_thread(probe, 40, plus=2) == 42
    assert seen == [(threading.get_ident(), loop)]

    async def fails() -> None:
        raise ValueError("from the consumer")

    with pytest.raises(ValueError, match="from the consumer"):
        await thread.call_thread(fails)


async def test_stop_before_start_does_nothing_and_a_started_thread_stops_once() -> None:
    app = create_app(Settings.from_env({}))
    thread = app.consumer._thread
    await thread.stop()  # never started: nothing to stop, and no thread to wait for
    assert not thread._stopped.is_set()

    closed: list[str] = []

    async def no_broker_start() -> None:  # the aiokafka consumer needs a broker: stand in for it
        closed.append("started")

    async def no_broker_stop() -> None:
        closed.append("stopped")

    thread.on_start = no_broker_start  # type: ignore[method-assign]
    thread.on_thread_stop = no_broker_stop  # type: ignore[method-assign]
    await thread.start()
    assert thread._started.is_set() and thread._thread is None  # no OS thread was made
    await thread.stop()
    await thread.stop()
    assert closed == ["started", "stopped"]
    assert thread._shutdown.is_set()


class _Aiokafka:
    """Just aiokafka's ``assignment()``: one immutable set per generation, as aiokafka keeps it."""

    def __init__(self, tps: frozenset[TopicPartition]) -> None:
        self.tps = tps

    def assignment(self) -> frozenset[TopicPartition]:
        return self.tps


def test_the_assignment_is_converted_once_per_generation() -> None:
    thread = create_app(Settings.from_env({})).consumer._thread
    first = frozenset({TopicPartition("lead.commands", 0), TopicPartition("lead.commands", 1)})
    thread._consumer = _Aiokafka(first)  # type: ignore[assignment]
    got = thread.assignment()
    assert got == {TP("lead.commands", 0), TP("lead.commands", 1)}
    assert all(type(tp) is TP for tp in got)
    assert thread.assignment() is got  # same generation: not converted again
    thread._consumer = _Aiokafka(frozenset({TopicPartition("team.commands", 3)}))  # type: ignore[assignment]
    assert thread.assignment() == {TP("team.commands", 3)}
    with pytest.raises(AttributeError):
        got.add(TP("x", 0))  # type: ignore[attr-defined]


async def test_an_empty_fetch_is_held_briefly_not_for_fausts_1_5_s() -> None:
    """With one fetch in flight per broker, a fetch of quiet partitions held 1.5 s kept busy ones
    waiting that long each time a stream's buffer filled: ~10 s stalls under load."""
    app = create_app(Settings.from_env({}))
    thread = app.consumer._thread
    consumer = thread._create_worker_consumer(app.transport)  # what on_start creates and starts
    try:
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS <= 200
    finally:
        await consumer.stop()  # never started: only closes it

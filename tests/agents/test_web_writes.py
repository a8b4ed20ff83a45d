"""The API's writes to Kafka (``streams/web.py``): bounded, never cancelling an ack, refused at once after a failure."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, NotEnoughReplicasError

import streams.web as web
from connectors.api.write_gate import WriteGate, WritesPaused
from leadflow.errors import TransientError, Unconfirmed
from streams.rebalance_watch import RebalanceWatch
from streams.topics import leads_inbound


class FakeTopic:
    """``Topic.send`` as Faust does it: queue the record and hand back the producer's future."""

    def __init__(self, acks: list[asyncio.Future[Any] | Exception]) -> None:
        self.acks = acks
        self.sent = 0

    async def send(self, *, key: str, value: Any) -> asyncio.Future[Any]:
        self.sent += 1
        ack = self.acks.pop(0)
        if isinstance(ack, Exception):
            raise ack
        # What Faust's Topic.publish_message does: its _on_published reads the result when done.
        ack.add_done_callback(lambda fut: fut.result() if not fut.exception() else None)
        return ack


class FakeMetadata:
    """aiokafka's ``ClusterMetadata``, as far as the broker check reads it: each partition on three
    replicas, all in sync unless ``isr`` says how many are."""

    def __init__(self, leaders: dict[int, int | None], isr: dict[int, int] | None = None) -> None:
        self.leaders = leaders
        topic = leads_inbound.get_topic_name()
        self._partitions = {topic: {p: SimpleNamespace(replicas=[0, 1, 2], isr=[0, 1, 2][:(isr or {}).get(p, 3)])
                                    for p in leaders}}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.leaders) if topic == leads_inbound.get_topic_name() and self.leaders else None

    def leader_for_partition(self, tp: Any) -> int | None:
        return self.leaders.get(tp.partition)


class FakeClient:
    """The producer's ``AIOKafkaClient``: answers what the test sets (an exception is raised)."""

    def __init__(self) -> None:
        self.metadata: FakeMetadata | Exception = KafkaConnectionError("Unable to bootstrap")
        self.reachable: set[int] = {0}
        self.hang = False

    async def fetch_all_metadata(self) -> FakeMetadata:
        if self.hang:
            await asyncio.sleep(60)
        if isinstance(self.metadata, Exception):
            raise self.metadata
        return self.metadata

    async def ready(self, node_id: int) -> bool:
        return node_id in self.reachable

    #: The topic's min.insync.replicas as DescribeConfigs answers it (None: not allowed to describe).
    min_isr: str | None = "2"

    async def send(self, node_id: int, request: Any) -> Any:
        entries = [] if self.min_isr is None else [{"config_names": "min.insync.replicas", "config_value": self.min_isr}]
        answer = {"resources": [{"error_code": 0 if entries else 29, "config_entries": entries}]}
        return SimpleNamespace(to_object=lambda: answer)


class FakeApp:
    """What the engine reads of the Faust app: ready in every other respect, with a broker to check."""

    def __init__(self) -> None:
        self.rebalancing_count, self.rebalancing, self.consumer, self.should_stop = 1, False, None, False
        self.stop_requested_at: float | None = None
        completed = asyncio.Event()
        completed.set()
        self.table_recovery = SimpleNamespace(in_recovery=False, completed=completed)
        self.client = FakeClient()
        self.producer = SimpleNamespace(_producer=SimpleNamespace(client=self.client))
        self.futures: list[asyncio.Future[Any]] = []
        self.now = 1000.0  # the rebalance watch's clock

    def begin_rebalance(self) -> None:
        """What Faust does when the consumer revokes its partitions (``App.on_rebalance_start``)."""
        self.rebalancing = True
        self.rebalancing_count += 1
        self.sensor.on_rebalance_start(self)

    def add_future(self, coro: Any) -> asyncio.Future[Any]:
        future = asyncio.ensure_future(coro)
        self.futures.append(future)
        return future

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0.01)  # the test's watch checks at once


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> web.Engine:
    monkeypatch.setattr(web, "_ACK_TIMEOUT_S", 0.2)
    monkeypatch.setattr(web, "outcome_snapshot", SimpleNamespace(loaded=True))
    engine = web.Engine.__new__(web.Engine)  # no runtime: the write path and readiness are under test
    engine.app = FakeApp()  # type: ignore[assignment]
    engine._gate = WriteGate(cooldown_s=60.0)
    engine._watch, engine._last_check, engine._idle = None, None, None
    engine.rebalances = RebalanceWatch(engine._tables_ready, clock=lambda: engine.app.now)  # type: ignore[attr-defined]
    return engine


def _fake_app(engine: web.Engine) -> FakeApp:
    assert isinstance(engine.app, FakeApp)
    return engine.app


async def _until(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_an_ack_not_in_time_is_unconfirmed_and_its_future_is_left_for_faust_s_callback(
        engine: web.Engine) -> None:
    loop = asyncio.get_running_loop()
    callback_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: callback_errors.append(context))
    ack: asyncio.Future[Any] = loop.create_future()
    started = loop.time()
    with pytest.raises(Unconfirmed):
        await engine._acked([(FakeTopic([ack]), "k", b"v")])
    assert loop.time() - started < 0.5
    # Cancelling it made Faust's Topic._on_published raise CancelledError in an event-loop
    # callback: "Exception in callback Topic._on_published", one ERROR traceback per capture.
    assert not ack.cancelled()
    ack.set_result("stored after all")
    await asyncio.sleep(0)
    assert callback_errors == []


async def test_after_a_write_kafka_did_not_take_the_next_is_refused_at_once_without_sending(
        engine: web.Engine) -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(Unconfirmed):
        await engine._acked([(FakeTopic([loop.create_future()]), "k", b"v")])
    topic = FakeTopic([loop.create_future()])
    started = loop.time()
    with pytest.raises(WritesPaused) as refused:
        await engine._acked([(topic, "k", b"v")])
    assert loop.time() - started < 0.05 and topic.sent == 0
    assert refused.value.retry_after_s >= 1


async def test_a_refused_send_is_not_stored_and_a_partly_acknowledged_batch_is_unconfirmed(
        engine: web.Engine) -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TransientError) as refused:
        await engine._acked([(FakeTopic([ConnectionError("no broker")]), "k", b"v")])
    assert type(refused.value) is TransientError  # nothing was queued: "not stored" is true

    engine._gate = WriteGate(cooldown_s=60.0)
    stored, lost = loop.create_future(), loop.create_future()
    stored.set_result("ok")
    lost.set_exception(ConnectionError("broker gone"))
    topic = FakeTopic([stored, lost])
    with pytest.raises(Unconfirmed):  # one record is stored: "not stored" would be false
        await engine._acked([(topic, "a", b"v"), (topic, "b", b"v")])


async def test_acknowledged_writes_pass_and_a_good_probe_reopens_writes(engine: web.Engine) -> None:
    loop = asyncio.get_running_loop()
    engine._gate = WriteGate(cooldown_s=0.0)
    with pytest.raises(Unconfirmed):
        await engine._acked([(FakeTopic([loop.create_future()]), "k", b"v")])
    acked = loop.create_future()
    acked.set_result("ok")
    await engine._acked([(FakeTopic([acked]), "k", b"v")])  # the probe
    assert engine._gate.failing_for() is None


# --- readiness: a worker Kafka does not take writes from is not ready until Kafka answers ----------


async def test_a_write_kafka_did_not_take_makes_the_worker_unready_and_it_says_why(engine: web.Engine) -> None:
    assert engine.readiness().ready
    with pytest.raises(TransientError):
        await engine._acked([(FakeTopic([ConnectionError("no broker")]), "k", b"v")])
    readiness = engine.readiness()
    assert not readiness.ready
    assert readiness.detail.startswith("Kafka has not taken this worker's writes for 0 s (")
    assert readiness.detail.endswith("): captures answer 503; ready again when Kafka answers")
    # While Kafka is away, the watch checks the broker and says what it found.
    await _until(lambda: engine._last_check is not None, "a check of the broker")
    assert "(the last check of the broker: KafkaConnectionError)" in engine.readiness().detail
    assert not engine.readiness().ready


async def test_the_worker_is_ready_again_once_the_broker_answers_without_any_write(engine: web.Engine) -> None:
    # Unready, it gets no write to probe with: the watch's check of the broker brings it back.
    app = _fake_app(engine)
    with pytest.raises(TransientError):
        await engine._acked([(FakeTopic([ConnectionError("no broker")]), "k", b"v")])
    await _until(lambda: engine._last_check is not None, "a check of the broker")
    assert not engine.readiness().ready
    app.client.metadata = FakeMetadata({0: 0, 1: 0})
    await _until(lambda: engine.readiness().ready, "ready again")
    detail = engine.readiness().detail
    assert "Kafka answers again after" in detail and "the next write probes it" in detail
    await asyncio.gather(*app.futures)  # the watch ends once the worker is ready
    # The writes themselves reopen only with a write Kafka acknowledges (the gate's probe).
    with pytest.raises(WritesPaused):
        await engine._acked([(FakeTopic([]), "k", b"v")])


async def test_one_watch_at_a_time_and_a_new_one_after_the_next_outage(engine: web.Engine) -> None:
    app = _fake_app(engine)
    engine._gate = WriteGate(cooldown_s=0.0)
    loop = asyncio.get_running_loop()
    for _ in range(3):
        with pytest.raises(TransientError):
            await engine._acked([(FakeTopic([ConnectionError("no broker")]), "k", b"v")])
    assert len(app.futures) == 1
    app.client.metadata = FakeMetadata({0: 0})
    await asyncio.gather(*app.futures)
    acked = loop.create_future()
    acked.set_result("ok")
    await engine._acked([(FakeTopic([acked]), "k", b"v")])
    assert engine._gate.failing_for() is None and engine.readiness().detail.endswith("tables recovered")
    with pytest.raises(TransientError):
        await engine._acked([(FakeTopic([ConnectionError("no broker")]), "k", b"v")])
    assert len(app.futures) == 2 and not engine.readiness().ready


@pytest.mark.parametrize(("metadata", "reachable", "problem"), [
    (KafkaConnectionError("Unable to bootstrap"), {0}, "KafkaConnectionError"),
    (FakeMetadata({}), {0}, f"no partitions of {leads_inbound.get_topic_name()} in the metadata"),
    (FakeMetadata({0: 0, 1: -1}), {0}, f"a partition of {leads_inbound.get_topic_name()} has no leader"),
    (FakeMetadata({0: 0, 1: 1}), {0}, "no connection to broker 1"),
    (FakeMetadata({0: 0, 1: 1}), {0, 1}, None),
])
async def test_kafka_answers_when_every_partition_captures_go_to_has_a_reachable_leader(
        engine: web.Engine, metadata: Any, reachable: set[int], problem: str | None) -> None:
    client = _fake_app(engine).client
    client.metadata, client.reachable = metadata, reachable
    assert await engine._kafka_problem() == problem


@pytest.mark.parametrize(("isr", "min_isr", "problem"), [
    ({0: 3, 1: 1}, "2", f"partition 1 of {leads_inbound.get_topic_name()} has 1 in-sync replica(s), "
                        "min.insync.replicas=2: Kafka refuses acks=all writes"),
    ({0: 2, 1: 2}, "2", None),
    ({0: 3, 1: 3}, "5", None),  # capped at the 3 replicas, as the broker does: it takes the writes
    ({0: 2, 1: 3}, "5", f"partition 0 of {leads_inbound.get_topic_name()} has 2 in-sync replica(s), "
                        "min.insync.replicas=5: Kafka refuses acks=all writes"),
    ({0: 1, 1: 1}, None, None),  # not allowed to describe the topic: only a write can tell
])
async def test_with_acks_all_too_few_in_sync_replicas_is_a_problem_though_metadata_answers(
        engine: web.Engine, isr: dict[int, int], min_isr: str | None, problem: str | None) -> None:
    client = _fake_app(engine).client
    client.metadata, client.reachable, client.min_isr = FakeMetadata({0: 0, 1: 0}, isr=isr), {0}, min_isr
    assert await engine._kafka_problem() == problem


async def test_the_worker_stays_unready_while_the_broker_refuses_for_too_few_in_sync_replicas(
        engine: web.Engine) -> None:
    # The broker answers metadata all along; it refuses acks=all produces (NOT_ENOUGH_REPLICAS). The
    # check said "answers" after one such refusal, and the worker was ready for the next capture.
    app = _fake_app(engine)
    app.client.metadata = FakeMetadata({0: 0, 1: 0}, isr={0: 1, 1: 3})
    with pytest.raises(TransientError):
        await engine._acked([(FakeTopic([NotEnoughReplicasError()]), "k", b"v")])
    await _until(lambda: engine._last_check is not None, "a check of the broker")
    await asyncio.sleep(0.05)
    assert not engine.readiness().ready
    assert "in-sync replica(s)" in engine.readiness().detail
    app.client.metadata = FakeMetadata({0: 0, 1: 0})  # the replicas caught up
    await _until(lambda: engine.readiness().ready, "ready again")


async def test_a_broker_that_does_not_answer_the_check_is_bounded(
        engine: web.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "_CHECK_TIMEOUT_S", 0.05)
    _fake_app(engine).client.hang = True
    assert await engine._kafka_problem() == "no answer in 0 s"
    _fake_app(engine).producer._producer = None
    assert await engine._kafka_problem() == "the producer is not started"



async def test_the_refused_writes_gauge_follows_the_gate_at_each_scrape(engine: web.Engine) -> None:
    from ops.metrics import Metrics

    clock = [1000.0]
    engine._gate = WriteGate(cooldown_s=60.0, now=lambda: clock[0])
    metrics = Metrics()
    engine.report_to(metrics)

    def refused_s() -> float | None:
        return metrics.registry.get_sample_value("leadflow_kafka_writes_refused_seconds")

    assert refused_s() == 0.0
    with pytest.raises(TransientError):
        await engine._acked([(FakeTopic([ConnectionError("no broker")]), "k", b"v")])
    clock[0] += 42
    assert refused_s() == 42.0  # what /metrics says now, not at the last refresh
    clock[0] += 60  # the cooldown: the next write is the gate's probe, and Kafka takes it
    engine._gate.ok(engine._gate.admit())
    assert refused_s() == 0.0


async def test_an_idle_worker_learns_of_an_outage_from_its_own_check_of_the_broker(engine: web.Engine) -> None:
    # No capture, no API command: the gate never hears of Kafka. /readyz (or a scrape) checks it.
    app = _fake_app(engine)
    assert engine.readiness().ready  # ready, and the first look schedules a check of the broker
    await asyncio.gather(*app.futures)
    readiness = engine.readiness()
    assert not readiness.ready and "the last check of the broker: KafkaConnectionError" in readiness.detail
    # Kafka answers again: the watch makes the worker ready, with no write at all.
    app.client.metadata = FakeMetadata({0: 0})
    await _until(lambda: engine.readiness().ready, "ready again once the broker answers")


async def test_an_idle_check_that_finds_kafka_answering_is_not_repeated_for_a_while(engine: web.Engine) -> None:
    app = _fake_app(engine)
    app.client.metadata = FakeMetadata({0: 0})
    assert engine.readiness().ready
    await asyncio.gather(*app.futures)
    checks = len(app.futures)
    for _ in range(5):
        assert engine.readiness().ready
    assert len(app.futures) == checks == 1  # once per 10 s of quiet, not per request


# --- readiness: stopping, and a rebalance of a worker that was ready -------------------------------

@pytest.mark.parametrize("how", ["SIGTERM received (draining)", "stopping"])
async def test_a_worker_told_to_stop_is_not_ready_at_once(engine: web.Engine, how: str) -> None:
    app = _fake_app(engine)
    assert engine.readiness().ready
    if how == "stopping":
        app.should_stop = True
    else:
        app.stop_requested_at = 12.0
    assert engine.readiness() == web.Readiness(False, "stopping")


def _watched(engine: web.Engine) -> FakeApp:
    app = _fake_app(engine)
    app.sensor = engine.rebalances  # type: ignore[attr-defined]
    return app


async def test_a_rebalance_keeps_a_worker_that_was_ready_in_rotation_but_not_a_starting_one(engine: web.Engine) -> None:
    app = _watched(engine)
    app.rebalancing_count = 0
    app.table_recovery.completed.clear()
    app.begin_rebalance()  # the start-up's first rebalance
    assert engine.readiness() == web.Readiness(False, "rebalancing")  # never ready yet: starting
    app.rebalancing = False
    assert engine.readiness() == web.Readiness(False, "recovering tables")
    app.table_recovery.completed.set()
    app.now += 5
    assert engine.readiness().ready
    app.now += 100
    app.begin_rebalance()  # every worker of the group rebalances when one joins or leaves
    app.now += 3
    readiness = engine.readiness()
    assert readiness.ready and readiness.detail.startswith("rebalancing for 3 s: captures are taken; reads and "
                                                           "commands of leads, reps, teams and accounts answer 503")
    app.rebalancing = False
    app.table_recovery.in_recovery = True  # the partitions it got are being recovered
    app.now += 4
    readiness = engine.readiness()
    assert readiness.ready and readiness.detail.startswith("rebalancing for 7 s (recovering tables): captures are")
    engine._gate.failed(engine._gate.admit())  # Kafka refuses writes: out of rotation, rebalance or not
    assert not engine.readiness().ready
    app.stop_requested_at = 1.0
    assert engine.readiness() == web.Readiness(False, "stopping")


async def test_ready_once_is_the_tables_having_been_settled_not_a_readyz_call(engine: web.Engine) -> None:
    # The s16 review: "ready once" was set by a /readyz that answered 200. A worker nobody had
    # probed yet answered 503 through its first rebalance after the start.
    app = _watched(engine)
    app.rebalancing_count = 0
    app.table_recovery.completed.clear()
    app.begin_rebalance()
    app.rebalancing = False
    app.table_recovery.completed.set()  # settled, and nobody asked /readyz
    app.now += 50
    app.begin_rebalance()
    app.now += 2
    readiness = engine.readiness()
    assert readiness.ready and readiness.detail.startswith("rebalancing for 2 s:"), readiness


@pytest.mark.parametrize("stuck", ["rebalancing", "recovering tables"])
async def test_a_rebalance_that_never_ends_takes_the_worker_out_of_rotation_after_the_bound(
        engine: web.Engine, stuck: str) -> None:
    # The s16 review: a worker ready once stayed 200 for ever through a rebalance that never ended.
    app = _watched(engine)
    assert engine.readiness().ready
    app.begin_rebalance()
    if stuck == "recovering tables":
        app.rebalancing = False
        app.table_recovery.in_recovery = True
    bound = web.READY_THROUGH_REBALANCE_S
    app.now += bound - 1
    assert engine.readiness().ready
    app.now += 2
    readiness = engine.readiness()
    phase = "" if stuck == "rebalancing" else f" ({stuck})"
    assert readiness == web.Readiness(False, f"rebalancing for {bound + 1:.0f} s{phase}: longer than the "
                                             f"{bound:.0f} s a worker that was ready stays in rotation through a rebalance")
    app.rebalancing, app.table_recovery.in_recovery = False, False  # it ends at last
    assert engine.readiness().ready
    app.now += 1000
    app.begin_rebalance()  # the next one counts from its own start
    app.now += 1
    assert engine.readiness().ready


async def test_a_rebalance_during_the_recovery_of_the_last_one_goes_on_counting(engine: web.Engine) -> None:
    app = _watched(engine)
    app.begin_rebalance()
    app.rebalancing = False
    app.table_recovery.in_recovery = True
    app.now += web.READY_THROUGH_REBALANCE_S - 10
    app.begin_rebalance()  # the group rebalances again before the tables were settled
    app.now += 11
    assert not engine.readiness().ready


async def test_the_rebalance_gauge_says_how_long_the_current_rebalance_lasts(engine: web.Engine) -> None:
    from ops.metrics import Metrics

    app = _watched(engine)
    metrics = Metrics()
    engine.report_to(metrics)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("leadflow_rebalance_seconds")

    assert gauge() == 0.0
    app.begin_rebalance()
    app.now += 12.5
    assert gauge() == 12.5
    app.rebalancing = False
    assert gauge() == 0.0

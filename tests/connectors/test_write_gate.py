"""The write gate: refuse at once after Kafka failed a write, one probe at a time, open again on success."""
from __future__ import annotations

import pytest

from connectors.api.write_gate import WriteGate, WritesPaused


class Now:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_closed_lets_every_write_go_at_once() -> None:
    gate = WriteGate(cooldown_s=2.0, now=Now())
    tickets = [gate.admit() for _ in range(3)]  # concurrent writes while Kafka takes them
    assert not any(t.probe for t in tickets)
    assert gate.failing_for() is None


def test_after_a_failure_writes_are_refused_until_the_cooldown_then_one_probe_goes() -> None:
    now = Now()
    gate = WriteGate(cooldown_s=2.0, now=now)
    gate.failed(gate.admit())
    with pytest.raises(WritesPaused) as refused:
        gate.admit()
    assert refused.value.retry_after_s == 2
    now.t += 1.5
    with pytest.raises(WritesPaused) as refused:
        gate.admit()
    assert refused.value.retry_after_s == 1  # never 0: "retry now" would be a busy loop
    now.t += 0.5
    probe = gate.admit()
    assert probe.probe
    with pytest.raises(WritesPaused):
        gate.admit()  # one probe at a time: the others are still answered at once
    gate.ok(probe)
    assert not gate.admit().probe and gate.failing_for() is None


def test_a_failed_probe_opens_the_gate_again_and_the_outage_is_timed_from_its_first_failure() -> None:
    now = Now()
    gate = WriteGate(cooldown_s=2.0, now=now)
    gate.failed(gate.admit())
    now.t += 2.0
    probe = gate.admit()
    now.t += 5.0  # the probe waited out the ack bound
    gate.failed(probe)
    assert gate.failing_for() == 7.0
    with pytest.raises(WritesPaused):
        gate.admit()
    now.t += 2.0
    assert gate.admit().probe


def test_an_abandoned_probe_frees_the_slot_without_news_about_kafka() -> None:
    now = Now()
    gate = WriteGate(cooldown_s=2.0, now=now)
    gate.failed(gate.admit())
    now.t += 2.0
    gate.abandoned(gate.admit())  # the request was cancelled mid-write
    assert gate.failing_for() == 2.0
    assert gate.admit().probe


def test_a_write_admitted_before_the_outage_that_succeeds_closes_the_gate() -> None:
    gate = WriteGate(cooldown_s=2.0, now=Now())
    early, late = gate.admit(), gate.admit()
    gate.failed(late)
    gate.ok(early)  # Kafka acknowledged a write: it takes writes
    assert gate.failing_for() is None and not gate.admit().probe


# --- readiness: not ready from a write Kafka did not take until Kafka is seen answering ------------


def test_ready_while_kafka_takes_writes_and_not_ready_from_the_first_failed_one() -> None:
    now = Now()
    gate = WriteGate(cooldown_s=2.0, now=now)
    gate.ok(gate.admit())
    assert gate.unready_for() is None
    gate.failed(gate.admit())
    now.t += 3.0
    assert gate.unready_for() == 3.0


def test_a_broker_check_that_finds_kafka_answering_makes_it_ready_but_writes_wait_for_their_probe() -> None:
    now = Now()
    gate = WriteGate(cooldown_s=2.0, now=now)
    gate.failed(gate.admit())
    now.t += 2.0
    gate.answered(gate.failures)
    assert gate.unready_for() is None
    assert gate.failing_for() == 2.0  # the gate stays open: only an acknowledged write closes it
    probe = gate.admit()
    assert probe.probe
    gate.ok(probe)
    assert gate.unready_for() is None and gate.failing_for() is None


def test_a_failed_write_after_kafka_answered_makes_it_unready_again() -> None:
    # A broker that answers metadata but refuses produce requests: the probe write fails.
    now = Now()
    gate = WriteGate(cooldown_s=2.0, now=now)
    gate.failed(gate.admit())
    now.t += 2.0
    gate.answered(gate.failures)
    probe = gate.admit()
    now.t += 1.0
    gate.failed(probe)
    assert gate.unready_for() == 3.0  # timed from the first failure of the outage


def test_a_check_begun_before_the_last_failed_write_proves_nothing() -> None:
    gate = WriteGate(cooldown_s=2.0, now=Now())
    first, in_flight = gate.admit(), gate.admit()
    gate.failed(first)
    began_at = gate.failures
    gate.failed(in_flight)  # a write in flight failed while the check ran
    gate.answered(began_at)
    assert gate.unready_for() is not None
    gate.answered(gate.failures)
    assert gate.unready_for() is None


def test_an_answer_while_kafka_takes_writes_changes_nothing() -> None:
    gate = WriteGate(cooldown_s=2.0, now=Now())
    gate.answered(gate.failures)
    gate.failed(gate.admit())
    assert gate.unready_for() is not None  # the earlier answer does not carry over to a later outage

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

"""The timer index: one timer per key, replace/cancel, earliest first, bulk load, drop; model-checked."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sla.timers import TimerIndex


def test_pops_earliest_first_ties_by_key() -> None:
    index = TimerIndex()
    for key, due in [("c", 30.0), ("a", 10.0), ("b", 20.0), ("z", 10.0), ("d", 40.0)]:
        index.schedule(key, due, key.upper())
    assert index.next_due_s() == 10.0
    assert index.pop_due(9.99) == []
    assert index.pop_due(20.0) == [("a", "A"), ("z", "Z"), ("b", "B")]
    assert index.next_due_s() == 30.0 and len(index) == 2
    assert index.pop_due(1e9) == [("c", "C"), ("d", "D")]
    assert index.next_due_s() is None and len(index) == 0


def test_rescheduling_replaces() -> None:
    index = TimerIndex()
    index.schedule("lead", 10.0, 1)
    index.schedule("lead", 50.0, 2)   # later: the old one must not fire
    assert len(index) == 1 and index.get("lead") == (50.0, 2)
    assert index.pop_due(49.0) == []
    index.schedule("lead", 5.0, 3)    # earlier again
    assert index.next_due_s() == 5.0
    assert index.pop_due(100.0) == [("lead", 3)]
    assert index.pop_due(100.0) == [] and index.get("lead") is None


def test_cancel_removes_and_reports() -> None:
    index = TimerIndex()
    index.schedule("a", 1.0)
    index.schedule("b", 2.0)
    assert index.cancel("a") is True
    assert index.cancel("a") is False and index.cancel("never") is False
    assert "a" not in index and "b" in index
    assert index.next_due_s() == 2.0
    assert index.pop_due(10.0) == [("b", None)]


def test_a_cancelled_key_can_be_scheduled_again() -> None:
    index = TimerIndex()
    index.schedule("a", 1.0, "first")
    index.cancel("a")
    index.schedule("a", 1.0, "second")
    assert index.pop_due(1.0) == [("a", "second")]


def test_pop_limit_leaves_the_rest_due() -> None:
    index = TimerIndex()
    for i in range(10):
        index.schedule(f"k{i}", float(i), i)
    assert index.pop_due(100.0, limit=3) == [("k0", 0), ("k1", 1), ("k2", 2)]
    assert index.pop_due(100.0, limit=0) == []
    assert [t for _, t in index.pop_due(100.0)] == list(range(3, 10))


class Opaque:
    """A token with no ordering at all (like an arbitrary object the agent attaches)."""


@dataclass(frozen=True)
class Timer:
    step: int


def test_tokens_are_never_compared() -> None:
    index = TimerIndex()
    index.schedule("k", 5.0, Opaque())
    index.schedule("k", 5.0, None)        # same key and due: stale and new entries tie
    index.schedule("k", 7.0, Opaque())
    index.schedule("k", 5.0, 3)           # back to 5.0 with yet another type
    index.cancel("k")
    index.schedule("k", 5.0, "s")
    for i in range(50):
        index.schedule(f"o{i}", 5.0, Opaque())
    fired = index.pop_due(5.0)
    assert fired[0] == ("k", "s") and len(fired) == 51


def test_the_same_timer_twice_is_a_no_op() -> None:
    index = TimerIndex()
    index.schedule("k", 5.0, Timer(1))
    index.schedule("k", 5.0, Timer(1))    # a replay: equal token, same due
    assert len(index._heap) == 1          # nothing pushed
    assert index.pop_due(5.0) == [("k", Timer(1))]


def test_non_finite_due_times_are_refused() -> None:
    index = TimerIndex()
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError, match="finite"):
            index.schedule("k", bad)
        with pytest.raises(ValueError, match="finite"):
            index.load([("k", bad, None)])
    assert len(index) == 0


def test_load_rebuilds_and_later_items_win() -> None:
    index = TimerIndex()
    index.schedule("kept", 3.0, "old")
    index.schedule("replaced", 1.0, "old")
    assert index.load([("a", 2.0, 1), ("replaced", 9.0, "new"), ("a", 4.0, 2)]) == 3
    assert len(index) == 3 and len(index._heap) == 3  # rebuilt: no stale entries
    assert index.pop_due(100.0) == [("kept", "old"), ("a", 2), ("replaced", "new")]


def test_drop_by_predicate_and_clear() -> None:
    index = TimerIndex()
    for partition in range(4):
        for i in range(5):
            index.schedule(f"p{partition}-{i}", float(i), partition)
    revoked = {"p1", "p3"}
    assert index.drop(lambda key: key.split("-")[0] in revoked) == 10
    assert index.drop(lambda key: False) == 0
    assert len(index) == 10
    assert {token for _, token in index.pop_due(100.0)} == {0, 2}
    index.schedule("x", 1.0)
    index.clear()
    assert len(index) == 0 and index.next_due_s() is None and index.pop_due(1e9) == []


def test_churn_keeps_the_heap_bounded() -> None:
    index = TimerIndex()
    for i in range(20_000):
        index.schedule(f"k{i % 100}", float(i), i)   # every key rescheduled 200 times
        if i % 7 == 0:
            index.cancel(f"k{(i * 31) % 100}")
    assert len(index._heap) <= 2 * len(index) + 1024 + 1
    assert len(index._stale) <= len(index._heap)


def test_time_is_only_ever_an_argument() -> None:
    index = TimerIndex()
    index.schedule("k", 1_767_600_000.0, None)  # far in the "future" of any clock: nothing reads one
    assert index.pop_due(1_767_599_999.999) == []
    assert index.pop_due(1_767_600_000.0) == [("k", None)]


# --- model test: the index against a naive sorted list -----------------------------------------

KEYS = st.sampled_from([f"ld_{i:024x}:1" for i in range(4)])
DUES = st.integers(min_value=0, max_value=12).map(lambda n: n / 4)  # many exact ties on purpose
TOKENS = st.one_of(st.none(), st.integers(0, 3), st.text(max_size=2), st.builds(Opaque))


def same(a: object, b: object) -> bool:
    # A re-schedule with an equal token and due is a no-op, so the index may keep the equal original.
    return a is b or (type(a) is type(b) and a == b)


class TimerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.index = TimerIndex()
        self.model: dict[str, tuple[float, object]] = {}
        self.now = 0.0

    def expected_due(self, now: float) -> list[tuple[str, object]]:
        due = sorted((d, k) for k, (d, _) in self.model.items() if d <= now)
        return [(k, self.model[k][1]) for _, k in due]

    @rule(key=KEYS, due=DUES, token=TOKENS)
    def schedule(self, key: str, due: float, token: object) -> None:
        self.index.schedule(key, due, token)
        self.model[key] = (due, token)

    @rule(key=KEYS)
    def cancel(self, key: str) -> None:
        assert self.index.cancel(key) is (self.model.pop(key, None) is not None)

    @rule(step=st.integers(min_value=0, max_value=12).map(lambda n: n / 4), limit=st.none() | st.integers(0, 4))
    def pop(self, step: float, limit: int | None) -> None:
        self.now += step
        expected = self.expected_due(self.now)[:limit]
        got = self.index.pop_due(self.now, limit)
        assert [k for k, _ in got] == [k for k, _ in expected]
        assert all(same(a, b) for (_, a), (_, b) in zip(got, expected))
        for key, _ in expected:
            del self.model[key]

    @rule(items=st.lists(st.tuples(KEYS, DUES, TOKENS), max_size=5))
    def load(self, items: list[tuple[str, float, object]]) -> None:
        self.index.load(items)
        for key, due, token in items:
            self.model[key] = (due, token)

    @rule(bucket=st.integers(0, 3))
    def drop(self, bucket: int) -> None:
        def doomed(key: str) -> bool:
            return int(key[3:-2], 16) % 4 == bucket
        assert self.index.drop(doomed) == sum(1 for k in self.model if doomed(k))
        self.model = {k: v for k, v in self.model.items() if not doomed(k)}

    @rule()
    def clear_sometimes(self) -> None:
        if len(self.model) > 6:
            self.index.clear()
            self.model.clear()

    @invariant()
    def same_contents(self) -> None:
        assert len(self.index) == len(self.model)
        assert self.index.next_due_s() == min((d for d, _ in self.model.values()), default=None)
        for key, (due, token) in self.model.items():
            got = self.index.get(key)
            assert got is not None and got[0] == due and same(got[1], token)


TimerModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_timer_index_matches_a_naive_model = TimerModel.TestCase

"""The timer index: one timer per key, replace/cancel, earliest first, bulk load, drop; model-checked."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sla.timers import TimerIndex


def lead(i: int) -> str:
    """A canonical lead id, as ``rules.capture`` makes them (``ld_`` + 24 lowercase hex)."""
    return f"ld_{i:024x}"


def test_pops_earliest_first_lead_ids_tie_in_key_order() -> None:
    index = TimerIndex()
    for key, due in [(lead(3), 30.0), (lead(0xA), 10.0), (lead(2), 20.0), (lead(1), 10.0), (lead(4), 40.0)]:
        index.schedule(key, due, key[-1])
    assert index.next_due_s() == 10.0
    assert index.pop_due(9.99) == []
    assert index.pop_due(20.0) == [(lead(1), "1"), (lead(0xA), "a"), (lead(2), "2")]
    assert index.next_due_s() == 30.0 and len(index) == 2
    assert index.pop_due(1e9) == [(lead(3), "3"), (lead(4), "4")]
    assert index.next_due_s() is None and len(index) == 0


def test_any_other_key_works_too_in_a_fixed_order_on_ties() -> None:
    index = TimerIndex()
    for key, due in [("c", 30.0), ("a", 10.0), ("b", 20.0), ("z", 10.0), ("d", 40.0)]:
        index.schedule(key, due, key.upper())
    first = index.pop_due(20.0)
    assert sorted(first[:2]) == [("a", "A"), ("z", "Z")] and first[2] == ("b", "B")
    assert index.pop_due(1e9) == [("c", "C"), ("d", "D")]


@pytest.mark.parametrize("key", ["LD_" + "0" * 24, "ld_" + "A" * 24, "ld_" + "0" * 23 + "_", "ld_" + "0" * 23,
                                 "ld_+" + "0" * 23, "ld_" + "0" * 24 + ":1", " ld_" + "0" * 23])
def test_near_lead_ids_stay_distinct_keys(key: str) -> None:
    index = TimerIndex()
    index.schedule(lead(0), 1.0, "lead")
    index.schedule(key, 1.0, "other")
    assert len(index) == 2 and index.get(key) == (1.0, "other") and index.get(lead(0)) == (1.0, "lead")
    assert sorted(index.pop_due(1.0)) == sorted([(lead(0), "lead"), (key, "other")])


def test_lead_ids_are_held_as_numbers_not_strings() -> None:
    index = TimerIndex()
    key = "ld_" + "ab" * 12
    index.schedule(key, 5.0, (1, 2))
    assert not index._names and list(index._live) == [int("ab" * 12, 16)]
    assert key in index and index.get(key) == (5.0, (1, 2))
    (fired,) = index.pop_due(5.0)
    assert fired == (key, (1, 2)) and fired[0] == key and type(fired[0]) is str
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
    assert len(index._names) == len(index) and len(index._free_ids) <= 100  # interned keys recycled
    index.pop_due(math.inf)
    assert not index._names and not index._odd and len(index) == 0


def test_tokens_keep_their_exact_type_and_value() -> None:
    index = TimerIndex()
    tokens: list[object] = [None, 0, 1, True, 1.0, (1, 1), (1, True), (1.0, 1), "1", ("a", None, 2**70),
                            (1, 2, 3, 4, 5), "x" * 100, frozenset({1}), Timer(1)]
    for i, token in enumerate(tokens):
        index.schedule(lead(i), float(i), token)
    fired = index.pop_due(math.inf)
    assert [k for k, _ in fired] == [lead(i) for i in range(len(tokens))]
    for (_, got), want in zip(fired, tokens):
        assert got == want and type(got) is type(want)
        if isinstance(want, tuple):
            assert [type(x) for x in got] == [type(x) for x in want]  # type: ignore[attr-defined]
    assert not index._odd  # side tokens go with their timers


def test_many_distinct_tokens_stay_bounded_and_correct() -> None:
    index = TimerIndex()
    for i in range(6000):
        index.schedule(lead(i), 1.0, ("t", i))  # more distinct tokens than the interned table holds
    assert len(index._tokens) <= 4095
    fired = index.pop_due(1.0)
    assert fired == [(lead(i), ("t", i)) for i in range(6000)]


def test_the_agent_flow_one_cycle_and_step_fires_once() -> None:
    # streams/agents/sla.py: key = lead id, token = (cycle, step); a replayed decision is a no-op.
    index = TimerIndex()
    index.schedule(lead(7), 100.0, (1, 0))
    index.schedule(lead(7), 100.0, (1, 0))            # the lead agent replays the same decision
    index.schedule(lead(7), 220.0, (1, 1))            # the next step
    index.cancel(lead(7))                             # contacted
    index.schedule(lead(7), 220.0, (1, 1))            # ...then a stale command re-arms it
    assert index.pop_due(150.0) == []                 # the stale 100 s entry is ignored
    assert index.pop_due(300.0) == [(lead(7), (1, 1))]  # two equal entries in the heap, one fire
    assert index.pop_due(1e9) == [] and len(index) == 0
    index.schedule(lead(7), 400.0, (2, 0))            # a new cycle
    assert index.pop_due(1e9) == [(lead(7), (2, 0))]


def test_a_recycled_key_id_never_fires_early() -> None:
    index = TimerIndex()
    index.schedule("a", 10.0, "A")
    index.cancel("a")                                 # "a"'s id is free, its entry stale in the heap
    index.schedule("b", 50.0, "B")                    # "b" takes the id
    assert index.pop_due(20.0) == []
    index.schedule("b", 10.0, "A")                    # now equal to the stale twin: fires once
    assert index.pop_due(20.0) == [("b", "A")]
    assert index.pop_due(1e9) == [] and not index._names


def test_negative_zero_and_negative_times() -> None:
    index = TimerIndex()
    index.schedule(lead(1), -0.0)
    index.schedule(lead(2), -5.5)
    index.schedule(lead(3), 0.0, 3)
    assert index.next_due_s() == -5.5
    assert index.pop_due(-0.0) == [(lead(2), None), (lead(1), None), (lead(3), 3)]
    with pytest.raises(ValueError, match="nan"):
        index.pop_due(float("nan"))


def test_a_timer_costs_two_ints_and_a_dict_slot() -> None:
    index = TimerIndex()
    index.schedule(lead(2**95), 1_767_600_000.123456, (1, 3))
    ((code, entry),) = index._live.items()
    assert index._heap == [entry] and index._heap[0] is entry  # shared, not copied
    assert sys.getsizeof(code) <= 40 and sys.getsizeof(entry) <= 48
    assert index.get(lead(2**95)) == (1_767_600_000.123456, (1, 3))  # the due time is exact


def test_time_is_only_ever_an_argument() -> None:
    index = TimerIndex()
    index.schedule("k", 1_767_600_000.0, None)  # far in the "future" of any clock: nothing reads one
    assert index.pop_due(1_767_599_999.999) == []
    assert index.pop_due(1_767_600_000.0) == [("k", None)]


# --- model test: the index against a naive sorted list -----------------------------------------

KEYS = st.sampled_from([lead(0), lead(1), lead(2), f"{lead(3)}:1", "other"])
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

    def due_now(self, now: float) -> dict[str, tuple[float, object]]:
        return {k: v for k, v in self.model.items() if v[0] <= now}

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
        due = self.due_now(self.now)
        got = self.index.pop_due(self.now, limit)
        assert len(got) == (len(due) if limit is None else min(limit, len(due)))
        assert len({k for k, _ in got}) == len(got)
        fired_dues = [due[k][0] for k, _ in got]
        assert fired_dues == sorted(fired_dues)                          # earliest first
        left = [d for k, (d, _) in due.items() if k not in dict(got)]
        assert not left or not fired_dues or max(fired_dues) <= min(left)  # nothing earlier skipped
        leads = [(due[k][0], k) for k, _ in got if len(k) == 27]
        assert leads == sorted(leads)                                    # lead ids tie in key order
        for key, token in got:
            assert same(token, due[key][1])
            del self.model[key]

    @rule(items=st.lists(st.tuples(KEYS, DUES, TOKENS), max_size=5))
    def load(self, items: list[tuple[str, float, object]]) -> None:
        self.index.load(items)
        for key, due, token in items:
            self.model[key] = (due, token)

    @rule(bucket=st.integers(0, 3))
    def drop(self, bucket: int) -> None:
        def doomed(key: str) -> bool:
            return sum(map(ord, key)) % 4 == bucket
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

"""``Rebuild``: refilling the index a slice at a time while the owner keeps scheduling and cancelling."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sla.timers import Rebuild, TimerIndex


def lead(i: int) -> str:
    return f"ld_{i:024x}"


def rows(n: int, due0: float = 100.0) -> list[tuple[str, float, object]]:
    """What the table holds: lead i due at ``due0 + i``, token (1, 0)."""
    return [(lead(i), due0 + i, (1, 0)) for i in range(n)]


def drain(index: TimerIndex) -> list[tuple[str, object]]:
    return index.pop_due(float("inf"))


def test_slices_give_what_one_load_gives() -> None:
    table = rows(1000)
    whole = TimerIndex()
    whole.load(table)
    sliced = TimerIndex()
    rebuild = Rebuild(sliced)
    for start in range(0, len(table), 64):
        assert rebuild.feed(table[start:start + 64]) == len(table[start:start + 64])
    assert rebuild.finish() == 1000 and rebuild.rows_read == 1000
    assert drain(sliced) == drain(whole)


def test_starting_a_rebuild_forgets_what_the_index_held() -> None:
    index = TimerIndex()
    index.schedule(lead(99), 1.0, "revoked partition")
    rebuild = Rebuild(index)
    rebuild.feed(rows(2))
    rebuild.finish()
    assert drain(index) == [(lead(0), (1, 0)), (lead(1), (1, 0))]


def test_a_timer_rearmed_during_the_rebuild_beats_its_older_row_read_later() -> None:
    index = TimerIndex()
    rebuild = Rebuild(index)
    table = rows(10)
    rebuild.feed(table[:5])
    # The lead agent moves lead 7 to its next step: the table now says due 500, the snapshot 107.
    rebuild.schedule(lead(7), 500.0, (1, 1))
    rebuild.feed(table[5:])
    assert rebuild.finish() == 10
    assert index.get(lead(7)) == (500.0, (1, 1))
    fired = drain(index)
    assert fired[-1] == (lead(7), (1, 1)) and fired.count((lead(7), (1, 0))) == 0


def test_a_timer_cancelled_during_the_rebuild_stays_cancelled() -> None:
    index = TimerIndex()
    rebuild = Rebuild(index)
    table = rows(10)
    rebuild.feed(table[:5])
    assert rebuild.cancel(lead(8)) is False  # its row is not loaded yet: nothing to cancel, but remembered
    rebuild.feed(table[5:])
    assert rebuild.finish() == 9
    assert lead(8) not in index
    assert lead(8) not in [key for key, _ in drain(index)]


def test_decisions_on_rows_already_read_replace_them() -> None:
    index = TimerIndex()
    rebuild = Rebuild(index)
    table = rows(10)
    rebuild.feed(table[:5])
    rebuild.schedule(lead(1), 50.0, (2, 0))
    assert rebuild.cancel(lead(2)) is True
    rebuild.feed(table[5:])
    rebuild.finish()
    fired = drain(index)
    assert fired[0] == (lead(1), (2, 0)) and len(fired) == 9 and lead(2) not in dict(fired)


def test_a_new_lead_scheduled_during_the_rebuild_fires_in_order() -> None:
    index = TimerIndex()
    rebuild = Rebuild(index)
    table = rows(6)
    rebuild.feed(table[:3])
    rebuild.schedule(lead(1000), 102.5, (1, 0))  # a lead captured during the rebuild, not in the snapshot
    rebuild.feed(table[3:])
    assert rebuild.finish() == 7
    assert [key for key, _ in drain(index)] == [lead(0), lead(1), lead(2), lead(1000), lead(3), lead(4), lead(5)]


def test_after_finish_decisions_go_straight_to_the_index() -> None:
    index = TimerIndex()
    rebuild = Rebuild(index)
    rebuild.feed(rows(3))
    rebuild.finish()
    # A later rebuild starts afresh: keys decided during the first one are not skipped any more.
    again = Rebuild(index)
    again.feed(rows(3, due0=200.0))
    again.finish()
    assert index.get(lead(1)) == (201.0, (1, 0))


def test_the_heap_is_ordered_only_at_finish_but_schedules_in_between_are_kept() -> None:
    index = TimerIndex()
    rebuild = Rebuild(index)
    rebuild.feed(rows(3, due0=10.0))
    rebuild.schedule(lead(50), 5.0, "early")
    rebuild.feed(rows(3, due0=10.0)[1:])  # the same rows again: later rows of a key win, as with load
    rebuild.finish()
    assert drain(index) == [(lead(50), "early"), (lead(0), (1, 0)), (lead(1), (1, 0)), (lead(2), (1, 0))]


_decision = st.tuples(st.integers(0, 30), st.one_of(st.none(), st.floats(0, 1000, allow_nan=False)))


@settings(max_examples=300, deadline=None)
@given(
    table=st.dictionaries(st.integers(0, 30), st.floats(0, 1000, allow_nan=False), max_size=30),
    slice_size=st.integers(1, 8),
    decisions=st.lists(st.tuples(st.integers(0, 40), _decision), max_size=30),
)
def test_whatever_the_interleaving_the_index_is_the_table_after_the_decisions(
    table: dict[int, float], slice_size: int, decisions: list[tuple[int, tuple[int, float | None]]]
) -> None:
    """The model: the table as the snapshot held it, then every decision in order (the lead agent
    writes the table and tells the index). Decisions land between any two slices."""
    snapshot = [(lead(i), due, ("row", i)) for i, due in sorted(table.items())]
    expected: dict[str, tuple[float, object]] = {key: (due, token) for key, due, token in snapshot}
    index = TimerIndex()
    rebuild = Rebuild(index)
    slices = [snapshot[i:i + slice_size] for i in range(0, len(snapshot), slice_size)] or [[]]
    by_slice: dict[int, list[tuple[int, float | None]]] = {}
    for at, decision in decisions:
        by_slice.setdefault(at % (len(slices) + 1), []).append(decision)
    for position in range(len(slices) + 1):
        for i, due in by_slice.get(position, []):
            if due is None:
                rebuild.cancel(lead(i))
                expected.pop(lead(i), None)
            else:
                rebuild.schedule(lead(i), due, ("decided", i))
                expected[lead(i)] = (due, ("decided", i))
        if position < len(slices):
            rebuild.feed(slices[position])
    assert rebuild.finish() == len(expected)
    assert {key: index.get(key) for key in expected} == expected
    fired = drain(index)
    assert sorted(fired) == sorted((key, token) for key, (_, token) in expected.items())
    assert [expected[key][0] for key, _ in fired] == sorted(due for due, _ in expected.values())

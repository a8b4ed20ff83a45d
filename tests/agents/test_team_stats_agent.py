"""The team SLA counters: one changelog write per team, signal and window per batch, the hour as 12 windows."""
from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from streams.agents import team_stats
from streams.agents._batch import acting_for
from streams.tables.team_windows import HOUR_WINDOWS, team_five_minutes, team_minute, window_counts

#: The start of a five-minute window (and so of a minute) an hour or so ago, and a "now" inside it.
T = float(int(time.time() // 300) * 300 - 3600)
NOW = T + 150


def _team() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


def _signal(name: str) -> bytes:
    return orjson.dumps({"signal": name})


class _Event:
    """What the agent reads of a Faust event (and, like one, it can be weakly referenced)."""

    def __init__(self, key: str, value: bytes, timestamp: float, partition: int = 0) -> None:
        self.key, self.value = key, value
        self.message = SimpleNamespace(timestamp=timestamp, partition=partition)


def _event(key: str, value: bytes, timestamp: float, partition: int = 0) -> Any:
    return _Event(key, value, timestamp, partition)


def test_tally_adds_up_per_table_key_and_window_and_keeps_the_last_event() -> None:
    team = _team()
    events = [
        _event(team, _signal("arrival"), T + 1),
        _event(team, _signal("arrival"), T + 61),       # the next minute, the same five minutes
        _event(team, _signal("breach"), T + 62),
        _event(team, b"not json", T + 63),
        _event(team, _signal("teleported"), T + 64),    # not a signal we count
        _event(team, orjson.dumps({"nope": 1}), T + 65),
        _event(team, _signal("arrival"), T + 299.9),
        _event(team, _signal("arrival"), T + 300),      # the next five minutes
    ]
    tally = team_stats.tally(events)
    minute, five = int(T // 60), int(T // 300)
    counts = {slot: count for slot, (count, _) in tally.items()}
    assert counts == {
        (0, f"{team}|arrival", minute): 1, (0, f"{team}|arrival", minute + 1): 1,
        (0, f"{team}|arrival", minute + 4): 1, (0, f"{team}|arrival", minute + 5): 1,
        (0, f"{team}|breach", minute + 1): 1,
        (1, f"{team}|arrival", five): 3, (1, f"{team}|arrival", five + 1): 1,
        (1, f"{team}|breach", five): 1,
    }
    assert tally[(1, f"{team}|arrival", five)][1] is events[6]  # the last event counted in that window


def test_acting_for_sets_the_current_event_and_restores_it() -> None:
    from faust.streams import current_event

    outer, inner = _event("a", b"", T), _event("b", b"", T)
    assert current_event() is None
    with acting_for(outer):
        assert current_event() is outer
        with acting_for(inner):
            assert current_event() is inner
        assert current_event() is outer
    assert current_event() is None


class _Changelog:
    """Records the changelog writes of the windowed tables (partition, key, value)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[tuple[str, int | None, Any, Any]] = []
        for wrapper in (team_minute, team_five_minutes):
            table = wrapper.table
            monkeypatch.setattr(table, "send_changelog", self._recorder(table.name, table.send_changelog))

    def _recorder(self, name: str, send: Any) -> Any:
        def record(partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            self.writes.append((name, partition, key, value))
            return send(partition, key, value, *args, **kwargs)
        return record

    def of(self, team_id: str) -> list[tuple[str, int | None, Any, Any]]:
        return [w for w in self.writes if w[2][0].startswith(f"{team_id}|")]


def _window(wrapper: Any, at: float) -> Any:
    """The (start, end) key Faust gives the window of ``wrapper`` that holds ``at``."""
    return wrapper.table.window.current(at)


async def _until(condition: Any, what: str) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_batch_writes_one_increment_per_team_signal_and_window_on_the_team_partition(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    changelog = _Changelog(monkeypatch)
    ana, ben = _team(), _team()
    # Two teams on two partitions, interleaved; ben's event comes last, so without "acting for"
    # ana's writes would take ben's partition. 7 events = one batch, whatever the timing.
    signals = [(ana, "arrival", T + 10), (ben, "arrival", T + 11), (ana, "arrival", T + 12),
               (ana, "breach", T + 70), (ana, "arrival", T + 71), (ben, "arrival", T + 72),
               (ben, "contact_in_sla", T + 73)]
    # Hand the seven over as one batch, however the puts interleave with the agent.
    monkeypatch.setattr(team_stats, "take_ready", lambda stream: stream.take_events(len(signals), within=30.0))
    partition = {ana: 3, ben: 5}
    async with team_stats.count_team_signals.test_context() as agent:
        for team_id, signal, at in signals:
            await agent.put(key=team_id, value=_signal(signal), timestamp=at, partition=partition[team_id],
                            wait=False)
        await _until(lambda: len(changelog.of(ana)) == 5 and len(changelog.of(ben)) == 5, "the batch's writes")

    minute, next_minute, five = _window(team_minute, T), _window(team_minute, T + 60), _window(team_five_minutes, T)
    assert sorted(changelog.of(ana)) == sorted([
        ("team_sla_minute", 3, (f"{ana}|arrival", minute), 2),
        ("team_sla_minute", 3, (f"{ana}|arrival", next_minute), 1),
        ("team_sla_minute", 3, (f"{ana}|breach", next_minute), 1),
        ("team_sla_5min", 3, (f"{ana}|arrival", five), 3),
        ("team_sla_5min", 3, (f"{ana}|breach", five), 1),
    ])
    assert sorted(changelog.of(ben)) == sorted([
        ("team_sla_minute", 5, (f"{ben}|arrival", minute), 1),
        ("team_sla_minute", 5, (f"{ben}|arrival", next_minute), 1),
        ("team_sla_minute", 5, (f"{ben}|contact_in_sla", next_minute), 1),
        ("team_sla_5min", 5, (f"{ben}|arrival", five), 2),
        ("team_sla_5min", 5, (f"{ben}|contact_in_sla", five), 1),
    ])
    # No SLA outcome signal (sla_met, sla_missed) here: no compliance (tests/agents/test_team_sla_windows.py).
    assert window_counts(team_minute, ana, now=T + 90) == {
        "arrival": 1, "contact_in_sla": 0, "contact_late": 0, "breach": 1, "escalation": 0, "sla_met": 0,
        "sla_missed": 0, "compliance": None}
    assert window_counts(team_five_minutes, ben, windows=HOUR_WINDOWS, now=T + 90) == {
        "arrival": 2, "contact_in_sla": 1, "contact_late": 0, "breach": 0, "escalation": 0, "sla_met": 0,
        "sla_missed": 0, "compliance": None}


async def test_the_hour_is_the_twelve_five_minute_windows_ending_now(monkeypatch: pytest.MonkeyPatch) -> None:
    changelog = _Changelog(monkeypatch)
    team = _team()
    # T + 150 is "now": its window starts at T; the 12th window back starts at T - 3300.
    arrivals = [T + 149, T + 1, T - 1, T - 1800, T - 3300, T - 3300.5, T - 4000, T + 300]
    contacts = [("contact_in_sla", T - 60), ("sla_met", T - 60), ("contact_late", T - 3000), ("sla_missed", T - 3000),
                ("breach", T - 3400), ("sla_missed", T - 3400)]
    async with team_stats.count_team_signals.test_context() as agent:
        for at in arrivals:
            await agent.put(key=team, value=_signal("arrival"), timestamp=at)
        for signal, at in contacts:
            await agent.put(key=team, value=_signal(signal), timestamp=at)
        await _until(lambda: sum(w[3] for w in changelog.of(team) if w[0] == "team_sla_5min")
                     == len(arrivals) + len(contacts), "every signal counted")

    hour = window_counts(team_five_minutes, team, windows=HOUR_WINDOWS, now=NOW)
    # In: T+149, T+1 (this window), T-1, T-1800, T-3300 (the 12th). Out: before T-3300, and the next window.
    assert hour == {"arrival": 5, "contact_in_sla": 1, "contact_late": 1, "breach": 0, "escalation": 0,
                    "sla_met": 1, "sla_missed": 1, "compliance": 0.5}
    assert window_counts(team_five_minutes, team, now=NOW)["arrival"] == 2  # one window: T+1, T+149
    assert window_counts(team_five_minutes, team, windows=HOUR_WINDOWS, now=NOW + 300)["arrival"] == 5  # T+300 in, T-3300 out
    # Minutes: T+1 in T..T+60, nothing in T+60..T+120, T+149 in T+120..T+180 (the one holding now).
    assert [window_counts(team_minute, team, now=T + at)["arrival"] for at in (30, 90, 150)] == [1, 0, 1]
    # Reading writes nothing: an empty team reads zeros and leaves no key behind.
    before = len(changelog.writes)
    assert window_counts(team_five_minutes, _team(), windows=HOUR_WINDOWS, now=NOW)["arrival"] == 0
    assert len(changelog.writes) == before

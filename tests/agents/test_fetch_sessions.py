"""Fetch sessions (KIP-227): what each request of a session sends, and how answers move it on;
and rounds with every broker busy, answered without aiokafka's walk of every partition.

The real broker's side is in tests/integration/test_fetch_sessions.py.
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.cluster import ClusterMetadata
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.subscription_state import Assignment
from aiokafka.protocol.fetch import FetchRequest, FetchRequest_v4, FetchRequest_v7, FetchRequest_v11
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.fetch_sessions import (
    FETCH_SESSION_ID_NOT_FOUND,
    INITIAL_EPOCH,
    FetchSession,
    SessionFetcher,
    SessionFetchRequest,
    _SessionClient,
)

MAX = 1_048_576
INVALID_FETCH_SESSION_EPOCH = 71


def wanted(**offsets: int) -> dict[tuple[str, int], tuple[int, int]]:
    """``a0=5`` → partition 0 of topic ``a`` at offset 5."""
    return {(name[0], int(name[1:])): (offset, MAX) for name, offset in offsets.items()}


def opened(session_id: int = 77, **offsets: int) -> FetchSession:
    session = FetchSession()
    session.answered(session.plan(wanted(**offsets)), 0, session_id)
    return session


def test_the_first_request_is_full_and_opens_a_session() -> None:
    session = FetchSession()
    plan = session.plan(wanted(a0=5, a1=0, b0=9))
    assert (plan.session_id, plan.epoch, plan.full) == (0, INITIAL_EPOCH, True)
    assert plan.send == wanted(a0=5, a1=0, b0=9) and plan.forget == ()
    session.answered(plan, 0, 77)
    assert (session.session_id, session.epoch) == (77, 1)
    assert session.positions == wanted(a0=5, a1=0, b0=9)


def test_an_incremental_request_sends_only_what_moved_or_is_new_and_forgets_what_is_not_wanted() -> None:
    session = opened(a0=5, a1=0, b0=9)
    plan = session.plan(wanted(a0=8, a1=0, c3=1))  # a0 moved, a1 did not, b0 skipped, c3 new
    assert (plan.session_id, plan.epoch, plan.full) == (77, 1, False)
    assert plan.send == wanted(a0=8, c3=1)
    assert plan.forget == (("b", 0),)
    session.answered(plan, 0, 77)
    assert session.epoch == 2 and session.positions == wanted(a0=8, a1=0, c3=1)
    nothing_moved = session.plan(wanted(a0=8, a1=0, c3=1))
    assert nothing_moved.send == {} and nothing_moved.forget == () and nothing_moved.epoch == 2


def test_a_forgotten_partition_is_sent_again_when_wanted_again() -> None:
    session = opened(a0=5, a1=0)
    session.answered(session.plan(wanted(a1=0)), 0, 77)  # a0 buffered or paused this round
    assert session.plan(wanted(a0=7, a1=0)).send == wanted(a0=7)


def test_the_epoch_wraps_to_one_after_its_maximum() -> None:
    session = opened(a0=0)
    session.epoch = 2**31 - 1
    session.answered(session.plan(wanted(a0=0)), 0, 77)
    assert session.epoch == 1


@pytest.mark.parametrize("error, closes", [(FETCH_SESSION_ID_NOT_FOUND, False), (INVALID_FETCH_SESSION_EPOCH, True)])
def test_a_session_error_starts_again_with_a_full_request(error: int, closes: bool) -> None:
    session = opened(a0=5, a1=0)
    session.answered(session.plan(wanted(a0=6, a1=0)), error, 0)
    plan = session.plan(wanted(a0=6, a1=0))
    assert plan.full and plan.send == wanted(a0=6, a1=0)
    # An unknown session cannot be closed: open a new one. Any other error closes the old one.
    assert plan.session_id == (77 if closes else 0)
    assert session.resets == 1


def test_a_broker_that_opens_no_session_gets_full_requests_until_it_does() -> None:
    session = FetchSession()
    session.answered(session.plan(wanted(a0=1)), 0, 0)  # session cache full: a sessionless answer
    assert session.plan(wanted(a0=2)).full
    session.answered(session.plan(wanted(a0=2)), 0, 91)
    assert (session.session_id, session.epoch) == (91, 1)


def request(session: FetchSession, **offsets: int) -> SessionFetchRequest:
    by_topic: dict[str, list[tuple[int, int, int]]] = {}
    for (topic, partition), (offset, max_bytes) in wanted(**offsets).items():
        by_topic.setdefault(topic, []).append((partition, offset, max_bytes))
    return SessionFetchRequest(FetchRequest(100, 1, 50 * MAX, 0, list(by_topic.items())), session)


def test_the_encoded_v11_request_carries_the_session_and_only_the_changes() -> None:
    session = opened(a0=5, a1=0, b0=9)
    req = request(session, a0=8, a1=0)
    struct = req.prepare({1: (4, 11)})
    assert isinstance(struct, FetchRequest_v11)
    decoded = FetchRequest_v11.decode(struct.encode())
    assert (decoded.session_id, decoded.session_epoch) == (77, 1)
    assert decoded.topics == [("a", [(0, -1, 8, -1, MAX)])]  # partition, leader epoch, offset, log start, max
    assert decoded.forgotten_topics_data == [("b", [0])]
    # The fetcher reads the answer against every wanted partition, not only those sent.
    assert req.topics == [("a", [(0, 8, MAX), (1, 0, MAX)])]


def test_a_v7_broker_gets_sessions_and_an_older_one_gets_aiokafkas_request() -> None:
    session = opened(a0=5, a1=0)
    v7 = request(session, a0=6, a1=0).prepare({1: (4, 7)})
    assert isinstance(v7, FetchRequest_v7)
    assert (v7.session_id, v7.session_epoch, v7.topics) == (77, 1, [("a", [(0, 6, -1, MAX)])])
    older = request(session, a0=6, a1=0)
    v4 = older.prepare({1: (4, 4)})
    assert isinstance(v4, FetchRequest_v4) and older.plan is None
    assert session.epoch == 1  # untouched: no request of the session was sent


class _Client:
    def __init__(self, answer: Any) -> None:
        self.cluster = object()
        self._loop = None
        self.answer = answer

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        request.prepare({1: (4, 11)})  # the connection encodes the request when it sends it
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class _Answer:
    def __init__(self, error_code: int, session_id: int, topics: Any = ()) -> None:
        self.error_code, self.session_id, self.topics = error_code, session_id, list(topics)


async def test_the_client_hands_the_answer_to_the_session() -> None:
    session = FetchSession()
    # v11 partition layout: partition, error, high watermark, last stable offset, log start, aborted, replica, records
    answer = _Answer(0, 5, [("a", [(0, 0, 42, 40, 0, [], -1, b""), (1, 6, 9, 9, 0, [], -1, b"")])])
    sent = request(session, a0=0, a1=0)
    await _SessionClient(_Client(answer)).send(1, sent)
    assert (session.session_id, session.epoch) == (5, 1)
    assert sent.polled
    assert session.watermarks == {("a", 0): (42, 40)}, "a partition answered with an error names no watermark"


async def test_a_refused_session_request_is_not_a_poll() -> None:
    session = opened(a0=0)
    sent = request(session, a0=0)
    await _SessionClient(_Client(_Answer(70, 0, [("a", [(0, 0, 42, 40, 0, [], -1, b"")])]))).send(1, sent)
    assert not sent.polled and session.watermarks == {}


@pytest.mark.parametrize("failure", [asyncio.CancelledError(), asyncio.TimeoutError(), OSError("reset")])
async def test_a_fetch_without_an_answer_drops_the_session(failure: BaseException) -> None:
    session = opened(a0=0)
    with pytest.raises(type(failure)):
        await _SessionClient(_Client(failure)).send(1, request(session, a0=3))
    plan = session.plan(wanted(a0=3))
    assert plan.full and plan.session_id == 77 and session.resets == 1


async def test_other_requests_pass_through_untouched() -> None:
    answer = _Answer(0, 0)

    class Plain(_Client):
        async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
            return (node_id, request, kwargs)

    assert await _SessionClient(Plain(answer)).send(3, "metadata", group=2) == (3, "metadata", {"group": 2})


# --- A fetch round: aiokafka's decisions, walked cheaper ------------------------------------------

class _Partition:
    def __init__(self, leader: int | None) -> None:
        self.leader = leader


class _Buffered:
    def __init__(self, backoff: float) -> None:
        self.backoff = backoff

    def calculate_backoff(self) -> float:
        return self.backoff


def _fetcher(leaders: dict[TopicPartition, int | None], in_flight: set[int],
             buffered: dict[TopicPartition, float]) -> Any:
    cluster = ClusterMetadata()
    for tp, leader in leaders.items():
        if leader is not None:  # None: the metadata does not know the partition
            cluster._partitions.setdefault(tp.topic, {})[tp.partition] = _Partition(leader)
    fetcher: Any = object.__new__(SessionFetcher)
    fetcher.__dict__.update(
        _client=SimpleNamespace(cluster=cluster), _in_flight=set(in_flight), _preferred_read_replica={},
        _records={tp: _Buffered(b) for tp, b in buffered.items()}, _fetcher_timeout=0.2, sessions={},
        _max_partition_fetch_bytes=MAX, _fetch_max_wait_ms=100, _fetch_min_bytes=1,
        _fetch_max_bytes=50 * MAX, _isolation_level=0, _client_rack=None, _watched=set(),
        _loop=asyncio.get_running_loop())
    return fetcher


def _assignment(states: dict[TopicPartition, tuple[int | None, bool]]) -> Assignment:
    """aiokafka's own assignment; ``states``: partition → (position or None, paused)."""
    assignment = Assignment(list(states))
    for tp, (position, paused) in states.items():
        state = assignment.state_value(tp)
        if position is not None:
            state.seek(position)
        if paused:
            state.pause()
    return assignment


def _comparable(actions: Any) -> Any:
    fetches, resets, timeout, invalid, _ = actions
    fetched = sorted((node, sorted((t, sorted(p)) for t, p in request.topics)) for node, request in fetches)
    return fetched, {node: sorted(tps) for node, tps in resets.items()}, timeout, invalid


_tps = st.builds(TopicPartition, st.sampled_from(["a", "b", "a-changelog"]), st.integers(0, 5))


@settings(max_examples=300, deadline=None)
@given(partitions=st.dictionaries(_tps, st.tuples(st.sampled_from([1, 2, None, -1]),
                                                  st.sampled_from([None, 0, 7]), st.booleans()),
                                  min_size=1, max_size=12),
       in_flight=st.sets(st.sampled_from([1, 2])),
       buffered=st.dictionaries(_tps, st.sampled_from([0.0, 0.05, 0.1]), max_size=4))
def test_a_round_decides_as_aiokafkas(partitions: dict[TopicPartition, tuple[int | None, int | None, bool]],
                                      in_flight: set[int], buffered: dict[TopicPartition, float]) -> None:
    async def both() -> tuple[Any, Any]:
        leaders = {tp: leader for tp, (leader, _, _) in partitions.items()}
        assignment = _assignment({tp: (position, paused) for tp, (_, position, paused) in partitions.items()})
        ours = _fetcher(leaders, in_flight, buffered)._get_actions_per_node(assignment)
        theirs = Fetcher._get_actions_per_node(_fetcher(leaders, in_flight, buffered), assignment)
        return ours, theirs

    ours, theirs = asyncio.run(both())
    assert _comparable(ours) == _comparable(theirs)
    assert all(isinstance(request, SessionFetchRequest) for _, request in ours[0])
    assert len(ours[4]) == min(len(theirs[4]), 1)  # one future stands for all the paused partitions'


async def test_the_round_waits_on_one_future_that_any_resumed_partition_resolves() -> None:
    tps = [TopicPartition("a-changelog", p) for p in range(8)]
    fetcher = _fetcher(dict.fromkeys(tps, 1), set(), {})
    assignment = _assignment(dict.fromkeys(tps, (0, True)))
    pauses = [assignment.state_value(tp).resume_fut for tp in tps]
    (resumed,) = fetcher._get_actions_per_node(assignment)[4]
    assert fetcher._get_actions_per_node(assignment)[4] == [resumed]  # the same future, hooked once
    assert all(len(p._callbacks) == 1 for p in pauses)
    assignment.state_value(tps[5]).resume()
    await asyncio.sleep(0)  # the pause's future runs its callbacks
    assert resumed.done()
    assert all(not p._callbacks for p in pauses)  # unhooked: nothing piles up on pauses that last
    (fetch,), *_, (again,) = fetcher._get_actions_per_node(assignment)
    assert again is not resumed and not again.done()
    assert [p for _, ps in fetch[1].topics for p, *_ in ps] == [5]
    other = _assignment(dict.fromkeys(tps, (0, True)))
    fetcher._get_actions_per_node(other)  # a new assignment: the old pauses are let go
    assert all(not p._callbacks for p in pauses)


async def test_two_resumes_at_once_wake_the_loop_once_and_leave_the_next_round_watching() -> None:
    tps = [TopicPartition("a-changelog", p) for p in range(4)]
    fetcher = _fetcher(dict.fromkeys(tps, 1), set(), {})
    assignment = _assignment(dict.fromkeys(tps, (0, True)))
    (first,) = fetcher._get_actions_per_node(assignment)[4]
    assignment.state_value(tps[0]).resume()
    assignment.state_value(tps[1]).resume()  # both callbacks are scheduled before either runs
    await asyncio.sleep(0)
    assert first.done()
    (second,) = fetcher._get_actions_per_node(assignment)[4]
    assert not second.done() and len(fetcher._watched) == 2
    assignment.state_value(tps[3]).resume()
    await asyncio.sleep(0)
    assert second.done()


async def test_a_round_looks_leaders_up_once_per_assignment_and_metadata_refresh() -> None:
    tps = [TopicPartition("a", p) for p in range(100)]
    fetcher = _fetcher(dict.fromkeys(tps, 1), set(), {})
    cluster = fetcher._client.cluster
    calls: list[TopicPartition] = []
    lookup = cluster.leader_for_partition
    cluster.leader_for_partition = lambda tp: calls.append(tp) or lookup(tp)
    assignment = _assignment(dict.fromkeys(tps, (0, False)))
    for _ in range(3):
        (node, request), = fetcher._get_actions_per_node(assignment)[0]
        assert node == 1 and sum(len(p) for _, p in request.topics) == 100
    assert len(calls) == 100
    cluster._partitions = {"a": {p: _Partition(2) for p in range(100)}}  # a refresh: partition a moved
    cluster._last_successful_refresh_ms += 1
    (node, _), = fetcher._get_actions_per_node(assignment)[0]
    assert node == 2 and len(calls) == 200
    fetcher._get_actions_per_node(_assignment(dict.fromkeys(tps, (0, False))))  # a new assignment
    assert len(calls) == 300

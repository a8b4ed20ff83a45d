"""Kafka's incremental fetch sessions (KIP-227) for aiokafka's fetcher.

aiokafka fetches without a session: every request names every partition the consumer may fetch
from that broker, with its offset, and every answer lists every one of them again, with records or
without. A worker holds ~70 stream partitions and fetches 70–175 times a second under load, and
most answers carry records for one or two partitions. py-spy at a steady 40 leads/s
(docs/PERFORMANCE.md, session 7) put 57% of the worker's samples in aiokafka, a fifth of them
encoding and decoding those partition lists.

With a fetch session the broker keeps the partitions and their fetch offsets between requests.
After a full request that opens the session, a request names only the partitions that are new or
whose offset moved, and the partitions to forget; the answer names only the partitions with
records or news (a new high watermark, an error). Kafka's Java consumer has fetched this way since
Kafka 1.1 (its ``FetchSessionHandler``); brokers keep up to 1,000 sessions by default
(``max.incremental.fetch.session.cache.slots``).

How it fits into aiokafka without changing what the fetcher decides:

* The fetcher still chooses, each round and for each broker, the partitions to fetch and their
  offsets, and puts them all into its ``FetchRequest`` (the *wanted* partitions).
  :class:`SessionFetchRequest` turns that into the session's request when it is encoded:
  :meth:`FetchSession.plan` compares the wanted offsets with what the broker holds.
* The fetcher reads each answered partition against the wanted offsets, as before. Those are the
  offsets the broker used: unchanged ones the session kept, changed ones were sent.
* The fetcher sends through :class:`_SessionClient`, which hands the broker's answer (the session
  id, a session error) or the failure to the node's :class:`FetchSession`.
* A partition the fetcher skips in a round (records still buffered, paused, waiting for an offset
  reset) is forgotten by the session and added again when it is wanted, as the Java consumer does.
  The changelog partitions a worker keeps paused after recovery are forgotten once.
* Any failure (no answer, a cancelled fetch, a session error in the answer) drops the session; the
  next request is a full one that closes it and opens a new one. aiokafka keeps one fetch in flight
  per broker, so a session never has two requests outstanding.
* An answer names only the partitions with news, and aiokafka notes a partition's last poll and
  high watermark only from the partitions an answer names. So a partition kept quiet looked
  never fetched: Faust's liveness check logged "Aiokafka has not sent fetch request for TP …"
  at ERROR for every idle partition, ~650 lines a minute in a 30-minute soak. Once a second,
  :meth:`SessionFetcher._proc_fetch_request` marks every partition of an answered session
  request as polled then, and gives one whose only answer was discarded (its offset moved
  while the fetch was out) the high watermark the broker last named for it.

The fetcher's round (which partitions to fetch, reset or wait for) keeps aiokafka's decisions
but is walked cheaper (:meth:`SessionFetcher._round`): the leaders are looked up once per
assignment and metadata refresh instead of for every partition of every round.

``LEADFLOW_FETCH_SESSIONS`` (on by default) turns all this on or off. It was off for a while: the
kill -9 restart test's lost records were blamed on it, until they were traced to Faust clearing
the streams' queues, with sessions off too (``streams/faust_fixes.py`` fix 6, docs/RELIABILITY.md).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiokafka.consumer.consumer as aiokafka_consumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.structs import TopicPartition
from aiokafka.protocol.fetch import FetchRequest

__all__ = ["FetchSession", "Plan", "SessionFetchRequest", "SessionFetcher", "install"]

log = logging.getLogger(__name__)

#: Fetch request versions with session fields (``session_id``, ``session_epoch``, forgotten topics).
SESSIONS_FROM_VERSION = 7
#: Epoch of a full request: open a session (closing the one named, if any).
INITIAL_EPOCH = 0
_MAX_EPOCH = 2**31 - 1
#: Broker error: no session with this id (evicted from its cache, or the broker restarted).
FETCH_SESSION_ID_NOT_FOUND = 70
#: How often a session's partitions are marked as polled; Faust's check allows 300 s.
STAMP_EVERY_MS = 1000

#: A partition as the session keys it: (topic, partition).
Key = tuple[str, int]
#: What is fetched of a partition: (fetch offset, maximum bytes).
Position = tuple[int, int]


@dataclass(frozen=True)
class Plan:
    """One request of a session: what to send, what to forget, and all it will fetch."""

    session_id: int
    epoch: int
    send: dict[Key, Position]
    forget: tuple[Key, ...]
    wanted: dict[Key, Position]

    @property
    def full(self) -> bool:
        return self.epoch == INITIAL_EPOCH


@dataclass
class FetchSession:
    """A consumer's fetch session with one broker: its id, next epoch and the offsets it holds."""

    session_id: int = 0
    epoch: int = INITIAL_EPOCH
    #: The partitions the broker holds for this session, as of its last answer.
    positions: dict[Key, Position] = field(default_factory=dict)
    #: The last (high watermark, last stable offset) the broker named for each partition.
    watermarks: dict[Key, tuple[int, int]] = field(default_factory=dict)
    #: When this session's partitions were last marked as polled (``time.time()`` ms).
    stamped_ms: int = 0
    full_requests: int = 0
    incremental_requests: int = 0
    resets: int = 0

    def plan(self, wanted: dict[Key, Position]) -> Plan:
        """The next request for fetching ``wanted``: full to open a session, else incremental."""
        if self.epoch == INITIAL_EPOCH:
            self.full_requests += 1
            return Plan(self.session_id, INITIAL_EPOCH, wanted, (), wanted)
        self.incremental_requests += 1
        held = self.positions
        send = {key: position for key, position in wanted.items() if held.get(key) != position}
        forget = tuple(key for key in held if key not in wanted)
        return Plan(self.session_id, self.epoch, send, forget, wanted)

    def answered(self, plan: Plan, error_code: int, session_id: int) -> None:
        """Record the broker's answer to ``plan``'s request."""
        if error_code:
            log.info("fetch session %d (epoch %d) refused with error %d; the next fetch opens a new one",
                     plan.session_id, plan.epoch, error_code)
            self.lost(closing=error_code != FETCH_SESSION_ID_NOT_FOUND)
            return
        if plan.full:
            if session_id == 0:
                # The broker answered without opening a session (its session cache is full):
                # a sessionless full fetch. Ask again next time.
                self.session_id, self.epoch, self.positions = 0, INITIAL_EPOCH, {}
                return
            self.session_id = session_id
        self.epoch = 1 if plan.epoch in (INITIAL_EPOCH, _MAX_EPOCH) else plan.epoch + 1
        self.positions = plan.wanted

    def heard(self, topics: Any) -> None:
        """Keep the watermarks an answer names (``response.topics`` of a v7+ fetch answer)."""
        watermarks = self.watermarks
        for topic, partitions in topics:
            for partition, error_code, highwater, lso, *_ in partitions:
                if not error_code:
                    watermarks[(topic, partition)] = (highwater, lso)

    def lost(self, *, closing: bool = True) -> None:
        """Start again with a full request; ``closing`` names the old session so the broker drops it."""
        self.resets += 1
        if not closing:
            self.session_id = 0
        self.epoch = INITIAL_EPOCH
        self.positions = {}


class SessionFetchRequest(FetchRequest):  # type: ignore[misc]
    """aiokafka's fetch request for all the wanted partitions, sent as the next request of a session.

    ``topics`` stays the whole wanted list: the fetcher reads the answer against it.
    """

    def __init__(self, request: FetchRequest, session: FetchSession) -> None:
        super().__init__(request._max_wait_ms, request._min_bytes, request._max_bytes,
                         request._isolation_level, request._topics, rack_id=request._rack_id)
        self.session = session
        self.plan: Plan | None = None
        #: Whether the broker answered this request within its session without an error.
        self.polled = False

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION < SESSIONS_FROM_VERSION:
            return super().build(request_struct_class)
        wanted = {(topic, partition): (offset, max_bytes)
                  for topic, partitions in self._topics for partition, offset, max_bytes in partitions}
        plan = self.plan = self.session.plan(wanted)
        send = _by_topic((key, (key[1], *position)) for key, position in plan.send.items())
        struct = FetchRequest(self._max_wait_ms, self._min_bytes, self._max_bytes, self._isolation_level,
                              send, rack_id=self._rack_id).build(request_struct_class)
        struct.session_id = plan.session_id
        struct.session_epoch = plan.epoch
        struct.forgotten_topics_data = _by_topic((key, key[1]) for key in plan.forget)
        return struct

    def answered(self, response: Any) -> None:
        if self.plan is not None:
            self.session.answered(self.plan, response.error_code, response.session_id)
            if not response.error_code:
                self.session.heard(response.topics)
                self.polled = True

    def failed(self) -> None:
        if self.plan is not None:  # nothing was sent in a session otherwise
            self.session.lost()


def _by_topic(items: Any) -> list[tuple[str, list[Any]]]:
    grouped: dict[str, list[Any]] = {}
    for (topic, _), entry in items:
        grouped.setdefault(topic, []).append(entry)
    return list(grouped.items())


class _SessionClient:
    """The Kafka client as the fetcher sees it: a session's fetch records the broker's answer."""

    def __init__(self, client: Any) -> None:
        self._client = client
        # Read for every partition of every fetch round: plain attributes, not ``__getattr__``.
        self.cluster = client.cluster
        self._loop = client._loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, SessionFetchRequest):
            return await self._client.send(node_id, request, **kwargs)
        try:
            response = await self._client.send(node_id, request, **kwargs)
        except BaseException:  # an error, a timeout or a cancelled fetch: the broker's epoch is unknown
            request.failed()
            raise
        request.answered(response)
        return response


class SessionFetcher(Fetcher):  # type: ignore[misc]
    """aiokafka's fetcher, fetching through one session per broker."""

    def __init__(self, client: Any, subscriptions: Any, **kwargs: Any) -> None:
        self.sessions: dict[int, FetchSession] = {}
        self._watched: set[asyncio.Future[None]] = set()
        super().__init__(_SessionClient(client), subscriptions, **kwargs)

    _leaders_of: tuple[Any, ...] = ()
    _leaders: dict[Any, Any] = {}

    def _get_actions_per_node(self, assignment: Any) -> Any:
        if self._preferred_read_replica or self._client_rack:  # follower fetching (KIP-392): aiokafka's
            actions = super()._get_actions_per_node(assignment)
        else:
            actions = self._round(assignment)
        fetches, resets, timeout, invalid_metadata, resume_futures = actions
        in_sessions = [(node_id, SessionFetchRequest(request, self._session(node_id)))
                       for node_id, request in fetches]
        return in_sessions, resets, timeout, invalid_metadata, resume_futures

    def _round(self, assignment: Any) -> Any:
        """aiokafka's round (``Fetcher._get_actions_per_node``): the same decisions, walked cheaper.

        A round runs after every fetch and whenever the consumer takes records, and walks every
        assigned partition: a worker holds ~70 stream partitions and ~100 changelog partitions,
        paused once recovered. aiokafka looks up each partition's leader in the cluster metadata
        and reads its state through properties on every round: 16.6% of the worker's event loop
        at 40 leads/s with sessions (docs/PERFORMANCE.md, session 7). Here the leaders are looked
        up once per assignment and metadata refresh, and the state is read directly. The order
        of the checks is aiokafka's, and a property test holds the two rounds equal.
        """
        leaders = self._leaders_of_assignment(assignment)
        records, in_flight = self._records, self._in_flight
        fetchable: dict[Any, list[tuple[Any, int]]] = defaultdict(list)
        awaiting_reset: dict[Any, list[Any]] = defaultdict(list)
        backoffs: dict[Any, list[float]] = defaultdict(list)
        resume_futures = []
        invalid_metadata = False
        for tp, state in assignment._tp_state.items():
            node_id = leaders[tp]
            if tp in records:  # records not yet taken: wait for them, at most their backoff
                backoff = records[tp].calculate_backoff()
                if backoff:
                    backoffs[node_id].append(backoff)
            elif node_id in in_flight:
                continue
            elif node_id is None or node_id == -1:
                invalid_metadata = True
            elif state._position is None:
                awaiting_reset[node_id].append(tp)
            elif state._paused:
                resume_futures.append(state._resume_fut)
            else:
                fetchable[node_id].append((tp, state._position))
        requests = []
        for node_id, partitions in fetchable.items():
            if node_id in backoffs or node_id in awaiting_reset:
                continue
            random.shuffle(partitions)  # as aiokafka: no partition always first in a full answer
            by_topic: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
            for tp, position in partitions:
                by_topic[tp.topic].append((tp.partition, position, self._max_partition_fetch_bytes))
            requests.append((node_id, FetchRequest(
                self._fetch_max_wait_ms, self._fetch_min_bytes, self._fetch_max_bytes,
                self._isolation_level, list(by_topic.items()))))
        timeout = min(map(max, backoffs.values())) if backoffs else self._fetcher_timeout
        return requests, awaiting_reset, timeout, invalid_metadata, self._any_resumed(assignment, resume_futures)

    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> Any:
        result = await super()._proc_fetch_request(assignment, node_id, request)
        if isinstance(request, SessionFetchRequest) and request.polled and assignment.active:
            now_ms = int(1000 * time.time())
            session = request.session
            if now_ms - session.stamped_ms >= STAMP_EVERY_MS:
                session.stamped_ms = now_ms
                _mark_polled(assignment, request.plan, session, now_ms)
        return result

    _resumed: asyncio.Future[None] | None = None
    _watched_in: Any = None

    def _any_resumed(self, assignment: Any, resume_futures: list[asyncio.Future[None]]) -> list[Any]:
        """One future for "a paused partition was resumed", in place of one per paused partition.

        The fetcher's loop waits on what a round returns with ``asyncio.wait``, which hooks a
        callback on every future and unhooks it after: ~100 paused changelog partitions on every
        round. Here each pause's future is hooked once, until one of them resolves (or the
        assignment changes), and the loop waits on the one future they resolve.
        """
        if not resume_futures:
            return []
        if self._watched_in is not assignment:
            self._unwatch()
            self._watched_in = assignment
        resumed = self._resumed
        if resumed is None or resumed.done():
            resumed = self._resumed = self._loop.create_future()
        watched = self._watched
        for future in resume_futures:
            if future not in watched:
                watched.add(future)
                future.add_done_callback(self._on_resumed)
        return [resumed]

    def _on_resumed(self, future: asyncio.Future[None]) -> None:
        if future not in self._watched:
            return  # scheduled before another resume unhooked it: that one already woke the loop
        resumed = self._resumed
        if resumed is not None and not resumed.done():
            resumed.set_result(None)
        self._unwatch()  # the next round hooks the partitions still paused afresh

    def _unwatch(self) -> None:
        for future in self._watched:
            future.remove_done_callback(self._on_resumed)
        self._watched = set()

    def _leaders_of_assignment(self, assignment: Any) -> dict[Any, Any]:
        cluster = self._client.cluster
        seen = self._leaders_of  # by identity: a metadata refresh replaces the partitions' dict
        if (not seen or seen[0] is not assignment or seen[1] is not cluster._partitions
                or seen[2] != cluster._last_successful_refresh_ms):
            self._leaders = {tp: cluster.leader_for_partition(tp) for tp in assignment.tps}
            self._leaders_of = (assignment, cluster._partitions, cluster._last_successful_refresh_ms)
        return self._leaders

    def _session(self, node_id: int) -> FetchSession:
        session = self.sessions.get(node_id)
        if session is None:
            session = self.sessions[node_id] = FetchSession()
        return session


def _mark_polled(assignment: Any, plan: Plan | None, session: FetchSession, now_ms: int) -> None:
    """What aiokafka notes of a partition its answer names, for the ones a session answer left out:
    the time of the last poll (it was in the request), and a high watermark if it has none yet."""
    if plan is None:
        return
    watermarks = session.watermarks
    for key in plan.wanted:
        state = assignment.state_value(TopicPartition(*key))
        if state is None:
            continue
        if state.timestamp is None or state.timestamp < now_ms:
            state.timestamp = now_ms
        if state.highwater is None and key in watermarks:
            state.highwater, state.lso = watermarks[key]


def install() -> None:
    """Make every aiokafka consumer started from now on in this process fetch through sessions."""
    aiokafka_consumer.Fetcher = SessionFetcher

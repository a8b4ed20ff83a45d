"""Mount the HTTP API on the worker's web server, with the engine port it reads and writes through.

Views never write tables: they send commands. Reads of a lead, team or rep are answered by the
worker that owns the key; other workers relay the request to it.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka.admin.config_resource import ConfigResourceType
from aiokafka.protocol.admin import DescribeConfigsRequest
from aiokafka.structs import TopicPartition
from yarl import URL

from connectors.api import ApiContext, mount_api
from connectors.api.context import CONTEXT
from connectors.api.errors import ApiError, error_response
from connectors.api.ports import Entity, Readiness
from connectors.api.write_gate import WriteGate
from connectors.auth import ApiKey, Keyring
from connectors.crm import EventsAuth
from connectors.rate_limit import RateLimiter
from leadflow.errors import TransientError, Unconfirmed
from ops.metrics import Metrics
from rules.account_book import AccountCommand
from rules.accounts import Account
from rules.commands import LeadCommand, RepCommand
from rules.lead import LeadState
from rules.reps import RepEntry
from rules.team import TeamState
from streams.app import LeadflowApp, runtime
from streams.log_rate_limit import RepeatLimit
from streams.rebalance_watch import RebalanceWatch
from streams.tables.accounts import accounts
from streams.tables.lead_state import lead_state
from streams.tables.outcome_board import snapshot as outcome_snapshot
from streams.tables.rep_directory import rep_directory
from streams.tables.team_state import read_team, team_state
from streams.tables.team_windows import HOUR_WINDOWS, team_five_minutes, team_minute, window_counts
from streams.topics import account_commands, lead_commands, leads_inbound, partition_of, rep_commands

__all__ = ["READY_THROUGH_REBALANCE_S", "Engine", "mount"]

log = logging.getLogger(__name__)
#: Failed relays get a logger of their own, limited to one line per 10 s with a count: while an
#: owner restarts or is frozen every request for its keys fails the same way (531 lines per worker
#: in one deploy audit run).
relay_log = logging.getLogger(f"{__name__}.relay")
relay_log.addFilter(RepeatLimit())

_FORWARDED = "X-Leadflow-Forwarded"
#: Bound on one API write to Kafka, from the send to the last ack. A healthy broker acks in
#: milliseconds (docs/PERFORMANCE.md); past this it is down or failing over, and the client is
#: better told 503 + Retry-After than held. Was 10 s: every capture of an outage took 10 s.
_ACK_TIMEOUT_S = 5.0
#: After a write Kafka did not take, writes are refused at once; one probe goes this often. The
#: broker is checked as often too, so that a worker made unready by the failure becomes ready again.
_PROBE_EVERY_S = 2.0
#: Bound on one check of the broker (a metadata request and the leaders' connections).
_CHECK_TIMEOUT_S = 2.0
#: With nothing taken or answered by Kafka for this long, /readyz and /metrics check the broker.
_IDLE_CHECK_S = 10.0
#: How long a worker that was ready stays ready (200) through a rebalance, counted from the
#: rebalance's start to its tables being settled again. A rebalance here takes 1-10 s (a rollout
#: step measured 5-6 s; a restart from local RocksDB recovers in ~6 s with 1,000,000 leads) and a
#: recovery that replays changelogs tens of seconds; past a minute something is wrong (a group that
#: keeps rebalancing, a recovery that does not end) and a load balancer should prefer other workers:
#: reads answered here are 503 all along. A cold recovery of a big table can take minutes
#: (docs/PERFORMANCE.md: 183 s for 1,000,000 leads without local state): 503 then is right too.
READY_THROUGH_REBALANCE_S = 60.0
_MIN_ISR = "min.insync.replicas"
#: The owner's headers a relayed answer keeps (besides its status, body and content type): what
#: tells the client when to retry (503, 429, 409) and what a 405 allows. An allow-list: nothing
#: else of the owner's answer (its server, its cookies, hop-by-hop headers) reaches the client.
_RELAYED_HEADERS = ("retry-after", "allow", "location", "idempotency-key")
_TABLES = {"lead": lead_state, "team": team_state, "rep": rep_directory, "account": accounts}



def relayed_headers(received: Mapping[str, str], peer: str | None) -> dict[str, str]:
    """The headers a relay to the key's owner carries: the request's own that the owner reads, the
    relay mark, and ``X-Forwarded-For`` with this worker's peer appended (as a proxy does), so an
    owner that lists the workers' network in ``LEADFLOW_TRUSTED_PROXIES`` counts a failed
    authentication against the client, not against the relaying worker (review s17-a, B2)."""
    headers = {k: v for k, v in received.items()
               if k.lower() in ("authorization", "content-type", "idempotency-key", "accept",
                                 "webhook-id", "webhook-timestamp", "webhook-signature")}
    headers[_FORWARDED] = "1"
    forwarded = [v for k, v in received.items() if k.lower() == "x-forwarded-for"]
    if peer:
        forwarded.append(peer)
    if forwarded:
        headers["X-Forwarded-For"] = ", ".join(forwarded)
    return headers

class Engine:
    """The ``EnginePort`` the API uses, backed by this worker's topics and tables."""

    def __init__(self, app: LeadflowApp) -> None:
        self.app = app
        # Whether the worker was ever settled, and since when its current rebalance lasts.
        self.rebalances = RebalanceWatch(self._tables_ready)
        app.sensors.add(self.rebalances)
        self._own = self._ident(URL(runtime.settings.canonical_url))
        self._gate = WriteGate(cooldown_s=_PROBE_EVERY_S)
        self.report_to(runtime.metrics)
        self._watch: asyncio.Future[Any] | None = None  # checks the broker while Kafka does not take writes
        self._idle: asyncio.Future[Any] | None = None  # a check of the broker while nothing was written
        self._last_check: str | None = None  # what the last check of the broker found wrong

    def report_to(self, metrics: Metrics) -> None:
        """``leadflow_kafka_writes_refused_seconds``, read at each scrape: Prometheus sees an outage
        that readiness alone kept from it (lag and ``up`` do not move while Kafka refuses writes);
        ``leadflow_rebalance_seconds``: how long the current rebalance has lasted."""
        metrics.kafka_writes_refused.set_function(self._writes_refused_s)
        metrics.rebalance_seconds.set_function(self._rebalancing_s)

    def _rebalancing_s(self) -> float:
        return self.rebalances.lasted() if self._waiting_for() is not None else 0.0

    def _writes_refused_s(self) -> float:
        self._check_when_idle()  # each scrape: an idle worker still learns of an outage
        return self._gate.unready_for() or 0.0

    def _check_when_idle(self) -> None:
        """Check the broker in the background when Kafka has not taken or answered anything for
        ``_IDLE_CHECK_S`` and no write failed: captures are the gate's only news, and a quiet worker
        (a night, a weekend: only timers writing) stayed ready through an outage. Triggered by
        ``/readyz`` and by each scrape of ``/metrics``, so it costs nothing when nobody looks."""
        if self.app.rebalancing_count == 0 or self.app.rebalancing:
            return  # starting or rebalancing: the producer may not be up, and readiness says so anyway
        if self._gate.failing_for() is not None or (self._idle is not None and not self._idle.done()):
            return
        quiet = self._gate.quiet_for()
        if quiet is not None and quiet < _IDLE_CHECK_S:
            return
        self._idle = self.app.add_future(self._idle_check())

    async def _idle_check(self) -> None:
        failures = self._gate.failures
        problem = await self._kafka_problem()
        if problem is None:
            self._gate.heard()
            return
        if self._gate.failures != failures or self._gate.failing_for() is not None:
            return  # a write failed meanwhile: the gate knows already
        self._gate.check_failed()
        log.warning("Kafka does not answer this idle worker (%s): not ready until it does", problem)
        self._watch_kafka()
        self._last_check = problem  # what readiness says until the watch's first check

    @staticmethod
    def _ident(url: URL) -> tuple[str, int]:
        return (url.host or "", int(url.port or 80))

    async def capture(self, records: list[tuple[str, bytes]]) -> None:
        await self._acked([(leads_inbound, key, value) for key, value in records])

    async def send_lead_command(self, lead_id: str, command: LeadCommand) -> None:
        await self._acked([(lead_commands, lead_id, command)])

    async def send_rep_command(self, rep_id: str, command: RepCommand) -> None:
        await self._acked([(rep_commands, rep_id, command)])

    async def send_account_command(self, domain: str, command: AccountCommand) -> None:
        await self._acked([(account_commands, domain, command)])

    async def _acked(self, messages: list[tuple[Any, str, Any]]) -> None:
        """Send and wait for Kafka's ack of every message: a 202 promises it is stored.

        While Kafka is known not to take writes the gate refuses at once (``WritesPaused``,
        nothing sent); otherwise the send and the acks together are bounded by ``_ACK_TIMEOUT_S``.
        """
        ticket = self._gate.admit()
        try:
            failure = await self._send_and_wait(messages)
        except BaseException:
            self._gate.abandoned(ticket)  # cancelled (or a bug): nothing learned about Kafka
            raise
        if failure is None:
            down_for = self._gate.failing_for()
            self._gate.ok(ticket)
            if down_for is not None:
                log.warning("Kafka takes this worker's writes again, %.1f s after the first it did not", down_for)
            return
        first = self._gate.failing_for() is None
        self._gate.failed(ticket)
        if first:
            log.warning("Kafka did not take a write (%s): not ready, and writes are refused at once, one probe "
                        "every %.0f s until Kafka acknowledges again", failure, self._gate.cooldown_s)
        self._watch_kafka()
        raise failure

    def _watch_kafka(self) -> None:
        """Check the broker until it answers (one watch at a time): an unready worker gets no write to probe with."""
        if self._watch is None or self._watch.done():
            self._last_check = None
            self._watch = self.app.add_future(self._until_kafka_answers())

    async def _until_kafka_answers(self) -> None:
        """While readiness fails for Kafka, check the broker every ``_PROBE_EVERY_S``; ready again once it answers."""
        while self._gate.unready_for() is not None and not self.app.should_stop:
            await self.app.sleep(_PROBE_EVERY_S)
            failures = self._gate.failures
            self._last_check = await self._kafka_problem()
            if self._last_check is None:
                self._gate.answered(failures)
                if self._gate.unready_for() is None:
                    log.warning("Kafka answers again: ready; writes reopen with the next one Kafka acknowledges")

    async def _kafka_problem(self) -> str | None:
        """``None`` when Kafka answers this worker's producer: a metadata request is answered, every
        partition of ``leads.inbound`` (where captures go) has a leader and the producer can reach
        it. Else what is wrong, in a few words. Bounded by ``_CHECK_TIMEOUT_S``.

        With ``acks=all`` (Faust's default, ours) every partition's in-sync replicas must also
        reach the topic's ``min.insync.replicas`` as the broker counts it (capped at the partition's
        replicas, as Kafka 4 does): below it the broker answers metadata but refuses every capture
        with NOT_ENOUGH_REPLICAS, and a check that passed made the worker ready for one capture,
        unready again after it (flapping). Other refusals metadata cannot show (a topic's
        ``max.message.bytes`` below a lead's size, an ACL) still pass: the next write, the gate's
        probe, then fails and the worker is unready again (docs/RELIABILITY.md).
        """
        try:
            # Not wait_for: on 3.11 it swallows a cancellation that arrives as the check fails.
            async with asyncio.timeout(_CHECK_TIMEOUT_S):
                return await self._check_kafka()
        except TimeoutError:
            return f"no answer in {_CHECK_TIMEOUT_S:.0f} s"
        except Exception as exc:  # aiokafka's KafkaError family, a connection refused, …
            return type(exc).__name__

    async def _check_kafka(self) -> str | None:
        # Faust's aiokafka driver keeps its AIOKafkaProducer here; the writes go through its client.
        producer = getattr(self.app.producer, "_producer", None)
        if producer is None:
            return "the producer is not started"
        client = producer.client
        topic = leads_inbound.get_topic_name()
        metadata = await client.fetch_all_metadata()
        partitions = metadata.partitions_for_topic(topic)
        if not partitions:
            return f"no partitions of {topic} in the metadata"
        leaders = {metadata.leader_for_partition(TopicPartition(topic, p)) for p in partitions}
        if None in leaders or -1 in leaders:
            return f"a partition of {topic} has no leader"
        for leader in sorted(leaders):
            if not await client.ready(leader):
                return f"no connection to broker {leader}"
        if getattr(getattr(self.app, "conf", None), "producer_acks", -1) == -1:
            return await _too_few_in_sync(client, metadata, topic, partitions, min(leaders))
        return None

    @staticmethod
    async def _send_and_wait(messages: list[tuple[Any, str, Any]]) -> TransientError | None:
        """``None`` when Kafka acknowledged every message within the bound, else what to raise.

        The acks are waited for, never cancelled: Faust's ``Topic._on_published`` reads each
        future's result when it completes, and a future cancelled by our timeout (the old
        ``wait_for(gather(...))``) made it raise ``CancelledError`` inside an event-loop callback,
        an ERROR traceback per failed capture. A record not acknowledged in time stays in the
        producer's buffer and may still be stored: that is the ``Unconfirmed`` answer.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _ACK_TIMEOUT_S
        futures: list[asyncio.Future[Any]] = []

        async def send_all() -> None:
            # Queueing can wait too (topic metadata, a full buffer): bounded with the acks.
            for topic, key, value in messages:
                futures.append(await topic.send(key=key, value=value))

        try:
            await asyncio.wait_for(send_all(), _ACK_TIMEOUT_S)
        except (TimeoutError, asyncio.TimeoutError):
            if futures:
                return Unconfirmed("Kafka did not acknowledge in time")
            return TransientError("Kafka did not take the records in time; none was sent")
        except Exception as exc:  # aiokafka raises a family of KafkaError types here
            if futures:
                return Unconfirmed(f"Kafka refused some of the records ({type(exc).__name__})")
            return TransientError(f"Kafka refused the records ({type(exc).__name__})")
        _, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
        failed = [f for f in futures if f.done() and (f.cancelled() or f.exception() is not None)]
        if pending:
            return Unconfirmed("Kafka did not acknowledge in time")
        if not failed:
            return None
        name = "cancelled" if failed[0].cancelled() else type(failed[0].exception()).__name__
        if len(failed) < len(futures):
            return Unconfirmed(f"Kafka acknowledged only some of the records ({name})")
        return TransientError(f"Kafka refused the records ({name})")

    def owner_of(self, entity: Entity, key: str) -> URL | None:
        """The web URL of the worker whose active partition holds ``key`` (from the assignor's map)."""
        table = _TABLES[entity]
        partition = partition_of(key)
        topic = table.changelog_topic.get_topic_name()
        for host, topics in self.app.router.table_metadata(table.name).items():
            if partition in topics.get(topic, ()):
                return URL(host)
        return None

    async def forward_to_owner(self, entity: Entity, key: str, request: web.Request) -> web.Response | None:
        owner = self.owner_of(entity, key)
        if owner is None:
            return error_response(503, "unavailable", "partitions are being assigned; retry shortly",
                                  headers={"Retry-After": "2"})
        if self._ident(owner) == self._own:
            return self._unless_loading(entity)
        if request.headers.get(_FORWARDED):
            # Relayed once already, yet not ours: ownership moved meanwhile (or a client sent the
            # header). Never answer from tables that do not hold the key (a wrong 404, a partial
            # PUT taken for a new rep), and never bounce: the client retries.
            return error_response(503, "unavailable", f"this {entity} is moving between workers; retry shortly",
                                  headers={"Retry-After": "2"})
        # The path as received, not as decoded: "/v1/reps/%2e%2e" must stay one segment.
        target = URL(str(owner).rstrip("/") + request.raw_path, encoded=True)
        headers = relayed_headers(request.headers, request.remote)
        try:
            async with runtime.resources.relay_session.request(
                request.method, target, headers=headers, data=await request.read(),
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response:
                body = await response.read()
                kept = {k: v for k, v in response.headers.items() if k.lower() in _RELAYED_HEADERS}
                return web.Response(body=body, status=response.status,
                                    content_type=response.content_type or "application/json",
                                    headers={**kept, "X-Leadflow-Owner": f"{owner.host}:{owner.port}"})
        except (aiohttp.ClientError, TimeoutError) as exc:
            relay_log.warning("relay to the owner of a %s failed: %s", entity, type(exc).__name__)
            return error_response(503, "unavailable", f"the worker that owns this {entity} did not answer; retry",
                                  headers={"Retry-After": "2"})

    def _unless_loading(self, entity: Entity) -> web.Response | None:
        """``None`` when this worker's tables can answer for the key it owns; else a 503.

        Right after a start or during a rebalance the owner's tables are still empty or moving:
        an existing lead or team read as a 404, and a partial PUT of an existing rep was taken
        for a new rep (its webhook replaced by a new secret). Until they are recovered the
        answer is "retry", never a wrong one. The same once the worker is stopping: its
        partitions are revoked and its tables closed before its web server stops, and its own
        leads read as ``404 no lead`` (10 of 20 reads 29 ms after a SIGTERM in the deploy audit).
        """
        problem = self._tables_unsure()
        if problem is None:
            return None
        return error_response(503, "unavailable", f"the worker that owns this {entity} {problem}; retry shortly",
                              headers={"Retry-After": "2"})

    def _tables_unsure(self) -> str | None:
        """Why this worker's tables cannot say "no such key" now, or ``None`` when they can."""
        if self.app.should_stop:
            return "is stopping"
        if not self.app.tables_settled():
            return "is loading its tables"
        return None

    def _absent(self, entity: Entity) -> None:
        """Called when a key is not in its table: raise a 503 unless the table can be believed.

        ``forward_to_owner`` checked the tables when the request arrived, but a handler reads its
        body before it looks the key up, and a stop (or a rebalance) can begin meanwhile: an absent
        key is then "retry", not a 404 the client would take as final (a dropped disposition)."""
        problem = self._tables_unsure()
        if problem is not None:
            raise ApiError(503, "unavailable", f"the worker that owns this {entity} {problem}; retry shortly",
                           headers={"Retry-After": "2"})

    def lead(self, lead_id: str) -> LeadState | None:
        value = lead_state.get(lead_id)
        if isinstance(value, LeadState):
            return value
        self._absent("lead")
        return None

    def team(self, team_id: str) -> TeamState | None:
        value = read_team(team_id)
        if value is None:
            self._absent("team")
        return value

    def account(self, domain: str) -> Account | None:
        value = accounts.get(domain)
        if isinstance(value, Account):
            return value
        self._absent("account")
        return None

    def rep(self, rep_id: str) -> RepEntry | None:
        value = rep_directory.get(rep_id)
        if isinstance(value, RepEntry):
            return value
        self._absent("rep")
        return None

    def team_sla(self, team_id: str) -> dict[str, dict[str, object]]:
        # "hour": the 12 five-minute windows ending with the current one (streams/tables/team_windows.py).
        return {"minute": window_counts(team_minute, team_id),
                "hour": window_counts(team_five_minutes, team_id, windows=HOUR_WINDOWS)}

    def readiness(self) -> Readiness:
        app = self.app
        if app.should_stop or app.stop_requested_at is not None:
            # Told to stop (SIGTERM): out of rotation at once, while the API still answers for
            # LEADFLOW_SHUTDOWN_DELAY (streams/worker.py), so that a load balancer stops sending here
            # before the port closes.
            return Readiness(False, "stopping")
        if app.rebalancing_count == 0:
            # The web server answers before the consumer has joined the group: not ready yet.
            return Readiness(False, "joining the consumer group")
        unready_for = self._gate.unready_for()
        if unready_for is not None:
            # Not ready: every capture sent here could only be refused (503). Liveness (/healthz)
            # stays up: the worker is waiting for Kafka, not stuck. docs/RELIABILITY.md.
            check = (f"the last check of the broker: {self._last_check}" if self._last_check is not None
                     else f"the broker is checked every {_PROBE_EVERY_S:.0f} s")
            return Readiness(False, f"Kafka has not taken this worker's writes for {unready_for:.0f} s "
                                    f"({check}): captures answer 503; ready again when Kafka answers")
        waiting = self._waiting_for()
        if waiting is not None:
            if not self.rebalances.ready_once:
                return Readiness(False, waiting)  # starting: ready once the tables are recovered
            # Every worker of the group rebalances at once: answering 503 here took the whole API
            # out of a readiness-gated Service for 5-6 s per rollout step, although captures work
            # meanwhile and reads answer 503 + Retry-After on their own. For a bounded time only.
            lasted = self.rebalances.lasted()
            phase = f"rebalancing for {lasted:.0f} s" + ("" if waiting == "rebalancing" else f" ({waiting})")
            if lasted > READY_THROUGH_REBALANCE_S:
                return Readiness(False, f"{phase}: longer than the {READY_THROUGH_REBALANCE_S:.0f} s a worker that "
                                        "was ready stays in rotation through a rebalance")
            return Readiness(True, f"{phase}: captures are taken; reads and commands of leads, reps, teams and "
                                   "accounts answer 503 with Retry-After until the tables are settled")
        assigned = len(app.consumer.assignment()) if app.consumer else 0
        detail = f"{assigned} partition(s) assigned, tables recovered"
        down_for = self._gate.failing_for()
        if down_for is not None:
            # Kafka answers the broker check again, but no write has been acknowledged yet.
            detail += (f"; Kafka answers again after {down_for:.0f} s without taking this worker's writes: "
                       "the next write probes it")
        self._check_when_idle()
        self.rebalances.ready_once = True  # as the watch would see it at the next rebalance
        return Readiness(True, detail)

    def _waiting_for(self) -> str | None:
        """What this worker's tables wait for (a rebalance, a recovery, the outcome board), or ``None``."""
        if self.app.rebalancing:
            return "rebalancing"
        return self._tables_waiting_for()

    def _tables_waiting_for(self) -> str | None:
        """What the tables wait for apart from the rebalance itself (a recovery, the outcome board)."""
        recovery = self.app.table_recovery
        if recovery.in_recovery or not recovery.completed.is_set():
            return "recovering tables"
        if not outcome_snapshot.loaded:
            # Scoring reads the won/lost board: a worker that has not caught up would score without it.
            return "loading the outcome board"
        return None

    def _tables_ready(self) -> bool:
        return self._tables_waiting_for() is None


async def _too_few_in_sync(client: Any, metadata: Any, topic: str, partitions: set[int], node: int) -> str | None:
    """Why an ``acks=all`` produce to ``topic`` is refused now (NOT_ENOUGH_REPLICAS), or ``None``.

    The broker's rule: a partition whose in-sync replicas are fewer than the topic's
    ``min.insync.replicas``, capped at the partition's replica count, refuses such a produce (Kafka
    4 caps it: on one broker ``min.insync.replicas=2`` refuses nothing). The ISR comes with the
    metadata; the setting is asked of ``node`` (DescribeConfigs, the topic's effective value).
    """
    request = DescribeConfigsRequest([(ConfigResourceType.TOPIC, topic, [_MIN_ISR])])
    resources = (await client.send(node, request)).to_object()["resources"]
    entries = [e for r in resources if not r["error_code"] for e in r["config_entries"]
               if e["config_names"] == _MIN_ISR]
    if not entries:
        return None  # not allowed to describe the topic, say: only a write can tell
    min_isr = int(entries[0]["config_value"])
    # aiokafka keeps each partition's replicas and ISR in the metadata, without a public reader.
    known = getattr(metadata, "_partitions", {}).get(topic, {})
    for partition in sorted(partitions):
        state = known.get(partition)
        if state is None:
            continue
        needed = min(min_isr, len(state.replicas))
        if len(state.isr) < needed:
            return (f"partition {partition} of {topic} has {len(state.isr)} in-sync replica(s), "
                    f"min.insync.replicas={min_isr}: Kafka refuses acks=all writes")
    return None


def _crm_events_auth() -> EventsAuth | None:
    crm = runtime.config.crm
    secret = os.environ.get(crm.events_secret_env)
    if not secret:
        log.info("POST /v1/crm/events is off: %s is not set", crm.events_secret_env)
        return None
    return EventsAuth(secret=secret, tolerance_s=crm.events_tolerance)


def mount(app: LeadflowApp, faust_web: Any) -> None:
    """Called by Faust while its web server initializes (before the aiohttp app freezes).

    Faust calls it more than once for ``leadflow worker`` (``App.worker_init_post_autodiscover``
    and ``Web.on_start`` both run ``init_server``). Each call added another API context, routes
    never reached and every middleware again: ``/readyz`` read another engine than ``/v1``, and
    each request was counted three times in ``leadflow_http_requests_total``. Only the first mounts.
    """
    if CONTEXT in faust_web.web_app:
        return
    settings = runtime.settings
    keyring = Keyring(runtime.config.key_digests(),
                      [(ApiKey("api", key.scopes), key.reveal()) for key in settings.api_keys])
    if not len(keyring):
        log.warning("no API keys configured: every /v1 request will be refused (set LEADFLOW_API_KEYS)")
    resources = runtime.resources
    ctx = ApiContext(
        engine=Engine(app), keyring=keyring, store=resources.store, clock=runtime.clock,
        metrics=runtime.metrics, max_batch=settings.max_batch,
        webhook_allow_private=settings.webhook_allow_private,
        allowed_redirect_hosts=settings.allowed_redirect_hosts,
        max_import_rows=settings.max_import_rows,
        rate_limits=runtime.config.rate_limits(),
        rate_limiter=RateLimiter(resources.redis, prefix=f"{settings.app_id}:", timeout_s=1.0,
                                 on_degraded=lambda op: runtime.metrics.redis_degraded.labels(op).inc()),
        providers=runtime.config.providers.resolve(os.environ, lambda: resources.session),
        frameworks=runtime.policy.frameworks,
        crm_events=_crm_events_auth(),
        regions=runtime.config.routing.regions,
        trusted_proxies=settings.trusted_proxies,
    )
    mount_api(faust_web.web_app, ctx)

"""Build the Faust app; the one module-level ``app`` (and its runtime) for the worker CLI."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import rocksdict
from faust.stores import rocksdb as faust_rocksdb

from connectors.lead_input import configure_lead_ids, lead_id_key_fingerprint
from ops.metrics import Metrics
from rules.lead import LeadPolicy
from sla.clock import Clock, SystemClock
from streams import (
    changelog_offsets, faust_fixes, faust_recovery, fetch_sessions, gc_tuning, inline_consumer, log_redaction,
    metadata_backoff, stall_guard, stopping,
)
from streams.codec import CODEC
from streams.config import LeadflowConfig, load_config
from streams.membership import MembershipLost, watch_membership
from streams.resources import Resources
from streams.settings import Settings

__all__ = ["LeadflowApp", "Runtime", "config_digest", "create_app", "app", "runtime"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """What agents and views share besides tables: settings, config, clock, metrics, resources."""

    settings: Settings
    config: LeadflowConfig
    policy: LeadPolicy
    clock: Clock
    metrics: Metrics
    resources: Resources


class LeadflowApp(faust.App):
    """faust.App that mounts leadflow's API on its web server and closes our resources on stop."""

    runtime: Runtime
    #: When the worker was told to stop (SIGTERM, ``streams/worker.py``), in the loop's time: from
    #: then on ``/readyz`` answers 503 "stopping" while the API keeps serving for the shutdown delay.
    stop_requested_at: float | None = None

    def on_webserver_init(self, web: Any) -> None:
        from streams.web import mount  # imported here: web.py needs the topics and tables

        mount(self, web)

    async def on_start(self) -> None:
        await super().on_start()
        self.add_future(self._watch_membership())
        self.add_future(gc_tuning.freeze_when_settled(self))
        # Paused past the session (SIGSTOP, a frozen VM): exit before writing as the partitions' owner.
        self.add_future(stall_guard.watch_loop(float(self.conf.broker_session_timeout)))

    async def _watch_membership(self) -> None:
        try:
            await watch_membership(self, self.runtime.settings.instance_id)
        except MembershipLost as exc:
            await self.crash(exc)  # the worker exits non-zero: never hang unready, never share partitions

    async def _producer_flush(self, logger: Any) -> None:
        if not self.should_stop:  # a rebalance's flush: unchanged (only aiokafka's request timeout bounds it)
            await super()._producer_flush(logger)
            return
        # The stop's last flush waits for ever for a broker that is gone (streams/stopping.py).
        await stopping.within_grace(super()._producer_flush(logger), "the producer's flush")

    async def on_shutdown(self) -> None:
        # After the children (the web server among them) have stopped: closed in on_stop, Redis went
        # before the web server, and a capture accepted meanwhile lost its idempotency record.
        await super().on_shutdown()
        await self.runtime.resources.close()

    @property
    def table_recovery(self) -> Any:
        """Faust's table ``Recovery`` service (its ``TableManagerT`` type does not declare it)."""
        return self.tables.recovery  # type: ignore[attr-defined]

    def tables_settled(self) -> bool:
        """Partitions assigned and tables recovered: what timers check before reading tables."""
        recovery = self.table_recovery
        return (self.rebalancing_count > 0 and not self.rebalancing and recovery.completed.is_set()
                and not recovery.in_recovery)


#: RocksDB memory per partition store (every table has one per partition, standbys too). Faust's
#: defaults are 64 MiB memtables × 3 and a 2 GiB block cache *per store*: a memtable is only
#: flushed when full, so resident memory grew with every value written (team_state's 50 KB values
#: first) towards GBs: 134 → 416 MB over 5,000 bench leads, 220 MB of it memtables. Small
#: memtables flush often; our values are small and the OS page cache keeps the SST files warm.
ROCKSDB_WRITE_BUFFER_BYTES = 4 * 2**20
ROCKSDB_MAX_WRITE_BUFFERS = 2
#: The block cache, and the memtables of every store together, each bounded for the whole process
#: (one ``rocksdict.Cache`` and one ``WriteBufferManager`` shared by every store). Per store, the
#: bounds above still allowed 80 stores (10 tables × 8 partitions) 16 MiB each: 1.3 GB, growing
#: with the partition count, not with the data (docs/PERFORMANCE.md, "soak"). The SST files' index
#: and filter blocks are charged to the same cache (``_shared_memory_options``): left to each file's
#: table reader, as RocksDB does by default, they sit outside any bound and grow with the data.
ROCKSDB_BLOCK_CACHE_BYTES = 64 * 2**20
ROCKSDB_MEMTABLES_BYTES = 64 * 2**20

_shared_memory: tuple[Any, Any] | None = None


def _rocksdb_shared() -> tuple[Any, Any]:
    """The process's one block cache and one write buffer manager (made on first use)."""
    global _shared_memory
    if _shared_memory is None:
        _shared_memory = (rocksdict.Cache(ROCKSDB_BLOCK_CACHE_BYTES),
                          rocksdict.WriteBufferManager(ROCKSDB_MEMTABLES_BYTES, False))  # flush early, never stall
    return _shared_memory


def _shared_memory_options(self: faust_rocksdb.RocksDBOptions) -> Any:
    """``RocksDBOptions.as_options`` for rocksdict: the options Faust sets (the same values), with
    the process's shared block cache and write buffer manager instead of a cache per store, and the
    SST files' index and filter blocks kept in that cache."""
    if not self.use_rocksdict:
        return _faust_as_options(self)
    cache, write_buffers = _rocksdb_shared()
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_max_open_files(-1 if self.max_open_files is None else self.max_open_files)  # -1: no limit
    options.set_write_buffer_size(self.write_buffer_size)
    options.set_max_write_buffer_number(self.max_write_buffer_number)
    options.set_target_file_size_base(self.target_file_size_base)
    options.set_write_buffer_manager(write_buffers)
    blocks = rocksdict.BlockBasedOptions()
    blocks.set_bloom_filter(self.bloom_filter_size, block_based=True)
    blocks.set_block_cache(cache)
    blocks.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
    # Index and filter blocks in the shared cache, not in each SST file's table reader (RocksDB's
    # default: resident while the file is open, and Faust keeps up to 18,000 files open per store).
    # The newest files' (L0, which every lookup may read) stay pinned there; deeper levels' may be
    # evicted and read again from the OS page cache.
    blocks.set_cache_index_and_filter_blocks(True)
    blocks.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(blocks)
    return options


_faust_as_options = faust_rocksdb.RocksDBOptions.as_options


def _open_with_shared_memory(self: faust_rocksdb.RocksDBOptions, path: Path, *, read_only: bool = False) -> Any:
    """``RocksDBOptions.open`` for rocksdict, with our options for the store's column family too.

    Given options but no column families, rocksdict opens an *existing* store with the column
    family options saved in its OPTIONS file and a new 8 MiB block cache of its own: after every
    restart that kept its data dir, each store had a block cache of its own (80 at 8 partitions,
    up to 640 MiB) instead of the shared one. Naming the default column family with the same
    options makes a reopened store the same as a new one. ``read_only`` is ignored for rocksdict,
    as Faust's own ``open`` does."""
    if not self.use_rocksdict:
        return _faust_open(self, path, read_only=read_only)
    options = self.as_options()
    access_type = (rocksdict.AccessType.read_write() if self.ttl is None
                   else rocksdict.AccessType.with_ttl(self.ttl))
    db = rocksdict.Rdict(str(path), options=options, column_families={"default": options},
                         access_type=access_type)
    db.set_read_options(rocksdict.ReadOptions())  # as Faust does
    return db


_faust_open = faust_rocksdb.RocksDBOptions.open


def _bound_rocksdb() -> None:
    """Faust 0.15 has no app setting for store options (only a per-table ``options=``): set the
    defaults every RocksDB store of this process is opened with, windowed tables included, and
    share one block cache and one memtable budget among them."""
    options = faust_rocksdb.RocksDBOptions
    options.write_buffer_size = ROCKSDB_WRITE_BUFFER_BYTES
    options.max_write_buffer_number = ROCKSDB_MAX_WRITE_BUFFERS
    options.block_cache_size = ROCKSDB_BLOCK_CACHE_BYTES
    options.as_options = _shared_memory_options  # type: ignore[method-assign]
    options.open = _open_with_shared_memory  # type: ignore[method-assign]


def config_digest(config: LeadflowConfig) -> str:
    """12 hex digits of the SHA-256 of the validated config, the same for the same teams, reps, rules
    and settings however the file is laid out (comments, order of keys, quoting).

    Every worker routes the leads of its partitions by its own config, so two workers of one group
    with different configs route alike leads differently, silently. The digest is exported as
    ``leadflow_config_info{digest}``; the alert ``LeadflowConfigDiffers`` fires when a deployment's
    workers show more than one."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _announce_config(settings: Settings, config: LeadflowConfig, metrics: Metrics) -> None:
    digest = config_digest(config)
    metrics.config_info.labels(digest).set(1)
    reps = sum(len(team.reps) for team in config.teams)
    if settings.config_path is None:
        log.warning("no config file (LEADFLOW_CONFIG or --config): this worker knows no teams or reps and "
                    "routes every lead of its partitions to the default team; config digest %s", digest)
    else:
        log.info("config %s: %d team(s), %d rep(s), digest %s (every worker of the group must show the same; "
                 "leadflow_config_info)", settings.config_path, len(config.teams), reps, digest)


def _announce_web_host(settings: Settings) -> None:
    """Warn when the other workers could not reach this one: a loopback LEADFLOW_WEB_HOST beside a
    broker on another host (a multi-host deployment) sends relayed requests to the wrong worker."""
    loopback = ("127.", "localhost", "::1", "[::1]")
    brokers = [b.strip() for b in settings.broker.removeprefix("kafka://").split(";") if b.strip()]
    remote = [b for b in brokers if not b.lower().startswith(loopback)]
    if settings.web_host.lower().startswith(loopback) and remote:
        log.warning("LEADFLOW_WEB_HOST is %s while Kafka is at %s: workers on other hosts cannot relay requests "
                    "for this worker's leads, reps and teams to it; set LEADFLOW_WEB_HOST to this host's address",
                    settings.web_host, remote[0])


def _announce_lead_ids(settings: Settings, metrics: Metrics) -> None:
    configure_lead_ids(settings.lead_id_key)
    fingerprint = lead_id_key_fingerprint(settings.lead_id_key)
    metrics.lead_id_key_info.labels(fingerprint).set(1)  # LeadflowLeadIdKeysDiffer: one per deployment
    if settings.lead_id_key is None:
        log.warning("LEADFLOW_LEAD_ID_KEY is not set: lead ids are plain SHA-256 hashes of e-mails and phones, "
                    "which anyone holding an e-mail can recompute; set a key before the first lead "
                    "(README, configuration: LEADFLOW_LEAD_ID_KEY)")
    else:
        log.info("lead ids: an HMAC with LEADFLOW_LEAD_ID_KEY, fingerprint %s (every worker must show the same)",
                 fingerprint)


def create_app(settings: Settings, config: LeadflowConfig | None = None, clock: Clock | None = None) -> LeadflowApp:
    faust_fixes.install()  # skipped records must not be committed unprocessed (see the module)
    log_redaction.install()  # no message contents (personal data, secrets) in the libraries' debug lines
    faust_recovery.install()  # recovery: "any partition behind?" without a Counter per record; no seek a rebalance overtook
    changelog_offsets.install()  # a produced changelog offset is persisted only when no record lies between
    stall_guard.install()  # no produce request after a stall longer than the Kafka session (zombie writes)
    metadata_backoff.install()  # a failed metadata refresh waits before the next (Kafka down: no busy loop)
    _bound_rocksdb()
    config = config if config is not None else load_config(settings.config_path)
    new = LeadflowApp(
        settings.app_id,
        broker=settings.broker,
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir),
        autodiscover=False,
        key_serializer="raw",
        value_serializer=CODEC,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        table_standby_replicas=settings.standby_replicas,
        processing_guarantee="at_least_once",
        # Leads are few and latency matters: commit often rather than every 10 000 messages.
        broker_commit_every=100,
        broker_commit_interval=1.0,
        # Agents publish a batch's messages in one go, so they share produce requests without any
        # linger; since agents take what is ready (take_ready), a linger only adds latency at
        # every stage. LEADFLOW_PRODUCER_LINGER_MS, default 0 (docs/PERFORMANCE.md: 0 against 5).
        producer_linger=settings.producer_linger_ms / 1000,
        # A worker killed without leaving the group holds its partitions until the session
        # times out; Faust's 60 s default would stall routing for a minute after a crash.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        # Static membership (None: dynamic). A restarted worker rejoins under the same id and gets
        # its partitions back at once; it does not wait out the session above. See settings.py.
        consumer_group_instance_id=settings.instance_id,
        consumer_auto_offset_reset="earliest",
        # Up to 8 MiB per partition and fetch (Faust's default 1 MiB; a response stays capped at
        # aiokafka's 50 MB fetch_max_bytes): a cold restore waits on one fetch round trip per
        # ~350 lead_state records otherwise. 200,000 leads: 39.3 s against 60.1 s (docs/PERFORMANCE.md).
        consumer_max_fetch_size=8 * 2**20,
        # The consumer only learns of topics through metadata refreshes. Topics declared at start
        # (a new deployment) can be missing from the snapshot the group joins with, and aiokafka
        # does not ask again for unknown topics: with the 5 min default their partitions stayed
        # unassigned (lead.commands unconsumed) for minutes. A refresh finds them and rejoins.
        consumer_metadata_max_age_ms=5_000,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind="0.0.0.0",
        canonical_url=settings.canonical_url,
        web_application_options={"client_max_size": settings.max_body_bytes},
        # Faust's built-in views would expose table contents (personal data) and debug graphs.
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_in_thread=False,
        # Faust's worker would set the root logger to DEBUG for its terminal spinner (see the class).
        Worker="streams.worker:LeadflowWorker",
    )
    if not settings.consumer_thread:
        inline_consumer.install(new)  # the consumer on the worker's loop, not in a thread of its own
    if settings.fetch_sessions:
        fetch_sessions.install()  # fetches name only the partitions that changed (KIP-227)
    metrics = Metrics()
    # Source labels stay bounded: configured sources plus the defaults the capture paths use.
    metrics.configure_sources(config.source_spend(), extra=config.metric_sources() | {"api", "kafka"})
    _announce_config(settings, config, metrics)
    _announce_lead_ids(settings, metrics)
    _announce_web_host(settings)
    new.runtime = Runtime(
        settings=settings, config=config, policy=config.lead_policy(settings.default_team),
        clock=clock or SystemClock(), metrics=metrics, resources=Resources(settings, metrics),
    )
    return new


app = create_app(Settings.from_env())
runtime = app.runtime

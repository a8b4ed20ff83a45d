"""The benchmark's rig: the local stack, real worker processes, a verifying SDR receiver, a
``lead.events`` reader and a CPU/memory sampler. Everything started here is stopped by its pid.

A ``Deployment`` is one app id (consumer group, topics, tables) with one or more workers; each
run gets a fresh one, so no step inherits another run's leads.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ops.bench.results import Resources
from ops.demo.receiver import Delivery, DemoReceiver
from ops.stack import StackConfig, find_repo_root, stack_down, stack_status, stack_up
from ops.stack.process import start_process, stop_process, tail

__all__ = ["API_KEY", "Say", "Stack", "Deployment", "Worker", "Tracker", "Sampler", "bench_config",
           "load_average", "quiet_about_new_topics", "require_free_port", "start_receiver"]

#: Only ever accepted by the workers this harness starts (passed in their environment).
API_KEY = "bench-key-local-only-not-a-secret"
REPO = find_repo_root()

Say = Callable[[str], None]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Stack:
    """The local stack for a bench run: started if needed, stopped afterwards if we started it."""

    def __init__(self, say: Say, *, keep: bool = False) -> None:
        self.config = StackConfig.from_env()
        self._say, self._keep = say, keep
        self._started = False

    def __enter__(self) -> Stack:
        self._started = not stack_status(self.config).running
        self._say(f"stack: Kafka {self.config.kafka_bootstrap}, Redis :{self.config.redis_port} "
                  f"(state {self.config.state_dir})")
        stack_up(self.config, progress=lambda line: self._say(f"  {line}"))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started and not self._keep:
            self._say("stack: stopping the Kafka and Redis this run started")
            stack_down(self.config, progress=lambda line: self._say(f"  {line}"))


def _secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def bench_config(teams: int, reps: int, capacity: int, receiver_port: int) -> tuple[str, dict[str, str]]:
    """The YAML for ``teams`` teams of ``reps`` reps each (webhooks to the receiver) and their secrets.

    Leads are spread over the teams by country (one ``DE``-style code per team), so a run with
    several teams spreads the team agent's work over partitions; one team is the hot spot.
    """
    lines = ["routing:", "  default_team: t00", "  rules:" if teams > 1 else "  rules: []", ]
    for t in range(1, teams):
        lines += [f"    - {{team: t{t:02d}, countries: [{_country(t)}]}}"]
    lines.append("teams:")
    rep_secrets: dict[str, str] = {}
    for t in range(teams):
        lines += [f"  - id: t{t:02d}", "    reps:"]
        for r in range(reps):
            rep_id = f"t{t:02d}r{r:02d}"
            rep_secrets[rep_id] = secret = _secret()
            lines.append(f"      - {{id: {rep_id}, capacity: {capacity}, webhook_url: "
                         f"'http://127.0.0.1:{receiver_port}/hooks/{rep_id}', webhook_secret: '{secret}'}}")
    return "\n".join(lines) + "\n", rep_secrets


def _country(team: int) -> str:
    return ("DE", "FR", "ES", "IT", "NL", "BE", "AT", "PL", "SE", "DK", "FI", "PT", "IE", "CZ", "GR")[team % 15]


def country_of(index: int, teams: int) -> str | None:
    """The country a bench lead carries so that lead ``index`` goes to team ``index % teams``."""
    team = index % teams
    return None if team == 0 else _country(team)


@dataclass
class Worker:
    """One ``leadflow worker`` process of a deployment."""

    port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


@dataclass
class Deployment:
    """Workers sharing one app id; ``start``/``stop``/``kill`` them by their own pids."""

    stack: StackConfig
    workdir: Path
    config_yaml: str
    partitions: int = 8
    app_id: str = field(default_factory=lambda: "bench" + uuid.uuid4().hex[:8])
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"{self.app_id}."

    def env(self, worker: Worker) -> dict[str, str]:
        config = self.workdir / "config.yaml"
        config.write_text(self.config_yaml)
        return {
            **os.environ,
            "LEADFLOW_BROKER": self.stack.kafka_url, "LEADFLOW_REDIS_URL": self.stack.redis_url,
            "LEADFLOW_CONFIG": str(config), "LEADFLOW_WEB_PORT": str(worker.port),
            "LEADFLOW_DATA_DIR": str(worker.data_dir), "LEADFLOW_API_KEYS": API_KEY,
            "LEADFLOW_APP_ID": self.app_id, "LEADFLOW_TOPIC_PREFIX": self.prefix,
            "LEADFLOW_PARTITIONS": str(self.partitions), "LEADFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
            "LEADFLOW_LOG_LEVEL": "warning", "LEADFLOW_SHUTDOWN_DELAY": "0", **self.extra_env,
        }

    def add_worker(self, port: int) -> Worker:
        # Data dirs per app id: RocksDB offsets from another deployment would not match its topics.
        worker = Worker(port, self.workdir / self.app_id / f"data-{port}", self.workdir / f"worker-{port}.log")
        self.workers.append(worker)
        return worker

    def start(self, worker: Worker) -> None:
        worker.data_dir.parent.mkdir(parents=True, exist_ok=True)
        worker.proc = start_process([sys.executable, "-m", "leadflow", "worker"], log_path=worker.log_path,
                                    env=self.env(worker), cwd=REPO)

    def kill9(self, worker: Worker) -> None:
        """SIGKILL, as a crash: no shutdown code runs, the consumer group is not left."""
        if worker.proc is not None and worker.proc.poll() is None:
            os.kill(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait(timeout=10)

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                stop_process(worker.proc, timeout=20)

    async def wait_ready(self, worker: Worker, timeout: float = 180.0, poll_s: float = 0.1) -> float:
        """Seconds until ``/readyz`` answers 200 (raises with the log's tail if the worker died)."""
        began = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() - began < timeout:
                if worker.proc is None or worker.proc.poll() is not None:
                    raise RuntimeError(f"worker :{worker.port} exited; its log ends with:\n{tail(worker.log_path, 30)}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with session.get(f"{worker.url}/readyz") as response:
                        if response.status == 200:
                            return time.monotonic() - began
                await asyncio.sleep(poll_s)
        raise RuntimeError(f"worker :{worker.port} not ready after {timeout:.0f} s; log:\n{tail(worker.log_path, 30)}")


def _parse_at(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class Tracker:
    """Send times of our leads, their ``lead.assigned`` times (from ``lead.events``) and their first
    verified webhook at the receiver: the raw material of every latency the bench reports."""

    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}  # lead_id -> wall-clock send time
        self.assigned_at: dict[str, float] = {}  # lead_id -> the event's own time (worker's clock)
        self.delivered_at: dict[str, float] = {}  # lead_id -> when the receiver verified it
        self.delivered_rep: dict[str, str] = {}
        self.counts: dict[str, int] = {"bad_signature": 0, "duplicate_webhook": 0, "unknown_lead_event": 0}
        self.on_first_delivery: Callable[[str, str], None] | None = None

    def on_event(self, raw: bytes) -> None:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict) or event.get("type") != "lead.assigned":
            return
        lead_id = event.get("lead_id")
        if not isinstance(lead_id, str) or lead_id not in self.sent_at:
            self.counts["unknown_lead_event"] += 1
            return
        at = _parse_at(event.get("at"))
        if at is not None and lead_id not in self.assigned_at:
            self.assigned_at[lead_id] = at

    def on_delivery(self, delivery: Delivery) -> None:
        if not delivery.verified:
            self.counts["bad_signature"] += 1
            return
        if delivery.duplicate:
            self.counts["duplicate_webhook"] += 1
            return
        lead_id = delivery.lead_id
        if delivery.event_type != "lead.assigned" or lead_id is None or lead_id not in self.sent_at:
            return
        if lead_id not in self.delivered_at:
            self.delivered_at[lead_id] = delivery.received_at.timestamp()
            self.delivered_rep[lead_id] = delivery.rep_id
            if self.on_first_delivery is not None:
                self.on_first_delivery(lead_id, delivery.rep_id)


class EventReader:
    """Reads ``<prefix>lead.events`` from the start into a ``Tracker`` until stopped."""

    def __init__(self, bootstrap: str, topic: str, tracker: Tracker) -> None:
        self._bootstrap, self._topic, self._tracker = bootstrap, topic, tracker
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        # A short metadata age: the topic may only appear with the first event (then it is seen
        # within a second, not after aiokafka's default five minutes).
        consumer = AIOKafkaConsumer(self._topic, bootstrap_servers=self._bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    metadata_max_age_ms=1000)
        await consumer.start()

        async def read() -> None:
            try:
                with quiet_about_new_topics(self._topic.partition(".")[0]):
                    await _read()
            finally:
                await consumer.stop()

        async def _read() -> None:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=2000)
                for records in batches.values():
                    for record in records:
                        if record.value is not None:
                            self._tracker.on_event(record.value)

        self._task = asyncio.get_running_loop().create_task(read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class _NewTopics(logging.Filter):
    """Drops aiokafka's complaints about a run's topics while the cluster learns of them.

    A topic just created is missing from the client's metadata for a moment ("Topic … not
    found in cluster metadata", an error), and then answers ``NotLeaderForPartitionError`` even
    after its metadata names a leader; aiokafka refreshes and retries, and logs each step:
    expected, and alarming.
    """

    def __init__(self, run: str) -> None:
        super().__init__()
        self.run = run

    def filter(self, record: logging.LogRecord) -> bool:
        return self.run not in record.getMessage()


#: The aiokafka loggers that complain about a topic just created.
_COMPLAINING = ("aiokafka.producer.sender", "aiokafka.cluster")


@contextlib.contextmanager
def quiet_about_new_topics(run: str) -> Iterator[None]:
    loggers, quiet = [logging.getLogger(name) for name in _COMPLAINING], _NewTopics(run)
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _busy(port: int, flag: str, note: str = "") -> RuntimeError:
    # The defaults (6190, 8190-8192) are the same for everyone on a shared machine.
    return RuntimeError(f"port {port} is in use (another bench, demo or worker?): pass {flag} with a free port{note}")


def require_free_port(port: int, flag: str, note: str = "") -> None:
    """``RuntimeError`` naming ``port`` and the option that sets it (``flag``) when something already
    listens on it, on any address: one line instead of a worker's log or a bind traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: TIME_WAIT is no owner
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _busy(port, flag, note) from None
            raise


class _Receiver(DemoReceiver):
    """The demo's receiver, whose busy port is named with the bench's option, not a bind traceback."""

    def __init__(self, rep_secrets: dict[str, str], tracker: Tracker, port: int) -> None:
        super().__init__(rep_secrets, port=port, on_delivery=tracker.on_delivery, history=16)
        self._bench_port = port

    async def start(self) -> None:
        try:
            await super().start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _busy(self._bench_port, "--receiver-port") from None
            raise


def start_receiver(rep_secrets: dict[str, str], tracker: Tracker, port: int) -> DemoReceiver:
    """The SDR side: verifies every Standard Webhooks signature with its own code, then records it.
    Its ``start`` raises ``RuntimeError`` naming ``--receiver-port`` when the port is taken."""
    return _Receiver(rep_secrets, tracker, port)


class Sampler:
    """CPU and resident memory of the given pids, sampled every ``interval_s`` (psutil)."""

    def __init__(self, pids: Callable[[], list[int]], interval_s: float = 0.5) -> None:
        self._pids, self._interval = pids, interval_s
        self._cpu: list[float] = []
        self._rss: list[float] = []
        self._machine: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            import psutil
        except ImportError:  # the bench extra is not installed: report no figures rather than fail
            return
        processes: dict[int, Any] = {}
        psutil.cpu_percent(None)  # baseline for the machine-wide figure

        async def sample() -> None:
            while True:
                cpu = rss = 0.0
                for pid in self._pids():
                    try:
                        proc = processes.get(pid)
                        if proc is None:
                            proc = processes[pid] = psutil.Process(pid)
                            proc.cpu_percent(None)  # the first call only sets the baseline
                            continue
                        cpu += proc.cpu_percent(None)
                        rss += proc.memory_info().rss / 1e6
                    except psutil.Error:
                        processes.pop(pid, None)
                if rss:
                    self._cpu.append(cpu)
                    self._rss.append(rss)
                    self._machine.append(psutil.cpu_percent(None))
                await asyncio.sleep(self._interval)

        self._task = asyncio.get_running_loop().create_task(sample())

    async def stop(self) -> Resources:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._cpu:
            return Resources(None, None, None, 0)
        return Resources(sum(self._cpu) / len(self._cpu), max(self._cpu), max(self._rss), len(self._cpu),
                         sum(self._machine) / len(self._machine) if self._machine else None)

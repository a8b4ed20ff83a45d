"""The local Kafka broker: jars from Maven Central, KRaft storage formatted once, a real readiness probe."""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import CoordinationType

from ops.stack.config import StackConfig
from ops.stack.errors import StackError
from ops.stack.process import PidFile, file_lock, is_running, start_daemon, tail
from ops.stack.service import Progress

__all__ = ["PROBE_TOPIC", "KafkaService", "find_java", "random_cluster_id", "render_server_properties"]

_T = TypeVar("_T")

#: Created by the first probe (the broker auto-creates nothing); one tiny partition, never read.
PROBE_TOPIC = "__leadflow_stack_probe"
_PROBE_GROUP = "__leadflow_stack_probe"
_TOPIC_ALREADY_EXISTS = 36  # Kafka's error code: the probe topic is there from an earlier start
#: aiokafka's loggers that complain about the probe topic while the broker is still electing its
#: leader: "not found in cluster metadata" (cluster), NotLeaderForPartitionError retries (sender).
_PROBE_NOISY_LOGGERS = ("aiokafka.cluster", "aiokafka.producer.sender")
_MIN_JAVA = 17  # Kafka 4 brokers need Java 17+
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def render_server_properties(cfg: StackConfig) -> str:
    """The broker's server.properties: the packaged template with ports and data dir filled in."""
    template = Template(files("ops.stack").joinpath("server.properties").read_text())
    return template.substitute(
        kafka_port=cfg.kafka_port,
        controller_port=cfg.kafka_controller_port,
        log_dirs=_Paths(cfg).data,
    )


def random_cluster_id() -> str:
    """A KRaft cluster id, as `kafka-storage random-uuid` prints it.

    Kafka's Uuid in URL-safe base64 without padding. Made here rather than by running
    StorageTool, which would cost a second JVM start on every fresh state dir. Kafka rejects
    ids starting with '-' (they read as command-line flags), so those are drawn again.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def find_java() -> Path:
    """The `java` to run the broker with ($JAVA_HOME first, then PATH), checked to be 17+."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    found = candidate if candidate and candidate.is_file() else shutil.which("java")
    if not found:
        raise StackError(
            "kafka: `java` not found (needed to run the Kafka broker). Install a JDK 17+, "
            "e.g. `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME."
        )
    java = Path(found)
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_392" style
            major = int(match.group(2))
        if major < _MIN_JAVA:
            raise StackError(
                f"kafka: {java} is Java {major}; Kafka 4 needs Java {_MIN_JAVA}+. Install a newer "
                "JDK, e.g. `apt-get install openjdk-17-jre-headless`, or point JAVA_HOME at one."
            )
    return java


class _Paths:
    def __init__(self, cfg: StackConfig) -> None:
        self.dir = cfg.state_dir / "kafka"
        self.data = self.dir / "data"
        self.properties = self.dir / "server.properties"
        self.log4j = self.dir / "log4j2.yaml"
        self.server_log = self.dir / "server.log"
        self.console_log = self.dir / "console.log"  # the JVM's stdout/stderr: crashes, bad flags
        self.pid = self.dir / "kafka.pid"
        self.home = cfg.cache_dir / f"kafka-{cfg.kafka_version}"
        self.libs = self.home / "libs"
        self.fetched = self.home / ".complete"  # written last: a half-done fetch is redone


class KafkaService:
    """Single-node KRaft Kafka (broker + controller in one JVM), run detached and found by pid file."""

    name = "kafka"
    stop_timeout = 15.0  # a controlled shutdown flushes and closes the logs; give it time

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.paths = _Paths(cfg)
        self._java: Path | None = None
        self.pid_file = PidFile(self.paths.pid)
        self.url = cfg.kafka_url
        self.log_path = self.paths.server_log
        self.ports: Mapping[int, str] = {
            cfg.kafka_port: "LEADFLOW_KAFKA_PORT",
            cfg.kafka_controller_port: "LEADFLOW_KAFKA_CONTROLLER_PORT",
        }

    def prepare(self, progress: Progress) -> None:
        """Fetch the jars (first run only), render the configs, format storage (fresh dir only)."""
        java = self._java = find_java()
        self._fetch_jars(progress)
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        self.paths.properties.write_text(render_server_properties(self.cfg))
        self.paths.log4j.write_text(files("ops.stack").joinpath("log4j2.yaml").read_text())
        self._format_storage(java, progress)

    def start(self) -> int:
        heap = self.cfg.kafka_heap
        argv: list[str | os.PathLike[str]] = [
            self._java or find_java(),
            f"-Xmx{heap}",
            f"-Xms{heap}",
            # The JVM flags kafka-server-start.sh uses, minus GC logging.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.paths.dir}",
            f"-Dlog4j2.configurationFile={self.paths.log4j}",
            "-cp",
            f"{self.paths.libs}/*",  # expanded by the JVM, not a shell
            "kafka.Kafka",
            self.paths.properties,
        ]
        return start_daemon(argv, log_path=self.paths.console_log, cwd=self.paths.dir)

    def wait_ready(self, pid: int, timeout: float, progress: Progress) -> None:
        """Block until a produce with acks=all and a group-coordinator lookup both succeed.

        The port opening is not enough: the broker accepts connections before its metadata is
        loaded, and the group coordinator (what Faust needs first) comes up after that.
        """
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        next_note = started + 10.0
        last_error = "the port is not open yet"
        while True:
            if not is_running(pid):
                raise StackError(f"kafka: the broker exited during startup.\n{self.log_tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StackError(
                    f"kafka: not ready after {timeout:.0f} s (last: {last_error}).\n{self.log_tail()}"
                )
            if _port_open(self.cfg.kafka_port):
                try:
                    _run_sync(_probe(self.cfg.kafka_bootstrap, min(remaining, 15.0)))
                    return
                except Exception as exc:  # every failure here means "not yet"; we retry until the deadline
                    last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if time.monotonic() >= next_note:
                progress(f"kafka: still waiting for the broker ({time.monotonic() - started:.0f} s)…")
                next_note += 10.0
            time.sleep(0.25)

    def log_tail(self) -> str:
        """The last 20 lines of server.log, plus the JVM console if it said anything useful."""
        parts = [f"--- last lines of {self.paths.server_log}:\n{tail(self.paths.server_log)}"]
        console = tail(self.paths.console_log)
        # The console holds only our start header unless the JVM itself complained.
        if any(line and not line.startswith("--- ") for line in console.splitlines()):
            parts.append(f"--- last lines of {self.paths.console_log}:\n{console}")
        return "\n".join(parts)

    def _fetch_jars(self, progress: Progress) -> None:
        if self.paths.fetched.exists():
            return
        self.cfg.cache_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.cfg.cache_dir / f"kafka-{self.cfg.kafka_version}.lock", progress, "kafka jars"):
            if self.paths.fetched.exists():  # another process fetched them while we waited
                return
            self._run_maven(progress)

    def _run_maven(self, progress: Progress) -> None:
        mvn = shutil.which("mvn")
        if not mvn:
            raise StackError(
                "kafka: `mvn` not found (needed once, to fetch the Kafka jars from Maven Central). "
                "Install it with `apt-get install maven`."
            )
        version = self.cfg.kafka_version
        progress(
            f"kafka: fetching org.apache.kafka:kafka_2.13:{version} with Maven into "
            f"{_short(self.paths.home)} (first run only)…"
        )
        started = time.monotonic()
        self.paths.home.mkdir(parents=True, exist_ok=True)
        staging = self.paths.home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(self.paths.libs, ignore_errors=True)
        pom = self.paths.home / "pom.xml"
        pom.write_text(files("ops.stack").joinpath("pom.xml").read_text())
        result = subprocess.run(
            [
                # -U: Maven caches a failed download and would not retry it for a day; we only
                # get here when the jars are missing, so always ask Maven Central again.
                mvn, "-B", "-q", "-U",
                "-f", pom,
                f"-Dmaven.repo.local={self.cfg.cache_dir / 'm2'}",
                f"-Dkafka.version={version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
            ],
            cwd=self.paths.home,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            # Debian's Maven colours its output even in batch mode; keep the lines that say why.
            plain = _ANSI.sub("", result.stdout + result.stderr).splitlines()
            output = "\n".join(line for line in plain[-30:] if line.strip() not in ("", "[ERROR]"))
            raise StackError(
                f"kafka: Maven could not fetch org.apache.kafka:kafka_2.13:{version} "
                f"(exit {result.returncode}). Check the version exists on Maven Central and that "
                f"Maven Central is reachable. Maven said:\n{output}"
            )
        staging.rename(self.paths.libs)
        self.paths.fetched.write_text(f"{version}\n")
        jars = len(list(self.paths.libs.glob("*.jar")))
        progress(f"kafka: fetched {jars} jars in {time.monotonic() - started:.1f} s")

    def _format_storage(self, java: Path, progress: Progress) -> None:
        # meta.properties is written by a successful format; its presence means "keep the data".
        if (self.paths.data / "meta.properties").exists():
            return
        progress(f"kafka: formatting KRaft storage in {_short(self.paths.data)} (fresh state dir)…")
        result = subprocess.run(
            [
                # No log4j2 config here: the tool's errors go to our captured output, and
                # server.log stays the broker's alone.
                java, "-cp", f"{self.paths.libs}/*",
                "kafka.tools.StorageTool", "format", "--standalone",
                "-t", random_cluster_id(),
                "-c", self.paths.properties,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise StackError(f"kafka: formatting {self.paths.data} failed:\n{output}")


class _ProbeTopicPending(logging.Filter):
    """Drops aiokafka's errors and retry warnings about the probe topic while it gets its leader.

    Right after the probe creates it, the topic has no leader for a moment, and aiokafka logs
    that on every retry: expected here, and alarming on a terminal.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return PROBE_TOPIC not in record.getMessage()


async def _probe(bootstrap: str, timeout: float) -> None:
    loggers = [logging.getLogger(name) for name in _PROBE_NOISY_LOGGERS]
    pending = _ProbeTopicPending()
    for logger in loggers:
        logger.addFilter(pending)
    try:
        # One overall bound too: aiokafka's own timeouts cover requests, not every await in start().
        await asyncio.wait_for(_produce_and_find_coordinator(bootstrap, timeout), timeout)
    finally:
        for logger in loggers:
            logger.removeFilter(pending)


async def _create_probe_topic(bootstrap: str, timeout_ms: int) -> None:
    """Create the probe topic unless it exists: the broker auto-creates no topic
    (``auto.create.topics.enable=false`` in server.properties), as in most production clusters."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="leadflow-stack-probe",
                                request_timeout_ms=timeout_ms)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(PROBE_TOPIC, 1, 1)])
    finally:
        await admin.close()
    for topic, code, *message in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise StackError(f"kafka: creating the probe topic {topic} failed with error {code} {message}")


async def _produce_and_find_coordinator(bootstrap: str, timeout: float) -> None:
    timeout_ms = max(1000, int(timeout * 1000))
    await _create_probe_topic(bootstrap, timeout_ms)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="leadflow-stack-probe",
        acks="all",
        request_timeout_ms=timeout_ms,
        retry_backoff_ms=100,
    )
    await producer.start()
    try:
        # acks=all on the new topic: topic creation, the log append path and partition leadership work.
        await producer.send_and_wait(PROBE_TOPIC, b"ping")
        # The group coordinator (on __consumer_offsets) comes up last; Faust needs it first.
        await producer.client.coordinator_lookup(CoordinationType.GROUP, _PROBE_GROUP)
    finally:
        await producer.stop()


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` to completion from sync code, even when the caller is inside an event loop
    (an async test or fixture): then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stack-probe") as pool:
        return pool.submit(asyncio.run, coro).result()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _short(path: Path) -> str:
    """`path` relative to the CWD when it is below it: progress lines stay readable."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)

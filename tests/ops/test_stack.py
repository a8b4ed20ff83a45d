"""The local stack: fast tests of its pieces, and one real Kafka + Redis lifecycle."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from aiokafka.structs import ConsumerRecord

from ops.stack import StackConfig, StackError, find_repo_root, stack_down, stack_status, stack_up
from ops.stack.kafka import KafkaService, find_java, random_cluster_id, render_server_properties
from ops.stack.process import (
    PidFile,
    is_running,
    port_in_use,
    start_daemon,
    start_process,
    stop_process,
    tail,
)
from ops.stack.redis import RedisService

REPO = find_repo_root()


def _free_port(preferred: int) -> int:
    """`preferred` if nothing holds it, else one the kernel picks."""
    if not port_in_use(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _exited_pid() -> int:
    """The pid of a process that has come and gone (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def cfg(tmp_path: Path) -> StackConfig:
    """A private stack: temp state dir and test ports, so the developer's stack is never touched.

    The cache dir is the shared one, so the Kafka jars are fetched once per machine.
    """
    kafka_port = _free_port(19192)
    controller_port = _free_port(19193 if kafka_port == 19192 else kafka_port + 1)
    return StackConfig(
        state_dir=tmp_path / "state",
        cache_dir=REPO / ".cache",
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        redis_port=_free_port(16479),
    )


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


# --- config -------------------------------------------------------------------------------


def test_config_from_env_moves_the_controller_port_with_the_kafka_port(tmp_path: Path) -> None:
    cfg = StackConfig.from_env(
        {"LEADFLOW_KAFKA_PORT": "19092", "LEADFLOW_REDIS_PORT": "16379", "LEADFLOW_STATE_DIR": str(tmp_path)}
    )
    assert (cfg.kafka_port, cfg.kafka_controller_port, cfg.redis_port) == (19092, 19093, 16379)
    assert cfg.state_dir == tmp_path
    assert cfg.cache_dir == REPO / ".cache"
    assert cfg.kafka_url == "kafka://127.0.0.1:19092"
    assert cfg.redis_url == "redis://127.0.0.1:16379/0"


def test_config_defaults_live_in_the_repo() -> None:
    cfg = StackConfig.from_env({})
    assert (REPO / "pyproject.toml").is_file()
    assert cfg.state_dir == REPO / ".state"
    assert (cfg.kafka_port, cfg.kafka_controller_port, cfg.redis_port) == (9092, 9093, 6379)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEADFLOW_KAFKA_PORT": "kafka"}, "LEADFLOW_KAFKA_PORT='kafka' is not a port"),
        ({"LEADFLOW_REDIS_PORT": "70000"}, "redis_port=70000 is not a TCP port"),
        ({"LEADFLOW_REDIS_PORT": "9092"}, "ports must all differ"),
    ],
)
def test_config_rejects_bad_ports(env: dict[str, str], message: str) -> None:
    with pytest.raises(StackError, match=message):
        StackConfig.from_env(env)


# --- kafka config rendering ------------------------------------------------------------------


def test_server_properties_carry_the_ports_and_data_dir(tmp_path: Path) -> None:
    cfg = StackConfig(state_dir=tmp_path, kafka_port=19192, kafka_controller_port=19193)
    props = dict(
        line.split("=", 1)
        for line in render_server_properties(cfg).splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19192,CONTROLLER://127.0.0.1:19193"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19192"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19193"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert props["process.roles"] == "broker,controller"
    assert props["offsets.topic.replication.factor"] == "1"
    assert not [value for value in props.values() if "$" in value]


def test_cluster_ids_look_like_kafkas() -> None:
    ids = {random_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22  # 16 bytes, base64 without padding
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# --- pid files and processes ---------------------------------------------------------------


def test_pid_file_of_a_live_process(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pid_file = PidFile(tmp_path / "x.pid")
    pid_file.write(sleeper.pid)
    assert pid_file.live_pid() == sleeper.pid
    assert not pid_file.is_stale()


def test_pid_file_of_a_gone_process_is_stale(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "x.pid")
    pid_file.path.write_text(f"{_exited_pid()}\n")
    assert pid_file.live_pid() is None
    assert pid_file.is_stale()


def test_pid_file_ignores_a_recycled_pid(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    # Same pid, different start time: another process got the number after ours died.
    pid_file = PidFile(tmp_path / "x.pid")
    pid_file.write(sleeper.pid)
    record = pid_file.read()
    assert record is not None and record.started is not None
    pid_file.path.write_text(f"{sleeper.pid}\n{record.started + 1}\n")
    assert pid_file.live_pid() is None


@pytest.mark.parametrize("content", ["", "garbage\n", "12x\n"])
def test_unreadable_pid_file_is_stale(tmp_path: Path, content: str) -> None:
    pid_file = PidFile(tmp_path / "x.pid")
    pid_file.path.write_text(content)
    assert pid_file.read() is None
    assert pid_file.is_stale()


def test_missing_pid_file_is_not_stale(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "x.pid")
    assert pid_file.live_pid() is None
    assert not pid_file.is_stale()


def test_status_reports_a_stale_pid_file_as_stopped(cfg: StackConfig) -> None:
    pid_file = cfg.state_dir / "redis" / "redis.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{_exited_pid()}\n")
    status = stack_status(cfg)
    assert not status.redis.running and status.redis.pid is None
    assert pid_file.exists()  # status only reads; stack_up and stack_down clean up


def test_stop_process_stops_the_whole_group(tmp_path: Path) -> None:
    log = tmp_path / "sh.log"
    proc = start_process(["sh", "-c", "sleep 60 & echo $!; wait"], log_path=log)
    grandchild = _wait_for_int_line(log)
    assert stop_process(proc, timeout=5.0) is True
    assert proc.returncode is not None
    assert _gone_soon(grandchild)


def test_stop_process_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "sh.log"
    proc = start_process(["sh", "-c", "trap '' TERM; echo ready; sleep 60"], log_path=log)
    _wait_for_line(log, "ready")
    began = time.monotonic()
    assert stop_process(proc.pid, timeout=0.5) is False
    assert time.monotonic() - began < 5
    assert not is_running(proc.pid)
    proc.wait(timeout=5)


def test_a_daemon_is_detached_and_stopped_by_pid(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    pid = start_daemon(["sh", "-c", "echo up; exec sleep 60"], log_path=log)
    try:
        _wait_for_line(log, "up")
        assert os.getsid(pid) == pid  # its own session: Ctrl-C in our terminal does not reach it
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # not our child: it outlives this process
    finally:
        assert stop_process(pid, timeout=5.0) is True
    assert _gone_soon(pid)


def test_start_daemon_names_a_missing_program(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="cannot start /nonexistent/prog"):
        start_daemon(["/nonexistent/prog"], log_path=tmp_path / "x.log")


def test_stop_process_of_a_gone_pid_is_a_no_op() -> None:
    assert stop_process(_exited_pid()) is True


def test_start_process_names_a_missing_program(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="cannot start /nonexistent/prog"):
        start_process(["/nonexistent/prog"], log_path=tmp_path / "x.log")


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3).splitlines() == ["line 97", "line 98", "line 99"]
    assert "no log at" in tail(tmp_path / "missing.log")


def test_up_refuses_a_port_held_by_someone_else(cfg: StackConfig) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", cfg.kafka_port))
        squatter.listen()
        with pytest.raises(StackError, match=rf"port {cfg.kafka_port} .*LEADFLOW_KAFKA_PORT"):
            stack_up(cfg, progress=lambda line: None)
    assert not stack_status(cfg).kafka.running
    assert not stack_status(cfg).redis.running


def test_missing_java_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(StackError, match="JDK 17.*apt-get install openjdk-17-jre-headless"):
        find_java()


def test_missing_maven_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cfg: StackConfig
) -> None:
    # java is there, mvn is not, and this cache has no jars yet: the first run needs Maven.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = find_java()
    (bin_dir / "java").symlink_to(java.resolve())
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(StackError, match="`mvn` not found.*apt-get install maven"):
        stack_up(replace(cfg, cache_dir=tmp_path / "cache"), progress=lambda line: None)
    assert not stack_status(cfg).kafka.running


def test_kafka_that_exits_while_starting_is_reported_with_its_log(cfg: StackConfig) -> None:
    service = KafkaService(cfg)
    service.paths.dir.mkdir(parents=True)
    service.paths.server_log.write_text("boot\nERROR something broke\n")
    with pytest.raises(StackError, match=r"(?s)exited during startup.*ERROR something broke"):
        service.wait_ready(_exited_pid(), timeout=5.0, progress=lambda line: None)


def test_redis_that_never_answers_times_out(cfg: StackConfig, sleeper: subprocess.Popen[bytes]) -> None:
    with pytest.raises(StackError, match=rf"(?s)no PONG after 1 s .*last lines of {cfg.state_dir}"):
        RedisService(cfg).wait_ready(sleeper.pid, timeout=1.0, progress=lambda line: None)


def test_down_with_wipe_deletes_the_service_data(cfg: StackConfig) -> None:
    (cfg.state_dir / "kafka" / "data").mkdir(parents=True)
    (cfg.state_dir / "kafka" / "data" / "meta.properties").write_text("cluster.id=x\n")
    lines: list[str] = []
    stack_down(cfg, progress=lines.append, wipe=True)
    assert not (cfg.state_dir / "kafka").exists()
    assert lines == ["kafka: not running", "redis: not running", f"stack: wiped {cfg.state_dir}"]


def _stand_in(cfg: StackConfig, service: str, tmp_path: Path) -> int:
    """A detached `sleep` recorded in `service`'s pid file, as if the stack had started it."""
    log = tmp_path / f"{service}-stand-in.log"
    pid = start_daemon(["sh", "-c", "echo up; exec sleep 60"], log_path=log)
    _wait_for_line(log, "up")
    PidFile(cfg.state_dir / service / f"{service}.pid").write(pid)
    return pid


@pytest.mark.parametrize(("named", "other"), [("kafka", "redis"), ("redis", "kafka")])
def test_down_of_one_service_stops_its_recorded_pid_and_leaves_the_other(
    cfg: StackConfig, tmp_path: Path, named: str, other: str
) -> None:
    pids = {name: _stand_in(cfg, name, tmp_path) for name in ("kafka", "redis")}
    lines: list[str] = []
    try:
        stack_down(cfg, [named], progress=lines.append)
        assert _gone_soon(pids[named])
        assert is_running(pids[other])
        assert not (cfg.state_dir / named / f"{named}.pid").exists()
        assert stack_status(cfg)[other].pid == pids[other]
        assert lines[0] == f"{named}: stopping (pid {pids[named]})…" and len(lines) == 2, lines
        assert not any(line.startswith(other) for line in lines), lines
    finally:
        for pid in pids.values():
            stop_process(pid, timeout=5.0)


def test_down_of_one_service_never_signals_a_process_it_did_not_record(cfg: StackConfig, tmp_path: Path) -> None:
    # A Kafka-looking process with no pid file of ours (someone else's broker) is left alone.
    log = tmp_path / "theirs.log"
    theirs = start_daemon(["sh", "-c", "echo up; exec sleep 60"], log_path=log)
    try:
        _wait_for_line(log, "up")
        lines: list[str] = []
        stack_down(cfg, ["kafka"], progress=lines.append)
        assert lines == ["kafka: not running"]
        assert is_running(theirs)
    finally:
        stop_process(theirs, timeout=5.0)


def test_down_with_wipe_of_one_service_deletes_only_its_data(cfg: StackConfig) -> None:
    for name in ("kafka", "redis"):
        (cfg.state_dir / name).mkdir(parents=True)
        (cfg.state_dir / name / "data.txt").write_text("x")
    lines: list[str] = []
    stack_down(cfg, ["kafka"], progress=lines.append, wipe=True)
    assert not (cfg.state_dir / "kafka").exists()
    assert (cfg.state_dir / "redis" / "data.txt").exists()
    assert lines == ["kafka: not running", f"stack: wiped {cfg.state_dir / 'kafka'}"]


@pytest.mark.parametrize("names", [["zookeeper"], ["kafka", "postgres"], []])
def test_an_unknown_service_is_refused_before_anything_is_stopped(
    cfg: StackConfig, tmp_path: Path, names: list[str]
) -> None:
    kafka = _stand_in(cfg, "kafka", tmp_path)
    try:
        with pytest.raises(StackError, match="the stack has kafka and redis"):
            stack_down(cfg, names)
        with pytest.raises(StackError, match="the stack has kafka and redis"):
            stack_up(cfg, names)
        assert is_running(kafka)
    finally:
        stop_process(kafka, timeout=5.0)


def test_cli_stack_down_kafka_stops_kafka_alone(
    cfg: StackConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from leadflow.cli import main

    pids = {name: _stand_in(cfg, name, tmp_path) for name in ("kafka", "redis")}
    monkeypatch.setenv("LEADFLOW_STATE_DIR", str(cfg.state_dir))
    monkeypatch.setenv("LEADFLOW_KAFKA_PORT", str(cfg.kafka_port))
    monkeypatch.setenv("LEADFLOW_KAFKA_CONTROLLER_PORT", str(cfg.kafka_controller_port))
    monkeypatch.setenv("LEADFLOW_REDIS_PORT", str(cfg.redis_port))
    try:
        assert main(["stack", "down", "kafka"]) == 0
        assert _gone_soon(pids["kafka"]) and is_running(pids["redis"])
        assert main(["stack", "status"]) == 3  # one service stopped
        out = capsys.readouterr().out
        assert f"kafka: stopping (pid {pids['kafka']})" in out and "redis: stopping" not in out, out
        assert "kafka  stopped" in out and f"redis  running (pid {pids['redis']})" in out, out
        with pytest.raises(SystemExit) as usage:
            main(["stack", "down", "zookeeper"])
        assert usage.value.code == 2
        assert "no service 'zookeeper': the stack has kafka and redis" in capsys.readouterr().err
    finally:
        for pid in pids.values():
            stop_process(pid, timeout=5.0)


# --- the real stack ------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(300)  # may be the first to fetch the jars and apt-install redis-server
def test_failed_start_stops_what_it_started_and_quotes_the_log(cfg: StackConfig) -> None:
    # A heap the JVM refuses: Kafka dies at once, after Redis was already started by this call.
    broken = replace(cfg, kafka_heap="1k")
    lines: list[str] = []
    with pytest.raises(StackError, match=r"(?s)kafka: the broker exited during startup.*heap"):
        stack_up(broken, progress=lines.append)
    redis_started = [line for line in lines if line.startswith("redis: started (pid")]
    assert redis_started, lines
    redis_pid = int(redis_started[0].split("pid ")[1].split(")")[0])
    assert _gone_soon(redis_pid)
    status = stack_status(broken)
    assert not status.kafka.running and not status.redis.running
    assert not (cfg.state_dir / "redis" / "redis.pid").exists()


@pytest.mark.integration
@pytest.mark.timeout(300)  # a cold CI box fetches the jars and apt-installs redis-server first
async def test_stack_lifecycle_with_a_real_round_trip(cfg: StackConfig) -> None:
    lines: list[str] = []
    # A pid file left by a crashed run must not stop `up`.
    (cfg.state_dir / "redis").mkdir(parents=True)
    (cfg.state_dir / "redis" / "redis.pid").write_text(f"{_exited_pid()}\n")
    try:
        status = stack_up(cfg, progress=lines.append)
        assert any("removing stale pid file" in line for line in lines)
        assert status.running
        assert status.kafka.url == f"kafka://127.0.0.1:{cfg.kafka_port}"
        assert status.redis.url == f"redis://127.0.0.1:{cfg.redis_port}/0"
        assert stack_status(cfg) == status
        pids = [status.kafka.pid, status.redis.pid]
        assert all(pid is not None and is_running(pid) for pid in pids)

        lines.clear()
        again = stack_up(cfg, progress=lines.append)
        assert [again.kafka.pid, again.redis.pid] == pids
        assert all("already running" in line for line in lines), lines

        # Kafka alone down and up again (a broker outage): Redis is not touched, Kafka keeps its data.
        await _kafka_round_trip(cfg.kafka_bootstrap)
        stack_down(cfg, ["kafka"], progress=lines.append)
        assert not is_running(pids[0]) and is_running(pids[1])
        assert not stack_status(cfg).kafka.running and stack_status(cfg).redis.pid == pids[1]
        back = stack_up(cfg, ["kafka"], progress=lines.append)
        assert back.running and back.kafka.pid not in (None, pids[0]) and back.redis.pid == pids[1]
        pids = [back.kafka.pid, back.redis.pid]

        await _kafka_round_trip(cfg.kafka_bootstrap)
        await _no_auto_created_topic(cfg.kafka_bootstrap)
        client = aioredis.Redis.from_url(cfg.redis_url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
    finally:
        stack_down(cfg, progress=lines.append)

    stopped = stack_status(cfg)
    assert not stopped.kafka.running and not stopped.redis.running
    assert not any(is_running(pid) for pid in pids if pid is not None)
    assert not (cfg.state_dir / "kafka" / "kafka.pid").exists()
    assert not port_in_use(cfg.kafka_port) and not port_in_use(cfg.redis_port)


async def _kafka_round_trip(bootstrap: str) -> None:
    """Produce and consume through a consumer group: proves this Kafka works with our aiokafka."""
    topic = f"leadflow.test.stack-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"lead-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"{topic}.group", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        message = await _get_one(consumer, timeout=30)
        assert (message.key, message.value) == (b"lead-1", b"hello")
        await consumer.commit()
    finally:
        await consumer.stop()


async def _no_auto_created_topic(bootstrap: str) -> None:
    """A send to a topic nobody created fails and creates nothing: leadflow creates its topics
    with their partition counts, and a one-partition topic from a typo or a start-up race would
    break co-partitioning silently."""
    topic = f"leadflow.test.never-created-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    await producer.start()
    try:
        with pytest.raises((UnknownTopicOrPartitionError, KafkaTimeoutError)):
            await producer.send_and_wait(topic, b"lost")
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()


async def _get_one(consumer: AIOKafkaConsumer, timeout: float) -> ConsumerRecord[bytes, bytes]:
    return await asyncio.wait_for(consumer.getone(), timeout)


def _wait_for_line(path: Path, text: str, timeout: float = 5.0) -> None:
    """Wait until the log has a line that is exactly `text` (the start header quotes the command)."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text().splitlines():
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.02)


def _wait_for_int_line(path: Path, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        numbers = [line for line in path.read_text().splitlines() if line.strip().isdigit()]
        if numbers:
            return int(numbers[0])
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.02)


def _gone_soon(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True

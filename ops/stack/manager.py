"""Bring the local stack (Kafka + Redis) up, report on it, take it down: idempotently, by pid.

Each call acts on the whole stack or on the services it names: ``stack_down(cfg, ["kafka"])``
stops Kafka alone (a broker outage for a running worker), ``stack_up(cfg, ["kafka"])`` starts it
again on the same data.
"""
from __future__ import annotations

import contextlib
import signal
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ops.stack.config import StackConfig
from ops.stack.errors import StackError
from ops.stack.kafka import KafkaService
from ops.stack.process import file_lock, port_in_use, stop_process
from ops.stack.redis import RedisService
from ops.stack.service import Progress, Service, ServiceStatus, print_progress

__all__ = ["SERVICES", "StackStatus", "stack_down", "stack_status", "stack_up"]

DEFAULT_TIMEOUT = 90.0
#: The services of the stack, in start order (Kafka first: its JVM takes the longest to boot).
SERVICES = ("kafka", "redis")


@dataclass(frozen=True)
class StackStatus:
    """Every service of the stack, in start order."""

    services: tuple[ServiceStatus, ...]

    @property
    def running(self) -> bool:
        """True if every service is running."""
        return all(service.running for service in self.services)

    def __getitem__(self, name: str) -> ServiceStatus:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    @property
    def kafka(self) -> ServiceStatus:
        return self["kafka"]

    @property
    def redis(self) -> ServiceStatus:
        return self["redis"]

    def __str__(self) -> str:
        rows = []
        for s in self.services:
            state = f"running (pid {s.pid})" if s.running else "stopped"
            rows.append(f"{s.name:<6} {state:<22} {s.url:<26} log: {s.log_path}")
        return "\n".join(rows)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked, then delivered) until the block ends: between a service's
    start and its pid being recorded, an exception from a signal handler would leave the service
    running with no pid file and outside the list ``stack_up`` stops on failure (review s18-f).
    The daemon launcher unblocks them for the service it starts."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stack_up(
    cfg: StackConfig | None = None,
    services: Iterable[str] | None = None,
    *,
    progress: Progress = print_progress,
    timeout: float = DEFAULT_TIMEOUT,
) -> StackStatus:
    """Start whatever is not running yet and return once every service really answers.

    ``services`` names the ones to act on (``["kafka"]``); ``None``: all of them. The status
    returned covers the whole stack either way.

    Already running and healthy: nothing is started, only reported. A pid file whose process is
    gone is removed. A port held by a process that is not ours is an error naming the port and
    the variable that moves it. If a service does not get ready within `timeout` s, what this
    call started is stopped again and StackError quotes the last lines of the service's log.
    """
    cfg = cfg or StackConfig.from_env()
    chosen = _services(cfg, services)
    with file_lock(cfg.state_dir / "stack.lock", progress, "stack"):
        started: list[tuple[Service, int]] = []
        try:
            # Start everything first, then wait: Kafka's JVM boots while Redis is installed.
            pids: dict[str, int] = {}
            launched_at: dict[str, float] = {}
            for service in chosen:
                pid = _running_pid(service, progress)
                if pid is None:
                    _check_ports_free(service)
                    service.prepare(progress)
                    with _signals_held():  # a Ctrl-C now would leave a service running that nothing records
                        pid = service.start()
                        service.pid_file.write(pid)
                        started.append((service, pid))
                    launched_at[service.name] = time.monotonic()
                    progress(f"{service.name}: started (pid {pid}), waiting until it answers…")
                pids[service.name] = pid
            # Wait for the quick one first, so each "ready (N s)" is that service's own time.
            for service in reversed(chosen):
                fresh = service.name in launched_at
                try:
                    service.wait_ready(pids[service.name], timeout, progress)
                except StackError as exc:
                    if fresh:
                        raise
                    raise StackError(
                        f"{exc}\n{service.name} was already running (pid {pids[service.name]}) but "
                        "does not answer; restart the stack (`leadflow stack down`, then `up`)."
                    ) from exc
                if fresh:
                    took = time.monotonic() - launched_at[service.name]
                    progress(f"{service.name}: ready at {service.url} ({took:.1f} s after start)")
                else:
                    progress(f"{service.name}: already running (pid {pids[service.name]}) at {service.url}")
        except BaseException:
            # Includes Ctrl-C: never leave a half-started stack behind.
            for service, pid in reversed(started):
                # A failure to stop must not hide why the start failed.
                with contextlib.suppress(StackError):
                    stop_process(pid, timeout=service.stop_timeout)
                    service.pid_file.remove()
            raise
    return stack_status(cfg)


def stack_down(
    cfg: StackConfig | None = None,
    services: Iterable[str] | None = None,
    *,
    progress: Progress = print_progress,
    wipe: bool = False,
) -> None:
    """Stop every service we started (SIGTERM, then SIGKILL after its stop timeout).

    ``services`` names the ones to stop (``["kafka"]``: the broker alone, Redis stays up);
    ``None``: all of them. Only pids from our own pid files are signalled, never a process found
    by name. `wipe=True` then deletes those services' data in the state dir (Kafka's topics and
    cluster id, Redis files) for a fresh start next time.
    """
    cfg = cfg or StackConfig.from_env()
    chosen = _services(cfg, services)
    with file_lock(cfg.state_dir / "stack.lock", progress, "stack"):
        for service in chosen:
            pid = _running_pid(service, progress)
            if pid is None:
                progress(f"{service.name}: not running")
                continue
            progress(f"{service.name}: stopping (pid {pid})…")
            began = time.monotonic()
            graceful = stop_process(pid, timeout=service.stop_timeout)
            service.pid_file.remove()
            how = "stopped" if graceful else f"killed (no exit {service.stop_timeout:.0f} s after SIGTERM)"
            progress(f"{service.name}: {how} in {time.monotonic() - began:.1f} s")
        if wipe:
            for service in chosen:
                shutil.rmtree(cfg.state_dir / service.name, ignore_errors=True)
            if len(chosen) == len(SERVICES):
                progress(f"stack: wiped {cfg.state_dir}")
            else:
                progress(f"stack: wiped {', '.join(str(cfg.state_dir / s.name) for s in chosen)}")


def stack_status(cfg: StackConfig | None = None) -> StackStatus:
    """Which services are running, by their pid files (read-only: nothing is cleaned up)."""
    cfg = cfg or StackConfig.from_env()
    statuses = []
    for service in _services(cfg):
        pid = service.pid_file.live_pid()
        statuses.append(ServiceStatus(service.name, pid is not None, pid, service.url, service.log_path))
    return StackStatus(tuple(statuses))


def _services(cfg: StackConfig, names: Iterable[str] | None = None) -> list[Service]:
    """The services named (all when ``None``), in start order; an unknown name is a StackError."""
    # Kafka first: its JVM takes the longest to boot, so it starts before Redis is installed.
    every: list[Service] = [KafkaService(cfg), RedisService(cfg)]
    if names is None:
        return every
    wanted = list(names)
    unknown = [name for name in wanted if name not in SERVICES]
    if unknown or not wanted:
        raise StackError(f"stack: no service {', '.join(map(repr, unknown)) or '(none named)'}; "
                         f"the stack has {' and '.join(SERVICES)}")
    return [service for service in every if service.name in wanted]


def _running_pid(service: Service, progress: Progress) -> int | None:
    """Our live pid for `service`, after removing a pid file whose process is gone."""
    pid = service.pid_file.live_pid()
    if pid is None and service.pid_file.path.exists():
        record = service.pid_file.read()
        gone = f"pid {record.pid}" if record else "an unreadable pid"
        progress(f"{service.name}: removing stale pid file ({gone} is no longer running)")
        service.pid_file.remove()
    return pid


def _check_ports_free(service: Service) -> None:
    for port, variable in service.ports.items():
        if port_in_use(port):
            example = f"{variable}={port + 10000}" if port + 10000 <= 65535 else f"{variable}=<port>"
            raise StackError(
                f"{service.name}: port {port} on 127.0.0.1 is already in use by a process this stack "
                f"did not start (no running pid in {service.pid_file.path}). Stop that process, or "
                f"move the stack to another port: set {example} (for `make run` and "
                "`leadflow stack up`), or pass StackConfig(...) in code."
            )

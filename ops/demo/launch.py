"""``leadflow run``: the stack, a worker with the demo config, and the live demo; Ctrl-C or SIGTERM stops it all."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from leadflow.errors import LeadflowError
from ops.demo.run import CONFIG_PATH, load_demo_settings, run_demo
from ops.stack import StackConfig, stack_down, stack_status, stack_up
from ops.demo.stopping import StopSignals
from ops.stack.process import PidFile, start_process, stop_process, tail
from streams.exit_status import EXIT_STALLED  # not stall_guard: it imports Faust, which spawns a child

__all__ = ["DEMO_ENV", "RestartBudget", "launch_demo", "report_command", "restarts_after", "stack_after_stop", "stop_exit_code",
           "supervised"]

_READY_TIMEOUT_S = 120.0
#: How often the demo looks whether its worker is still running.
_WORKER_POLL_S = 0.5

T = TypeVar("T")


def _say(message: str) -> None:
    _print(f"leadflow: {message}")


def _print(line: str) -> None:
    try:
        print(line, flush=True)
    except OSError:
        pass  # the terminal is gone (SIGHUP): carry on stopping what the demo started


def _render_config(receiver_port: int, target: Path) -> Path:
    # The demo config points every rep's webhook at the receiver on 8090; follow --receiver-port.
    text = CONFIG_PATH.read_text(encoding="utf-8").replace("127.0.0.1:8090", f"127.0.0.1:{receiver_port}")
    target.write_text(text, encoding="utf-8")
    return target


def _wait_ready(url: str, worker_log: Path, proc_alive: Callable[[], bool]) -> None:
    began = time.monotonic()
    while time.monotonic() - began < _READY_TIMEOUT_S:
        if not proc_alive():
            raise LeadflowError(f"the worker exited during start-up; its log ends with:\n{tail(worker_log, 30)}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    _say(f"worker ready at {url} ({time.monotonic() - began:.1f} s)")
                    return
        except (urllib.error.URLError, OSError, TimeoutError):
            pass
        time.sleep(0.5)
    raise LeadflowError(f"the worker was not ready after {_READY_TIMEOUT_S:.0f} s; its log ends with:\n"
                        f"{tail(worker_log, 30)}")


#: DEMO ONLY, published in docs/capture.md so its examples run against the demo: the Facebook and
#: Typeform webhook secrets (config.yaml's ``providers:`` names these variables) and the host the
#: HTML form example redirects to. They are set for the demo's worker whatever the environment
#: holds, so the documented values always work; they are not secrets and protect nothing.
DEMO_ENV: Final[dict[str, str]] = {
    "LEADFLOW_FACEBOOK_APP_SECRET": "demo-facebook-app-secret-not-a-secret",
    "LEADFLOW_FACEBOOK_VERIFY_TOKEN": "demo-facebook-verify-token-not-a-secret",
    "LEADFLOW_TYPEFORM_SECRET": "demo-typeform-secret-not-a-secret",
    "LEADFLOW_ALLOWED_REDIRECT_HOSTS": "www.example.com",
}


def report_command(topic_prefix: str, kafka_url: str) -> str:
    """The ``leadflow report`` command line that reads this demo run's events."""
    broker = "" if kafka_url == StackConfig().kafka_url else f" --broker {kafka_url}"
    return f"leadflow report{broker} --topic {topic_prefix}lead.events -o report.html"


def stack_after_stop(*, was_running: bool, keep_stack: bool) -> str | None:
    """Why the stack keeps running when the demo ends, or ``None``: the demo stops it.

    The same for Ctrl-C, SIGTERM, SIGHUP, the end of ``--leads`` and a failed start: the demo
    stops the stack it started, unless ``--keep-stack``; a stack that was already running
    (``leadflow stack up``, a test session) is not the demo's to stop.
    """
    if was_running:
        return "it was running before `leadflow run` started"
    if keep_stack:
        return "--keep-stack"
    return None


def restarts_after(status: int) -> bool:
    """Whether the demo starts its worker again after the worker exited with ``status`` by itself.

    Only after a pause longer than its Kafka session (``streams/stall_guard.py``): the worker left
    without writing, its data dir is intact, and it must rejoin. Any other exit is a failure the
    demo shows and stops on: a restart would hide it.
    """
    return status == EXIT_STALLED


@dataclass
class RestartBudget:
    """At most ``limit`` restarts within ``window_s``, each after a longer wait than the last one.

    A worker that keeps being paused past its session (a VM frozen again and again, a host that
    swaps) was restarted at once and for ever (s16 review): a restart loop that hid the problem.
    """

    limit: int = 5
    window_s: float = 300.0
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _at: list[float] = field(default_factory=list)

    def next_delay(self) -> float | None:
        """How long to wait before the next restart (counted as made), or ``None``: the budget is spent."""
        now = self.clock()
        self._at = [at for at in self._at if now - at < self.window_s]
        if len(self._at) >= self.limit:
            return None
        delay = min(self.first_delay_s * 2.0 ** len(self._at), self.max_delay_s)
        self._at.append(now)
        return delay


async def supervised(work: Awaitable[T], exited: Callable[[], int | None], restart: Callable[[int], None],
                     poll_s: float = _WORKER_POLL_S, budget: RestartBudget | None = None) -> T:
    """Run ``work`` while watching the worker: ``exited()`` is its status once it has exited.

    A worker that ``restarts_after`` its status is started again (``restart(status)``) after the
    ``budget``'s wait, and the demo goes on; once the budget is spent (5 restarts in 5 minutes),
    or on any other exit, the demo ends with a ``LeadflowError`` naming the status and why.
    """
    budget = RestartBudget() if budget is None else budget

    async def watch() -> None:
        while True:
            await asyncio.sleep(poll_s)
            status = exited()
            if status is None:
                continue
            if not restarts_after(status):
                raise LeadflowError(f"the worker exited with status {status} while the demo ran")
            delay = budget.next_delay()
            if delay is None:
                raise LeadflowError(
                    f"the worker exited with status {status} again after {budget.limit} restarts within "
                    f"{budget.window_s / 60:.0f} minutes: each time it was paused longer than its Kafka session "
                    "(a frozen VM or container, a host that swaps or suspends); the demo stops rather than "
                    "restart it in a loop")
            await asyncio.sleep(delay)
            restart(status)

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            watcher.result()  # raises the worker's exit
        return await task
    finally:
        watcher.cancel()
        task.cancel()


def launch_demo(*, leads: int | None, rate: float, port: int, receiver_port: int, keep_stack: bool) -> int:
    """Run the whole demo in the foreground; return the exit code.

    Ctrl-C, SIGTERM and SIGHUP all stop it the same way: the demo pieces, then the worker (by its
    pid, SIGKILL if it does not exit on SIGTERM), then the stack if this run started it.
    """
    stack = StackConfig.from_env()
    was_running = stack_status(stack).running
    run_id = time.strftime("demo%Y%m%d%H%M%S")
    prefix = f"{run_id}."
    workdir = stack.state_dir / "demo"
    worker: subprocess.Popen[bytes] | None = None
    stopped_by: str | None = None  # the signal that stopped the demo, if one did
    with StopSignals(on_repeat=lambda name: _say(f"{name}: still stopping what the demo started…"),
                     on_deferred=lambda name: _say(f"{name}: stopping once this step is done…")) as stop:
        try:
            _say("starting the local stack (Kafka in KRaft mode + Redis; the first run downloads Kafka)…")
            with stop.deferred():  # a pid not yet in its pid file would be lost
                stack_up(stack, progress=lambda line: _say(line))
            workdir.mkdir(parents=True, exist_ok=True)
            config = _render_config(receiver_port, workdir / "config.yaml")
            settings = load_demo_settings(config)
            worker_log = workdir / "worker.log"
            # A fresh app id and topic prefix per run: the demo starts from an empty slate every time.
            env = {
                **os.environ,
                **DEMO_ENV,
                "LEADFLOW_BROKER": stack.kafka_url,
                "LEADFLOW_REDIS_URL": stack.redis_url,
                "LEADFLOW_CONFIG": str(config),
                "LEADFLOW_WEB_PORT": str(port),
                "LEADFLOW_DATA_DIR": str(workdir / run_id),
                "LEADFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
                "LEADFLOW_APP_ID": run_id,
                "LEADFLOW_TOPIC_PREFIX": prefix,
                # One worker, no load balancer to drain: Ctrl-C stops the demo at once.
                "LEADFLOW_SHUTDOWN_DELAY": "0",
                "LEADFLOW_PARTITIONS": "4",
            }
            with stop.deferred():  # a signal between fork and this assignment would orphan the worker
                worker = start_process([sys.executable, "-m", "leadflow", "worker"], log_path=worker_log, env=env)
                PidFile(workdir / "worker.pid").write(worker.pid)
                _say(f"starting a worker (pid {worker.pid}, log: {worker_log})…")
            api_url = f"http://127.0.0.1:{port}"
            _wait_ready(api_url, worker_log, lambda: worker is not None and worker.poll() is None)
            _say(f"API: {api_url}/v1 (key {settings.api_key!r}), OpenAPI: {api_url}/openapi.json, "
                 f"metrics: {api_url}/metrics — Ctrl-C stops everything")
            _say(f"topics: {prefix}leads.inbound, {prefix}lead.events, … "
                 f"(`export LEADFLOW_TOPIC_PREFIX={prefix}` to use them from another shell)")
            _say(f"report, while this runs: {report_command(prefix, stack.kafka_url)}")
            time.sleep(1.0)

            def exited() -> int | None:
                return worker.poll() if worker is not None else None

            def restart(status: int) -> None:
                nonlocal worker
                with stop.deferred():
                    worker = start_process([sys.executable, "-m", "leadflow", "worker"], log_path=worker_log,
                                           env=env)
                    PidFile(workdir / "worker.pid").write(worker.pid)
                _say(f"the worker exited with status {status}: it was paused longer than its Kafka session and "
                     f"left without writing (its log: {worker_log}); started it again (pid {worker.pid}) on the "
                     "same data, it rejoins in a few seconds")

            try:
                asyncio.run(stop.run(supervised(run_demo(
                    api_url, stack.kafka_url, settings.api_key, settings.rep_secrets, settings.capacities,
                    leads=leads, rate=rate, receiver_port=receiver_port, events_topic=f"{prefix}lead.events",
                ), exited, restart)))
            except LeadflowError as exc:
                raise LeadflowError(f"{exc}; its log ends with:\n{tail(worker_log, 30)}") from None
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP outside the demo's event loop (StopRequested)
            if stop.received in (None, "Ctrl-C"):
                _print("")  # end the line the terminal's ^C is on
            stopped_by = stop.received or "Ctrl-C"
            _say(f"{stopped_by}: stopping…")
        except asyncio.CancelledError:  # SIGTERM/SIGHUP cancelled the demo's main task
            if stop.received is None:
                raise  # a cancellation no signal of ours asked for
            stopped_by = stop.received
            _say(f"{stop.received}: stopping…")
        finally:
            with stop.holding():
                _stop_all(stack, worker, workdir, was_running=was_running, keep_stack=keep_stack,
                          report=report_command(prefix, stack.kafka_url))
    return stop_exit_code(stopped_by)


def stop_exit_code(stopped_by: str | None) -> int:
    """0 when the demo ended by itself (``--leads``); 128 + the signal's number when a signal stopped
    it, after its cleanup, as the rest of the CLI does for Ctrl-C (130) and as shells report it."""
    if stopped_by is None:
        return 0
    number = signal.SIGINT if stopped_by == "Ctrl-C" else signal.Signals[stopped_by]
    return 128 + int(number)


def _stop_all(stack: StackConfig, worker: subprocess.Popen[bytes] | None, workdir: Path, *, was_running: bool,
              keep_stack: bool, report: str) -> None:
    if worker is not None:
        graceful = stop_process(worker, timeout=20)
        PidFile(workdir / "worker.pid").remove()
        _say(f"worker (pid {worker.pid}) stopped" + ("" if graceful else " (killed: it did not exit on SIGTERM)"))
    why_kept = stack_after_stop(was_running=was_running, keep_stack=keep_stack)
    if why_kept is None:
        stack_down(stack, progress=lambda line: _say(line))
        _say("the stack is stopped (`leadflow run --keep-stack` leaves it running for `leadflow report`)")
    else:
        _say(f"the stack keeps running ({why_kept}; `leadflow stack down` stops it); report: {report}")

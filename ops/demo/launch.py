"""``leadflow run``: the stack, a worker with the demo config, and the live demo; Ctrl-C stops it all."""
from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from leadflow.errors import LeadflowError
from ops.demo.run import CONFIG_PATH, load_demo_settings, run_demo
from ops.stack import StackConfig, stack_down, stack_status, stack_up
from ops.stack.process import start_process, stop_process, tail

__all__ = ["launch_demo"]

_READY_TIMEOUT_S = 120.0


def _say(message: str) -> None:
    print(f"leadflow: {message}", flush=True)


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


def launch_demo(*, leads: int | None, rate: float, port: int, receiver_port: int, keep_stack: bool) -> int:
    """Run the whole demo in the foreground; return the exit code."""
    stack = StackConfig.from_env()
    was_running = stack_status(stack).running
    _say("starting the local stack (Kafka in KRaft mode + Redis; the first run downloads Kafka)…")
    stack_up(stack, progress=lambda line: _say(line))
    run_id = time.strftime("demo%Y%m%d%H%M%S")
    workdir = stack.state_dir / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    config = _render_config(receiver_port, workdir / "config.yaml")
    settings = load_demo_settings(config)
    worker_log = workdir / "worker.log"
    # A fresh app id and topic prefix per run: the demo starts from an empty slate every time.
    env = {
        **os.environ,
        "LEADFLOW_BROKER": stack.kafka_url,
        "LEADFLOW_REDIS_URL": stack.redis_url,
        "LEADFLOW_CONFIG": str(config),
        "LEADFLOW_WEB_PORT": str(port),
        "LEADFLOW_DATA_DIR": str(workdir / run_id),
        "LEADFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
        "LEADFLOW_APP_ID": run_id,
        "LEADFLOW_TOPIC_PREFIX": f"{run_id}.",
        "LEADFLOW_PARTITIONS": "4",
    }
    _say(f"starting a worker (log: {worker_log})…")
    worker = start_process([sys.executable, "-m", "leadflow", "worker"], log_path=worker_log, env=env)
    api_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(api_url, worker_log, lambda: worker.poll() is None)
        _say(f"API: {api_url}/v1 (key {settings.api_key!r}), OpenAPI: {api_url}/openapi.json, "
             f"metrics: {api_url}/metrics — Ctrl-C stops everything")
        time.sleep(1.0)
        try:
            asyncio.run(run_demo(
                api_url, stack.kafka_url, settings.api_key, settings.rep_secrets, settings.capacities,
                leads=leads, rate=rate, receiver_port=receiver_port, events_topic=f"{run_id}.lead.events",
            ))
        except KeyboardInterrupt:
            print()
            _say("Ctrl-C: stopping…")
    finally:
        graceful = stop_process(worker, timeout=20)
        _say("worker stopped" + ("" if graceful else " (killed: it did not exit on SIGTERM)"))
        if not keep_stack and not was_running:
            stack_down(stack, progress=lambda line: _say(line))
        else:
            _say("the stack keeps running (`leadflow stack down` stops it)")
    return 0

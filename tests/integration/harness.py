"""Run real leadflow workers and a real webhook receiver for the integration tests."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer
from aiohttp import web
from standardwebhooks import Webhook

from ops.stack import StackConfig
from ops.stack.process import start_process, stop_process, tail

__all__ = ["API_KEY", "free_port", "LiveProcess", "LocalServer", "WorkerSpec", "Worker", "Receiver", "eventually", "post_lead", "get_lead", "lead_in", "read_json_topic"]

API_KEY = "it-secret-key-0123456789"
#: The Standard Webhooks secret the tests give their reps (a whsec_ key, 32 bytes base64).
SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WorkerSpec:
    """One logical deployment: workers sharing an app id (consumer group, topics, tables)."""

    stack: StackConfig
    tmp: Path
    config_yaml: str = ""
    app_id: str = field(default_factory=lambda: "it" + uuid.uuid4().hex[:10])
    partitions: int = 4

    def env(self, port: int, data_dir: Path) -> dict[str, str]:
        config = self.tmp / f"{self.app_id}.yaml"
        config.write_text(self.config_yaml)
        return {
            **os.environ,
            "LEADFLOW_BROKER": self.stack.kafka_url,
            "LEADFLOW_REDIS_URL": self.stack.redis_url,
            "LEADFLOW_CONFIG": str(config),
            "LEADFLOW_WEB_PORT": str(port),
            "LEADFLOW_DATA_DIR": str(data_dir),
            "LEADFLOW_API_KEYS": API_KEY,
            "LEADFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
            "LEADFLOW_APP_ID": self.app_id,
            "LEADFLOW_TOPIC_PREFIX": f"{self.app_id}.",
            "LEADFLOW_PARTITIONS": str(self.partitions),
            "LEADFLOW_STORE": "rocksdb",
            "LEADFLOW_WEBHOOK_TIMEOUT": "3",
            # Stopped at once on SIGTERM: no load balancer to drain, and every test stops workers.
            "LEADFLOW_SHUTDOWN_DELAY": "0",
        }


class Killable(Protocol):
    def kill(self) -> None: ...


#: The workers (and other processes a test started) not yet stopped, by pid: what
#: ``kill_live_workers`` ends when pytest itself is being terminated.
LIVE: dict[int, Killable] = {}


class LiveProcess:
    """A process a test started some other way (a launcher and the worker it started): SIGKILL by
    its own pid, and its process group when it leads one of its own (``start_new_session``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        LIVE[pid] = self

    def kill(self) -> None:
        try:
            if os.getpgid(self.pid) == self.pid and self.pid != os.getpgrp():
                os.killpg(self.pid, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        LIVE.pop(self.pid, None)

    def forget(self) -> None:
        LIVE.pop(self.pid, None)


def kill_live_workers() -> None:
    """SIGKILL every worker still running, by its own pid (pytest itself is being terminated)."""
    for worker in list(LIVE.values()):
        worker.kill()


class Worker:
    """A real ``leadflow worker`` process, stopped by its own pid."""

    def __init__(self, spec: WorkerSpec, *, port: int | None = None, data_dir: Path | None = None,
                 module: tuple[str, ...] = ("leadflow", "worker")) -> None:
        """``module``: what ``python -m`` runs (a test's own launcher of the worker, say)."""
        self.spec = spec
        self.port = port or free_port()
        self.data_dir = data_dir or spec.tmp / f"data-{self.port}"
        self.log_path = spec.tmp / f"worker-{self.port}.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start_process([sys.executable, "-m", *module], log_path=self.log_path,
                                  env=spec.env(self.port, self.data_dir), cwd=REPO)
        LIVE[self.proc.pid] = self

    def log(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    async def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    async with session.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)
        LIVE.pop(self.proc.pid, None)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        LIVE.pop(self.proc.pid, None)


@asynccontextmanager
async def ready_worker(spec: WorkerSpec) -> AsyncIterator[Worker]:
    """One worker of ``spec``, ready, stopped (by its pid) whatever the test does: a fixture's body."""
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        yield worker
    finally:
        worker.stop()


class LocalServer:
    """An aiohttp app on 127.0.0.1 and a free port: the base of the stand-ins the tests run."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.add_routes(app)
        # A stop cancels handlers still running after 1 s (aiohttp waits 60 s): a stand-in told to be
        # slow (a 20 s provider) made its test's teardown wait for the answer nobody reads.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Receiver(LocalServer):
    """An SDR's webhook endpoint: records every delivery and verifies it with ``standardwebhooks``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}
        self.deliveries: list[dict[str, Any]] = []

    def hook_url(self, rep_id: str) -> str:
        return f"{self.url}/hooks/{rep_id}"

    async def _handle(self, request: web.Request) -> web.Response:
        rep_id = request.match_info["rep_id"]
        body = await request.read()
        headers = dict(request.headers)
        verified = False
        secret = self.secrets.get(rep_id)
        if secret is not None:
            try:
                Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
                verified = True
            except Exception:
                verified = False
        payload = orjson.loads(body)
        self.deliveries.append({"rep_id": rep_id, "verified": verified, "headers": headers,
                                "body": body, "payload": payload})
        return web.Response(status=204 if verified else 401)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/hooks/{rep_id}", self._handle)

    def for_lead(self, lead_id: str) -> list[dict[str, Any]]:
        return [d for d in self.deliveries if d["payload"]["data"]["lead_id"] == lead_id]


async def eventually(check: Any, timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``check()`` (sync or async) until it returns a truthy value; fail with ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


async def post_lead(api: aiohttp.ClientSession, worker: Worker, email: str, **fields: Any) -> str:
    """POST one lead (an e-mail plus any other fields) and return its lead id; 202 is asserted."""
    async with api.post(f"{worker.url}/v1/leads", json={"email": email, **fields}) as r:
        assert r.status == 202, await r.text()
        return str((await r.json())["lead_id"])


async def get_lead(api: aiohttp.ClientSession, worker: Worker, lead_id: str) -> Any:
    """The lead's view from ``GET /v1/leads/{id}``, or ``None`` while it does not exist."""
    async with api.get(f"{worker.url}/v1/leads/{lead_id}") as r:
        return await r.json() if r.status == 200 else None


async def lead_in(api: aiohttp.ClientSession, worker: Worker, lead_id: str, routing: str) -> Any:
    """The lead's view once its routing status is ``routing`` (else ``None``: for ``eventually``)."""
    lead = await get_lead(api, worker, lead_id)
    return lead if lead is not None and lead["routing"] == routing else None


async def read_json_topic(stack: StackConfig, topic: str, *, idle_s: float = 2.0) -> list[Any]:
    """Every record of ``topic`` so far (JSON values), read until it stays quiet for ``idle_s``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                out += [orjson.loads(r.value) for r in records]
                quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return out


def reps_yaml(receiver: Receiver, rep_ids: Sequence[str], *, capacity: int) -> str:
    """The config lines of reps ``rep_ids`` (under a team's ``reps:``), whose webhooks are ``receiver``.

    Their secrets are given to ``receiver``, which verifies every delivery with them.
    """
    receiver.secrets.update({rep_id: SECRET for rep_id in rep_ids})
    return "\n".join(f'      - {{id: {rep_id}, capacity: {capacity}, webhook_url: "{receiver.url}/hooks/{rep_id}", '
                     f'webhook_secret: "{SECRET}"}}' for rep_id in rep_ids)


def one_rep_config(receiver: Receiver, *, capacity: int) -> str:
    """A config with one team, ``sdr``, and its one rep, ``ana``, whose webhook is ``receiver``."""
    return f"""
routing: {{default_team: sdr}}
teams:
  - id: sdr
    reps:
{reps_yaml(receiver, ["ana"], capacity=capacity)}
"""

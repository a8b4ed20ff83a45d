"""Compose the demo: receiver, live view, disposer and feed, started together, stopped cleanly.

``leadflow run`` starts the stack and a worker, then awaits ``run_demo``; cancelling it (Ctrl-C)
stops every piece in reverse order and closes the HTTP session.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import yaml

from ops.demo.disposer import DemoDisposer
from ops.demo.feed import DemoFeed
from ops.demo.receiver import DemoReceiver
from ops.demo.stats import DemoStats
from ops.demo.view import LiveView

__all__ = ["CONFIG_PATH", "DemoSettings", "load_demo_settings", "run_demo"]

#: The demo's config (teams, reps, demo-only secrets), shipped as package data.
CONFIG_PATH = Path(__file__).with_name("config.yaml")


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What the demo pieces need from the demo config."""

    api_key: str
    rep_secrets: dict[str, str]
    capacities: dict[str, int]


def load_demo_settings(path: Path = CONFIG_PATH) -> DemoSettings:
    """Read the feed's API key and each rep's webhook secret and capacity from the demo config."""
    document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        api_key = next(k["key"] for k in document["api_keys"] if k.get("name") == "demo-feed")
        reps = [rep for team in document["teams"] for rep in team["reps"]]
        secrets = {str(rep["id"]): str(rep["webhook_secret"]) for rep in reps}
        capacities = {str(rep["id"]): int(rep["capacity"]) for rep in reps}
    except (KeyError, TypeError, StopIteration) as exc:
        raise ValueError(f"{path}: not a demo config ({type(exc).__name__}: {exc})") from None
    return DemoSettings(api_key=str(api_key), rep_secrets=secrets, capacities=capacities)


async def run_demo(
    api_url: str,
    broker: str,
    api_key: str,
    rep_secrets: Mapping[str, str],
    capacities: Mapping[str, int],
    *,
    leads: int | None = None,
    rate: float = 2.0,
    receiver_port: int = 8090,
    seed: int = 7,
    fail_rate: float = 0.0,
    out: TextIO | None = None,
    settle_timeout_s: float = 30.0,
    events_topic: str = "leadflow.lead.events",
) -> DemoStats:
    """Run the demo until cancelled, or until ``leads`` are sent and routed; return the final stats.

    ``api_url`` is the worker's HTTP API (``http://127.0.0.1:6066``); ``broker`` is
    ``kafka://host:port``. The receiver listens on ``receiver_port``, which must match the
    ``webhook_url`` of the reps in the worker's config.
    """
    view = LiveView(broker, capacities, topic=events_topic, out=out)
    receiver = DemoReceiver(rep_secrets, port=receiver_port, fail_rate=fail_rate, seed=seed)
    stops: list[Callable[[], Awaitable[None]]] = []
    # One session for every outbound call of the demo; connections are reused across leads.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        disposer = DemoDisposer(api_url, api_key, session=session, seed=seed, on_result=view.on_disposition)
        feed = DemoFeed(api_url, api_key, count=leads, rate=rate, seed=seed, session=session,
                        on_result=view.on_feed_result)
        receiver.subscribe(view.on_delivery)
        receiver.subscribe(disposer.on_delivery)
        try:
            # Receiver first: a busy port fails before anything draws on the terminal.
            await receiver.start()
            stops.append(receiver.stop)
            await view.start()
            stops.append(view.stop)
            await disposer.start()
            stops.append(disposer.stop)
            await feed.run()
            await _settle(view.stats, settle_timeout_s)
        finally:
            # Reverse order; the view draws its final frame on the way out.
            for stop in reversed(stops):
                await stop()
    return view.stats


def _settled(stats: DemoStats) -> bool:
    c = stats.counts
    cycles = c["captured"] + c["reopened"]
    return c["assigned"] >= cycles and c["notified"] + c["notification_failed"] >= c["assigned"]


async def _settle(stats: DemoStats, timeout_s: float) -> None:
    """After the last lead, give the engine time to route and notify everything the view saw."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    await asyncio.sleep(1.0)  # the last lead's events are still on their way through Kafka
    while not _settled(stats) and loop.time() < deadline:
        await asyncio.sleep(0.25)

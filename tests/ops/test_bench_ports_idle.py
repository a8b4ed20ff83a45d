"""The bench on a shared machine: a busy port is one line naming it and the option that moves it,
not a bind traceback; and the idle workers' CPU and memory land in the JSON, not only on the console
(audit s18-docs 6 and 8)."""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from ops.bench.cli import build_parser
from ops.bench.harness import Tracker, require_free_port, start_receiver
from ops.bench.results import Resources, RunResult, validate
from ops.bench.restart import run_restart
from ops.bench.runner import LoadOptions, _idle_cpu, run_load


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on, on 127.0.0.1 as the bench's receiver and the workers' API do."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as owner:
        owner.bind(("127.0.0.1", 0))
        owner.listen()
        yield owner.getsockname()[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_busy_receiver_port_names_the_port_and_the_option(busy_port: int) -> None:
    receiver = start_receiver({"ana": "whsec_" + "A" * 32}, Tracker(), busy_port)
    with pytest.raises(RuntimeError) as caught:
        await receiver.start()
    message = str(caught.value)
    assert f"port {busy_port} is in use" in message and "--receiver-port" in message
    assert "\n" not in message


async def test_a_free_receiver_port_starts() -> None:
    receiver = start_receiver({"ana": "whsec_" + "A" * 32}, Tracker(), _free_port())
    await receiver.start()
    await receiver.stop()


def test_a_busy_worker_port_names_the_port_and_the_option(busy_port: int) -> None:
    with pytest.raises(RuntimeError, match=rf"^port {busy_port} is in use .*: pass --port with a free port$"):
        require_free_port(busy_port, "--port")
    require_free_port(_free_port(), "--port")  # a free one passes


async def test_the_idle_figures_are_returned_and_written_to_the_json() -> None:
    said: list[str] = []
    # This test's own process stands in for a worker: the sampler only needs a pid.
    deployment: Any = SimpleNamespace(workers=[SimpleNamespace(pid=os.getpid())])
    idle = await _idle_cpu(deployment, said.append, seconds=1.2, settle_s=0.0)
    assert isinstance(idle, Resources)
    assert idle.samples >= 1 and idle.rss_max_mb is not None and idle.rss_max_mb > 1
    assert any(line.startswith("idle: worker cpu") for line in said)

    run = RunResult(started_at="2026-01-01T00:00:00+00:00", machine={}, settings={}, passthrough=None, steps=[],
                    max_sustained=0.0, ratio_to_passthrough=None, idle={"w1": idle})
    document = orjson.loads(orjson.dumps(run.to_dict()))
    assert validate(document) == []
    assert document["idle"]["w1"]["rss_max_mb"] == pytest.approx(idle.rss_max_mb)
    assert document["idle"]["w1"]["cpu_mean_pct"] == pytest.approx(idle.cpu_mean_pct)


def test_feed_help_states_its_default() -> None:
    parser = build_parser()
    load = parser._subparsers._group_actions[0].choices["load"]  # type: ignore[union-attr]
    feed = next(a for a in load._actions if "--feed" in a.option_strings)
    assert "(default http)" in (feed.help or "")
    assert load.get_default("max_leads") == 3000  # what PERFORMANCE.md and README say the default is


def _load_options(tmp_path: Any, port: int, receiver_port: int) -> LoadOptions:
    return LoadOptions(rates=["max"], feeds=["http"], workers=[1, 2], duration_s=1.0, max_leads=10, batch=10,
                       teams=1, reps=1, capacity=1, partitions=1, passthrough_records=0, profile=False,
                       dispose=False, drain_timeout_s=1.0, port=port, receiver_port=receiver_port, out=tmp_path,
                       keep_stack=False, worker_env={})


async def test_a_busy_port_of_a_later_worker_count_stops_the_load_run_before_anything_starts(
        busy_port: int, tmp_path: Any) -> None:
    # Review s18-c: the second worker count's port was found busy only after the first count had run,
    # and that run wrote no JSON. Now before the stack starts (nothing said, nothing written).
    said: list[str] = []
    with pytest.raises(RuntimeError, match=rf"^port {busy_port} is in use .*--port"):
        await run_load(_load_options(tmp_path, busy_port - 1, _free_port()), said.append)
    assert said == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match=rf"^port {busy_port} is in use .*--receiver-port"):
        await run_load(_load_options(tmp_path, _free_port(), busy_port), said.append)


async def test_a_busy_port_stops_the_restart_run_before_anything_starts(busy_port: int, tmp_path: Any) -> None:
    said: list[str] = []
    with pytest.raises(RuntimeError, match=rf"^port {busy_port} is in use .*--port"):
        await run_restart(leads=10, kills=1, partitions=1, port=busy_port, out=tmp_path / "out", keep_stack=False,
                          say=said.append, receiver_port=_free_port())
    with pytest.raises(RuntimeError, match=rf"^port {busy_port} is in use .*--receiver-port"):
        await run_restart(leads=10, kills=1, partitions=1, port=_free_port(), out=tmp_path / "out", keep_stack=False,
                          say=said.append, receiver_port=busy_port)
    assert said == [] and not (tmp_path / "out").exists()

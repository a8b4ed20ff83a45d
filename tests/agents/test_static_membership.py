"""``LEADFLOW_INSTANCE_ID`` parsing and the takeover rule of ``streams/membership.py``."""
from __future__ import annotations

import socket

import pytest

from leadflow.errors import ConfigError
from streams.membership import TakeoverWatch
from streams.settings import Settings


def test_on_by_default_unique_per_port_and_web_host_and_stable() -> None:
    host = socket.gethostname()
    one = Settings.from_env({"LEADFLOW_WEB_PORT": "6066"}).instance_id
    assert one == f"{host}-127.0.0.1-6066" == Settings.from_env({"LEADFLOW_WEB_PORT": "6066"}).instance_id
    assert Settings.from_env({"LEADFLOW_WEB_PORT": "6067"}).instance_id == f"{host}-127.0.0.1-6067"
    assert Settings.from_env({"LEADFLOW_WEB_HOST": "worker-1"}).instance_id == f"{host}-worker-1-6066"
    assert Settings.from_env({"LEADFLOW_INSTANCE_ID": ""}).instance_id == one
    assert Settings.from_env({"LEADFLOW_INSTANCE_ID": "auto"}).instance_id == one


@pytest.mark.parametrize(("raw", "expected"), [
    ("none", None), ("None", None), (" worker-1 ", "worker-1"), ("pod.leadflow-0_a", "pod.leadflow-0_a"),
    ("x" * 249, "x" * 249),
])
def test_explicit_ids_and_the_opt_out(raw: str, expected: str | None) -> None:
    assert Settings.from_env({"LEADFLOW_INSTANCE_ID": raw}).instance_id == expected


def test_host_characters_kafka_refuses_are_replaced() -> None:
    assert Settings.from_env({"LEADFLOW_INSTANCE_ID": "AUTO", "LEADFLOW_WEB_HOST": "::1"}).instance_id.endswith("-__1-6066")  # type: ignore[union-attr]


@pytest.mark.parametrize("raw", ["worker 1", "w:1", ".", "..", "x" * 250, "ünï"])
def test_ids_kafka_would_refuse_are_config_errors(raw: str) -> None:
    with pytest.raises(ConfigError, match="LEADFLOW_INSTANCE_ID"):
        Settings.from_env({"LEADFLOW_INSTANCE_ID": raw})


def test_fausts_own_variable_is_refused_because_it_would_override_the_setting() -> None:
    with pytest.raises(ConfigError, match="CONSUMER_GROUP_INSTANCE_ID"):
        Settings.from_env({"CONSUMER_GROUP_INSTANCE_ID": "w1"})


def test_rebalances_and_resets_are_not_takeovers() -> None:
    watch = TakeoverWatch()
    assert watch.observe("w-a", 1, 0.0) == 0
    assert watch.observe("w-a", 1, 1.0) == 0      # nothing changed
    assert watch.observe("", -1, 2.0) == 0        # reset before a rejoin
    assert watch.observe("w-b", 2, 3.0) == 0      # new member id with a new generation: a rebalance
    assert watch.observe("w-b", 3, 4.0) == 0      # same member, next generation


def test_a_new_member_id_in_the_same_generation_is_a_takeover_and_two_in_the_window_stop() -> None:
    watch = TakeoverWatch(limit=2, window_s=300.0)
    watch.observe("w-a", 5, 0.0)
    assert watch.observe("w-b", 5, 10.0) == 1
    assert watch.observe("w-b", 5, 11.0) == 0     # settled again
    assert watch.observe("w-c", 5, 20.0) == 2
    late = TakeoverWatch(limit=2, window_s=300.0)
    late.observe("w-a", 5, 0.0)
    late.observe("w-b", 5, 10.0)
    assert late.observe("w-c", 5, 400.0) == 1     # the first one has left the window

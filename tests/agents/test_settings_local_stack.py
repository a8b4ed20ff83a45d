"""Without ``LEADFLOW_BROKER`` / ``LEADFLOW_REDIS_URL`` a worker finds the local stack where
``leadflow stack up`` put it (``LEADFLOW_KAFKA_PORT`` / ``LEADFLOW_REDIS_PORT``), as ``leadflow run``,
``bench`` and ``report`` do, instead of joining whatever Kafka answers on 9092 (audit s18-docs 3)."""
from __future__ import annotations

import pytest

from leadflow.errors import ConfigError
from ops.stack.config import StackConfig
from streams.settings import Settings


def test_the_defaults_follow_the_stack_ports() -> None:
    env = {"LEADFLOW_KAFKA_PORT": "25092", "LEADFLOW_REDIS_PORT": "25079"}
    settings = Settings.from_env(env)
    assert settings.broker == "kafka://127.0.0.1:25092"
    assert settings.redis_url == "redis://127.0.0.1:25079/0"
    # The same URLs `leadflow stack up` prints and the bench and report use: one place computes them.
    stack = StackConfig.from_env(env)
    assert (settings.broker, settings.redis_url) == (stack.kafka_url, stack.redis_url)


def test_without_any_variable_the_documented_defaults_hold() -> None:
    settings = Settings.from_env({})
    assert (settings.broker, settings.redis_url) == ("kafka://127.0.0.1:9092", "redis://127.0.0.1:6379/0")


@pytest.mark.parametrize("explicit", [
    {"LEADFLOW_BROKER": "kafka://k1:9092;k2:9092"},
    {"LEADFLOW_REDIS_URL": "redis://cache:6380/2"},
    {"LEADFLOW_BROKER": "kafka://k1:9092", "LEADFLOW_REDIS_URL": "redis://cache:6380/2"},
])
def test_an_explicit_setting_wins_over_the_stack_ports(explicit: dict[str, str]) -> None:
    settings = Settings.from_env({"LEADFLOW_KAFKA_PORT": "25092", "LEADFLOW_REDIS_PORT": "25079", **explicit})
    assert settings.broker == explicit.get("LEADFLOW_BROKER", "kafka://127.0.0.1:25092")
    assert settings.redis_url == explicit.get("LEADFLOW_REDIS_URL", "redis://127.0.0.1:25079/0")


@pytest.mark.parametrize(("env", "says"), [
    ({"LEADFLOW_KAFKA_PORT": "kafka"}, "LEADFLOW_KAFKA_PORT='kafka' is not a port"),
    ({"LEADFLOW_REDIS_PORT": "70000"}, "redis_port=70000 is not a TCP port"),
])
def test_a_bad_stack_port_is_refused_naming_its_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert "environment variable LEADFLOW_KAFKA_PORT or LEADFLOW_REDIS_PORT" in str(caught.value)
    assert says in str(caught.value)


def test_both_urls_given_the_stack_ports_are_not_read() -> None:
    settings = Settings.from_env({"LEADFLOW_KAFKA_PORT": "kafka", "LEADFLOW_BROKER": "kafka://k1:9092",
                                  "LEADFLOW_REDIS_URL": "redis://cache:6380/2"})
    assert settings.broker == "kafka://k1:9092"

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
    ({"LEADFLOW_KAFKA_PORT": "kafka"}, "LEADFLOW_KAFKA_PORT='kafka' (the local stack's port, read while "
                                       "LEADFLOW_BROKER is unset) is not a TCP port"),
    ({"LEADFLOW_REDIS_PORT": "70000"}, "LEADFLOW_REDIS_PORT='70000' (the local stack's port, read while "
                                       "LEADFLOW_REDIS_URL is unset) is not a TCP port"),
])
def test_a_bad_stack_port_is_refused_naming_its_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert f"environment variable {says}" in str(caught.value)


# Kubernetes injects <SERVICE>_PORT=tcp://<ip>:<port> for every Service in the namespace: a Service named
# leadflow-kafka (`helm install leadflow bitnami/kafka`) sets LEADFLOW_KAFKA_PORT (review s18-a, finding 3).
K8S = {"LEADFLOW_KAFKA_PORT": "tcp://10.96.12.7:9092", "LEADFLOW_REDIS_PORT": "tcp://10.96.3.9:6379"}


@pytest.mark.parametrize("env", [
    {"LEADFLOW_BROKER": "kafka://leadflow-kafka:9092", "LEADFLOW_KAFKA_PORT": K8S["LEADFLOW_KAFKA_PORT"],
     "LEADFLOW_REDIS_PORT": "25079"},
    {"LEADFLOW_REDIS_URL": "redis://leadflow-redis:6379/0", "LEADFLOW_REDIS_PORT": K8S["LEADFLOW_REDIS_PORT"],
     "LEADFLOW_KAFKA_PORT": "25092"},
    {"LEADFLOW_BROKER": "kafka://k:9092", "LEADFLOW_REDIS_PORT": "9093"},  # was: "the ports must all differ"
    {"LEADFLOW_BROKER": "kafka://k:9092", "LEADFLOW_REDIS_URL": "redis://r:6379/0", **K8S},
])
def test_a_set_url_wins_whatever_its_port_variable_holds(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert settings.broker == env.get("LEADFLOW_BROKER", f"kafka://127.0.0.1:{env.get('LEADFLOW_KAFKA_PORT')}")
    assert settings.redis_url == env.get("LEADFLOW_REDIS_URL", f"redis://127.0.0.1:{env.get('LEADFLOW_REDIS_PORT')}/0")


@pytest.mark.parametrize(("port_variable", "url_variable"), [
    ("LEADFLOW_KAFKA_PORT", "LEADFLOW_BROKER"), ("LEADFLOW_REDIS_PORT", "LEADFLOW_REDIS_URL")])
def test_a_kubernetes_service_variable_read_for_a_default_is_refused_saying_so(
        port_variable: str, url_variable: str) -> None:
    other = "LEADFLOW_REDIS_URL" if url_variable == "LEADFLOW_BROKER" else "LEADFLOW_BROKER"
    env = {port_variable: K8S[port_variable], other: "kafka://k:9092" if other == "LEADFLOW_BROKER" else "redis://r/0"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert f"{port_variable}={K8S[port_variable]!r} looks like a Kubernetes service variable" in message
    assert f"set {url_variable}" in message


def test_both_urls_given_the_stack_ports_are_not_read() -> None:
    settings = Settings.from_env({"LEADFLOW_KAFKA_PORT": "kafka", "LEADFLOW_BROKER": "kafka://k1:9092",
                                  "LEADFLOW_REDIS_URL": "redis://cache:6380/2"})
    assert settings.broker == "kafka://k1:9092"


def test_a_kubernetes_service_variable_in_the_web_port_says_so() -> None:
    # Review s18-d: a Service named leadflow-web gives every pod LEADFLOW_WEB_PORT=tcp://…, and the
    # worker stopped with "expected an integer", saying nothing of why.
    env = {"LEADFLOW_BROKER": "kafka://k:9092", "LEADFLOW_REDIS_URL": "redis://r/0",
           "LEADFLOW_WEB_PORT": "tcp://10.0.0.7:8080"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert "LEADFLOW_WEB_PORT='tcp://10.0.0.7:8080' looks like a Kubernetes service variable" in message
    assert "a Service named leadflow-web" in message

"""Settings are validated when they are read: every bad value names its variable, all at once, and
``leadflow worker --check-config`` refuses them as the worker's start does (exit 2, one line each)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.errors import ConfigError
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "value", "says"), [
    # A timeout the webhook sender refuses: every webhook was dropped at runtime (audit item 1).
    ("LEADFLOW_WEBHOOK_TIMEOUT", "-1", "positive number of seconds"),
    ("LEADFLOW_WEBHOOK_TIMEOUT", "0", "positive number of seconds"),
    ("LEADFLOW_WEBHOOK_TIMEOUT", "nan", "positive number of seconds"),
    ("LEADFLOW_WEBHOOK_TIMEOUT", "inf", "positive number of seconds"),
    ("LEADFLOW_WEBHOOK_TIMEOUT", "ten", "positive number of seconds"),
    # Faust died on these with a 55-line ImproperlyConfigured traceback.
    ("LEADFLOW_WEB_PORT", "70000", "from 1 to 65535"),
    ("LEADFLOW_WEB_PORT", "0", "from 1 to 65535"),
    ("LEADFLOW_PARTITIONS", "0", "from 1 to"),
    ("LEADFLOW_REPLICATION", "-1", "from 1 to"),
    ("LEADFLOW_STANDBY_REPLICAS", "-1", "from 0 to"),
    ("LEADFLOW_STATE_CACHE_MB", "-5", "from 0 to"),
    ("LEADFLOW_PRODUCER_LINGER_MS", "-1", "from 0 to"),
    ("LEADFLOW_WEBHOOK_BREAKER_THRESHOLD", "0", "at least 1"),
    ("LEADFLOW_WEBHOOK_BREAKER_COOLDOWN", "-3", "expected one delay"),
    ("LEADFLOW_MAX_BATCH", "0", "at least 1"),
    ("LEADFLOW_LEAD_ID_KEY", "short-key", "at least 32 printable ASCII characters"),
    ("LEADFLOW_LEAD_ID_KEY", "k" * 31 + "\u00e9", "at least 32 printable ASCII characters"),
    # Kafka's topic-name rule: InvalidTopicError tracebacks of 119-175 lines at start.
    ("LEADFLOW_TOPIC_PREFIX", "bad prefix/", "letters, digits"),
    ("LEADFLOW_APP_ID", "bad id!", "letters, digits"),
    ("LEADFLOW_APP_ID", "a" * 181, "letters, digits"),
    # URLs: a ValueError deep in redis, a traceback through aiokafka.
    ("LEADFLOW_REDIS_URL", "garbage", "expected redis://"),
    ("LEADFLOW_REDIS_URL", "redis://127.0.0.1:notaport/0", "expected redis://"),
    ("LEADFLOW_REDIS_URL", "redis://127.0.0.1:6379/zero", "database"),
    ("LEADFLOW_BROKER", "http://127.0.0.1:9092", "use kafka://"),
    ("LEADFLOW_BROKER", "kafka://127.0.0.1:99999", "port '99999'"),
    ("LEADFLOW_BROKER", "kafka://bad host:9092", "not a host name"),
    # The drain after SIGTERM: negative, not a number, or longer than a grace period allows.
    ("LEADFLOW_SHUTDOWN_DELAY", "-1", "from 0 to 120"),
    ("LEADFLOW_SHUTDOWN_DELAY", "nan", "from 0 to 120"),
    ("LEADFLOW_SHUTDOWN_DELAY", "5m", "from 0 to 120"),
    ("LEADFLOW_SHUTDOWN_DELAY", "600", "from 0 to 120"),
])
def test_a_bad_value_is_refused_naming_its_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert f"environment variable {name}" in str(caught.value)
    assert says in str(caught.value)


@pytest.mark.parametrize(("name", "value"), [
    ("LEADFLOW_WEBHOOK_TIMEOUT", "2.5"), ("LEADFLOW_WEB_PORT", "65535"), ("LEADFLOW_TOPIC_PREFIX", ""),
    ("LEADFLOW_TOPIC_PREFIX", "prod.eu-1_"), ("LEADFLOW_BROKER", "kafka://k1:9092;k2:9093"),
    ("LEADFLOW_BROKER", "k1:9092,kafka://[::1]:9092"), ("LEADFLOW_BROKER", "garbage"),  # a host name: reached or not at start
    ("LEADFLOW_REDIS_URL", "rediss://:pw@cache.example:6380/2"), ("LEADFLOW_REDIS_URL", "unix:///run/redis.sock"),
    ("LEADFLOW_SHUTDOWN_DELAY", "0"), ("LEADFLOW_SHUTDOWN_DELAY", "2.5"), ("LEADFLOW_SHUTDOWN_DELAY", "10s"),
])
def test_good_values_pass(name: str, value: str) -> None:
    Settings.from_env({name: value})


def test_every_bad_value_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"LEADFLOW_WEBHOOK_TIMEOUT": "-1", "LEADFLOW_WEB_PORT": "70000", "LEADFLOW_APP_ID": "x y"})
    text = str(caught.value)
    assert text.startswith("invalid settings:\n")
    assert [line.split("=")[0].strip() for line in text.splitlines()[1:]] == [
        "environment variable LEADFLOW_WEB_PORT", "environment variable LEADFLOW_APP_ID",
        "environment variable LEADFLOW_WEBHOOK_TIMEOUT"]


def test_a_redis_password_is_not_repeated() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"LEADFLOW_REDIS_URL": "http://:hunter2hunter2@cache:6379/0"})
    assert "hunter2" not in str(caught.value)


def _worker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    return subprocess.run([sys.executable, "-m", "leadflow", "worker", *args], env={**keep, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
def test_the_worker_and_check_config_refuse_them_in_one_line_each(check: bool) -> None:
    done = _worker(*(["--check-config"] if check else []), env={"LEADFLOW_WEBHOOK_TIMEOUT": "-1",
                                                                 "LEADFLOW_WEB_PORT": "70000"})
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("leadflow: invalid settings:\n"
                           "  environment variable LEADFLOW_WEB_PORT='70000': must be from 1 to 65535\n"
                           "  environment variable LEADFLOW_WEBHOOK_TIMEOUT='-1': expected a positive number of "
                           "seconds such as 10 or 2.5\n")


def test_the_lead_id_key_is_read_and_never_shown() -> None:
    key = "0123456789abcdef" * 4
    settings = Settings.from_env({"LEADFLOW_LEAD_ID_KEY": key})
    assert settings.lead_id_key == key and key not in repr(settings)
    assert Settings.from_env({}).lead_id_key is None
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"LEADFLOW_LEAD_ID_KEY": "too-short-secret"})
    assert "too-short-secret" not in str(refused.value)


def test_the_shutdown_delay_defaults_to_a_few_seconds_and_is_read() -> None:
    assert Settings.from_env({}).shutdown_delay_s == 5.0
    assert Settings.from_env({"LEADFLOW_SHUTDOWN_DELAY": "0"}).shutdown_delay_s == 0.0
    assert Settings.from_env({"LEADFLOW_SHUTDOWN_DELAY": "10s"}).shutdown_delay_s == 10.0

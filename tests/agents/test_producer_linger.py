"""``LEADFLOW_PRODUCER_LINGER_MS``: the producer's linger, read and checked like every setting."""
from __future__ import annotations

import pytest

from leadflow.errors import ConfigError
from streams.app import app
from streams.settings import Settings


def test_linger_defaults_to_none_and_reaches_the_producer() -> None:
    assert Settings.from_env({}).producer_linger_ms == 0
    assert app.conf.producer_linger == app.runtime.settings.producer_linger_ms / 1000


def test_linger_can_be_set() -> None:
    assert Settings.from_env({"LEADFLOW_PRODUCER_LINGER_MS": "5"}).producer_linger_ms == 5
    assert Settings.from_env({"LEADFLOW_PRODUCER_LINGER_MS": "20"}).producer_linger_ms == 20


@pytest.mark.parametrize("raw", ["-1", "5ms", "0.5"])
def test_a_bad_linger_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="LEADFLOW_PRODUCER_LINGER_MS"):
        Settings.from_env({"LEADFLOW_PRODUCER_LINGER_MS": raw})

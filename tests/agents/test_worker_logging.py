"""The worker's logging setup leaves aiokafka's and Faust's loggers at the configured level.

Faust's own worker sets the root logger to DEBUG for its terminal spinner at warning level and
above, so every ``log.debug`` in aiokafka and Faust built a record that the handler dropped.
Each case runs in a fresh interpreter: the setup reconfigures the process's root logger.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import io, json, logging, sys
import faust.worker
from streams.app import app
worker_class = faust.worker.Worker if sys.argv[2] == "faust" else app.conf.Worker
worker = worker_class(app, loglevel=sys.argv[1], stdout=io.StringIO(), stderr=io.StringIO(),
                      redirect_stdouts=False)
worker._setup_logging()
print(json.dumps({name: [logging.getLogger(name).isEnabledFor(level)
                         for level in (logging.DEBUG, logging.INFO, logging.WARNING)]
                  for name in ("aiokafka", "aiokafka.producer.sender", "faust", "faust.transport", "streams")}))
"""


def _enabled(level: str, worker: str = "leadflow") -> dict[str, list[bool]]:
    env = {**os.environ, "LEADFLOW_STORE": "memory", "LEADFLOW_INSTANCE_ID": "none"}
    done = subprocess.run([sys.executable, "-c", _PROBE, level, worker], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, list[bool]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(("level", "expected"), [
    ("warning", [False, False, True]),
    ("error", [False, False, False]),
    ("info", [False, True, True]),
    ("debug", [True, True, True]),
])
def test_libraries_log_at_the_configured_level(level: str, expected: list[bool]) -> None:
    enabled = _enabled(level)
    assert enabled == {name: expected for name in enabled}, enabled


def test_faust_own_worker_is_why_this_class_exists() -> None:
    # If this starts failing, Faust stopped lowering the root logger and LeadflowWorker can go.
    assert _enabled("warning", worker="faust")["aiokafka"][0] is True

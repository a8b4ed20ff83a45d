"""aiokafka's repeated warnings and errors: one line per template and 10 s (streams/log_rate_limit.py)."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from streams import log_rate_limit, log_redaction
from streams.log_rate_limit import RepeatLimit

CONNECT = "Unable connect to node with id %s: %s"
METADATA = "Unable to update metadata from %s"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def logger(clock: _Clock) -> Iterator[tuple[logging.Logger, list[str]]]:
    """A logger with a RepeatLimit on it and the lines that come out of it, formatted."""
    logger = logging.getLogger("test.log_rate_limit")
    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname} {record.getMessage()}")

    handler, limit = Lines(), RepeatLimit(10.0, clock=clock)
    logger.addHandler(handler)
    logger.addFilter(limit)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, lines
    logger.removeHandler(handler)
    logger.removeFilter(limit)
    logger.propagate = True


def test_ten_thousand_identical_errors_make_a_handful_of_lines_with_the_count(
    logger: tuple[logging.Logger, list[str]], clock: _Clock
) -> None:
    log, lines = logger
    for i in range(10_000):  # 30 s at ~333 a second, as a loop without a backoff logs
        clock.now = 1000.0 + i * 0.003
        log.error(METADATA, [1])
    assert lines == [
        "ERROR Unable to update metadata from [1]",
        "ERROR Unable to update metadata from [1] (and 3,333 more like it in the last 10 s)",
        "ERROR Unable to update metadata from [1] (and 3,333 more like it in the last 10 s)",
    ]


def test_templates_and_levels_are_not_merged_and_each_keeps_its_arguments(
    logger: tuple[logging.Logger, list[str]], clock: _Clock
) -> None:
    log, lines = logger
    for _ in range(3):
        log.error(METADATA, [1])
        log.error(CONNECT, 1, "[Errno 111] Connect call failed")
        log.warning(METADATA, [1])
    log.error(CONNECT, 2, "timeout")  # other arguments, the same template: held back, counted
    clock.now += 10
    log.error(CONNECT, 3, "refused")
    assert lines == [
        "ERROR Unable to update metadata from [1]",
        "ERROR Unable connect to node with id 1: [Errno 111] Connect call failed",
        "WARNING Unable to update metadata from [1]",
        "ERROR Unable connect to node with id 3: refused (and 3 more like it in the last 10 s)",
    ]


def test_debug_and_info_lines_all_pass(logger: tuple[logging.Logger, list[str]]) -> None:
    log, lines = logger
    for _ in range(50):
        log.debug("Sending request %s", "MetadataRequest")
        log.info("Discovered coordinator %s for group %s", 1, "leadflow")
    assert len(lines) == 100


def test_a_quiet_template_is_logged_again_without_a_count(
    logger: tuple[logging.Logger, list[str]], clock: _Clock
) -> None:
    log, lines = logger
    log.error(METADATA, [1])
    clock.now += 30
    log.error(METADATA, [1])
    assert lines == ["ERROR Unable to update metadata from [1]"] * 2


def test_installed_once_on_aiokafkas_loggers_after_the_redaction() -> None:
    log_redaction.install()
    log_redaction.install()
    for name in log_rate_limit.LOGGERS:
        limits = [f for f in logging.getLogger(name).filters if isinstance(f, RepeatLimit)]
        assert len(limits) == 1, name
    for name in ("aiokafka.conn", "aiokafka.producer.producer"):  # redaction matches unchanged templates
        filters = logging.getLogger(name).filters
        assert isinstance(filters[-1], RepeatLimit) and not isinstance(filters[0], RepeatLimit)

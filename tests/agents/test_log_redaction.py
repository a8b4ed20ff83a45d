"""The libraries' debug lines that carry message contents are redacted; nothing else changes."""
from __future__ import annotations

import logging

import pytest

from streams import log_redaction


class _ProduceRequest_v7:
    def __repr__(self) -> str:
        return "ProduceRequest_v7(messages=b'zelda@northwind.example')"


@pytest.fixture(autouse=True)
def _installed() -> None:
    log_redaction.install()
    log_redaction.install()  # twice: one filter per logger


def _line(caplog: pytest.LogCaptureFixture, logger: str, msg: str, *args: object) -> str:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=logger):
        logging.getLogger(logger).debug(msg, *args)
    return caplog.records[-1].getMessage()


def test_produced_values_become_their_size_and_keys_stay(caplog: pytest.LogCaptureFixture) -> None:
    value = b'{"email": "zelda@northwind.example", "phone": "+34 612 345 678"}'
    for logger in ("faust.topics", "faust.transport.drivers.aiokafka"):
        line = _line(caplog, logger, "send: topic=%r k=%r v=%r timestamp=%r partition=%r",
                     "lf.leads.inbound", b"ld_1", value, None, 3)
        assert line == f"send: topic='lf.leads.inbound' k=b'ld_1' v='<{len(value)} bytes redacted>' " \
                       "timestamp=None partition=3"
    line = _line(caplog, "aiokafka.producer.producer", "Sending (key=%s value=%s) to %s", b"ld_1", value, "tp")
    assert line == f"Sending (key=b'ld_1' value=<{len(value)} bytes redacted>) to tp"


def test_protocol_messages_become_their_type(caplog: pytest.LogCaptureFixture) -> None:
    line = _line(caplog, "aiokafka.conn", "Request to %s:%d %d: %s", "127.0.0.1", 9092, 7, _ProduceRequest_v7())
    assert line == "Request to 127.0.0.1:9092 7: <_ProduceRequest_v7 redacted>"
    assert "zelda" not in _line(caplog, "aiokafka.conn", "Response from %s:%d %d: %s", "h", 1, 8, _ProduceRequest_v7())


def test_other_lines_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    assert _line(caplog, "aiokafka.conn", "Closing connection at %s:%s (%s, %s)", "h", 1, None, None) == \
        "Closing connection at h:1 (None, None)"
    assert _line(caplog, "streams.agents.lead", "lead %s captured", "ld_1") == "lead ld_1 captured"

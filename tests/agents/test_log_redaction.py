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


LEAD_ID = "ld_0123456789abcdef01234567"


def test_produced_values_become_their_size_and_lead_ids_stay(caplog: pytest.LogCaptureFixture) -> None:
    value = b'{"email": "zelda@northwind.example", "phone": "+34 612 345 678"}'
    key = LEAD_ID.encode()
    for logger in ("faust.topics", "faust.transport.drivers.aiokafka"):
        line = _line(caplog, logger, "send: topic=%r k=%r v=%r timestamp=%r partition=%r",
                     "lf.leads.inbound", key, value, None, 3)
        assert line == f"send: topic='lf.leads.inbound' k=b'{LEAD_ID}' v='<{len(value)} bytes redacted>' " \
                       "timestamp=None partition=3"
    line = _line(caplog, "aiokafka.producer.producer", "Sending (key=%s value=%s) to %s", key, value, "tp")
    assert line == f"Sending (key=b'{LEAD_ID}' value=<{len(value)} bytes redacted>) to tp"


@pytest.mark.parametrize("key", [
    b"jane-doe-homepage.net",  # the account agent's key: a company's e-mail domain (a vanity one names a person)
    "jane-doe-homepage.net",
    b"zelda@northwind.example",  # a feed may key leads.inbound by anything
    b"ld_zelda@northwind.example",  # looks like a lead id at first, is not one
    b"\xff\xfe",
])
def test_keys_that_are_not_lead_ids_become_their_size(caplog: pytest.LogCaptureFixture, key: bytes | str) -> None:
    unit = "bytes" if isinstance(key, bytes) else "characters"
    for logger in ("faust.topics", "faust.transport.drivers.aiokafka"):
        line = _line(caplog, logger, "send: topic=%r k=%r v=%r timestamp=%r partition=%r",
                     "lf.account.commands", key, b"{}", None, 0)
        assert line == f"send: topic='lf.account.commands' k='<{len(key)} {unit} redacted>' v='<2 bytes redacted>' " \
                       "timestamp=None partition=0"
    line = _line(caplog, "aiokafka.producer.producer", "Sending (key=%s value=%s) to %s", key, b"{}", "tp")
    assert line == f"Sending (key=<{len(key)} {unit} redacted> value=<2 bytes redacted>) to tp"
    assert line.count("redacted") == 2


def test_a_missing_key_stays_none(caplog: pytest.LogCaptureFixture) -> None:
    line = _line(caplog, "aiokafka.producer.producer", "Sending (key=%s value=%s) to %s", None, b"{}", "tp")
    assert line == "Sending (key=None value=<2 bytes redacted>) to tp"


def test_protocol_messages_become_their_type(caplog: pytest.LogCaptureFixture) -> None:
    line = _line(caplog, "aiokafka.conn", "Request to %s:%d %d: %s", "127.0.0.1", 9092, 7, _ProduceRequest_v7())
    assert line == "Request to 127.0.0.1:9092 7: <_ProduceRequest_v7 redacted>"
    assert "zelda" not in _line(caplog, "aiokafka.conn", "Response from %s:%d %d: %s", "h", 1, 8, _ProduceRequest_v7())


def test_other_lines_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    assert _line(caplog, "aiokafka.conn", "Closing connection at %s:%s (%s, %s)", "h", 1, None, None) == \
        "Closing connection at h:1 (None, None)"
    assert _line(caplog, "streams.agents.lead", "lead %s captured", "ld_1") == "lead ld_1 captured"


def test_a_malformed_request_is_logged_without_its_bytes(caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp.http_exceptions import InvalidHeader

    try:
        raise InvalidHeader(b"Authorization: Bearer open-key-SECRET\x01")
    except InvalidHeader as exc:
        caught = exc
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        logging.getLogger("aiohttp.server").error("Error handling request from %s", "10.0.0.7", exc_info=caught)
    (record,) = caplog.records
    assert record.getMessage() == "Malformed HTTP request from 10.0.0.7: InvalidHeader (400); its content is not logged"
    assert "SECRET" not in caplog.text and record.exc_info is None
    # A bug of ours in a handler keeps its traceback.
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        try:
            raise KeyError("x")
        except KeyError:
            logging.getLogger("aiohttp.server").exception("Error handling request from %s", "10.0.0.7")
    assert "Traceback" in caplog.text and "KeyError" in caplog.text

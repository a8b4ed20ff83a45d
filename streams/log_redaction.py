"""Keep message contents out of Faust's and aiokafka's debug lines: leads are personal data.

At ``LEADFLOW_LOG_LEVEL=debug`` the libraries log what they send and receive: Faust and
aiokafka every produced message's value (``send: topic=… v=…``, ``Sending (key=… value=…)``),
aiokafka every request and response whole (a ``ProduceRequest``'s and a ``FetchResponse``'s record
bytes). That put leads' e-mails, phones and names, and reps' webhook secrets and URLs, in the
log (``tests/integration/test_no_personal_data_in_logs.py`` found them). The filters here rewrite
those records, and only those, before any handler sees them: a value becomes its size, a protocol
message its type. A key stays only when it is a lead id (``ld_`` and 24 hex digits: a hash, what a
debug log is read for); every other key becomes its size too. Keys are not all opaque: the account
agent keys by the company's e-mail domain (``jane-doe-homepage.net`` names a person), and a feed
may key ``leads.inbound`` records by whatever it likes, an e-mail included.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from streams import log_rate_limit

__all__ = ["REDACTED_LOGGERS", "KEY_POSITIONS", "install", "redacted", "redacted_key"]

#: logger name -> {message template: positions of its arguments to redact}
REDACTED_LOGGERS: dict[str, dict[str, tuple[int, ...]]] = {
    "faust.topics": {"send: topic=%r k=%r v=%r timestamp=%r partition=%r": (1, 2)},
    "faust.transport.drivers.aiokafka": {"send: topic=%r k=%r v=%r timestamp=%r partition=%r": (1, 2)},
    "aiokafka.producer.producer": {"Sending (key=%s value=%s) to %s": (0, 1)},
    "aiokafka.conn": {"Request to %s:%d %d: %s": (3,), "Response from %s:%d %d: %s": (3,)},
}
#: message template -> the position of its message key (kept when it is a lead id)
KEY_POSITIONS: dict[str, int] = {
    "send: topic=%r k=%r v=%r timestamp=%r partition=%r": 1,
    "Sending (key=%s value=%s) to %s": 0,
}
_LEAD_ID = re.compile(r"ld_[0-9a-f]{24}")


def redacted(value: Any) -> str:
    """What a log line shows instead of ``value``: its size, or a protocol message's type."""
    if value is None:
        return "None"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes redacted>"
    if isinstance(value, str):
        return f"<{len(value)} characters redacted>"
    return f"<{type(value).__name__} redacted>"


def redacted_key(key: Any) -> Any:
    """A message key as a log line may show it: a lead id as is (an opaque hash), anything else redacted."""
    text = bytes(key).decode("ascii", "replace") if isinstance(key, (bytes, bytearray, memoryview)) else key
    if isinstance(text, str) and _LEAD_ID.fullmatch(text):
        return key
    return redacted(key)


class _Redact(logging.Filter):
    def __init__(self, templates: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        self.templates = templates

    def filter(self, record: logging.LogRecord) -> bool:
        positions = self.templates.get(record.msg) if isinstance(record.msg, str) else None
        if positions and isinstance(record.args, tuple):
            args = list(record.args)
            key_at = KEY_POSITIONS.get(record.msg)
            for i in positions:
                if i < len(args):
                    args[i] = redacted_key(args[i]) if i == key_at else redacted(args[i])
            record.args = tuple(args)
        return True


class _MalformedRequest(logging.Filter):
    """aiohttp's line for a request it could not parse, without the request's bytes.

    The parser's exception quotes the offending header or request line whole, and aiohttp logs
    it with its traceback at ERROR: ``Authorization: Bearer <key>\x01``, a ``hub.verify_token`` in
    a query string, or an e-mail in any header all reached the log. The line keeps who sent what
    kind of malformed request; the exception's text and traceback go.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.msg == "Error handling request from %s" and isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.msg = "Malformed HTTP request from %s: %s (%s); its content is not logged"
            record.args = (remote, type(exc).__name__, exc.code)
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Put the filters on the libraries' loggers (idempotent), and aiokafka's repeated warnings and
    errors down to one line per template and 10 s (``streams/log_rate_limit.py``), after these."""
    for name, templates in REDACTED_LOGGERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Redact) for f in logger.filters):
            logger.addFilter(_Redact(templates))
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequest) for f in server.filters):
        server.addFilter(_MalformedRequest())
    log_rate_limit.install()

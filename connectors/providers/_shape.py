"""Reading a provider's JSON defensively: every wrong shape is a ``PayloadInvalid`` naming the path."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.lead_input import FieldError

__all__ = ["PayloadInvalid", "child", "array", "mapping", "text", "optional_text", "optional_unix_time",
           "optional_iso_time"]


class PayloadInvalid(ValueError):
    """The payload is not what the provider documents; ``fields`` name where."""

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.reason}" for f in fields))
        self.fields = fields


def child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _fail(path: str, reason: str) -> PayloadInvalid:
    return PayloadInvalid([FieldError(path or "(body)", reason)])


def mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "expected an object")
    return value


def array(value: Any, path: str, *, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, "expected an array")
    if limit is not None and len(value) > limit:
        raise _fail(path, f"at most {limit} items")
    return value


def text(value: Any, path: str, *, limit: int | None = 200, numeric_ok: bool = False) -> str:
    """A non-empty string (or, with ``numeric_ok``, an integer id such as Facebook's older ones).

    ``limit=None`` for a person's answer: the body size bounds it, and the mapper cuts it to fit.
    """
    if numeric_ok and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, "expected a non-empty string")
    if limit is not None and len(value) > limit:
        raise _fail(path, f"at most {limit} characters")
    return value.strip()


def optional_text(value: Any, path: str, *, limit: int | None = 200, numeric_ok: bool = False) -> str | None:
    return None if value is None else text(value, path, limit=limit, numeric_ok=numeric_ok)


def optional_unix_time(value: Any, path: str) -> datetime | None:
    """A Unix time in whole seconds (Meta's ``created_time``, ``time``), or ``None`` when absent."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**34:
        raise _fail(path, "expected a Unix time in seconds")
    return datetime.fromtimestamp(value, UTC)


def optional_iso_time(value: Any, path: str) -> datetime | None:
    """An ISO 8601 time with its offset (Typeform's ``submitted_at``: ``2026-01-05T09:00:00Z``), or ``None``."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(text(value, path, limit=40))
    except ValueError:
        raise _fail(path, "expected an ISO 8601 time such as 2026-01-05T09:00:00Z") from None
    if at.tzinfo is None:
        raise _fail(path, "expected a time with its offset, such as 2026-01-05T09:00:00Z")
    return at.astimezone(UTC)

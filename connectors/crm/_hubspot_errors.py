"""HubSpot's error objects, read into a short reason without personal data, and whether retrying can help.

A batch upsert that fails answers ``207`` (or ``400``) with ``errors[]``: each has a ``category``
(``VALIDATION_ERROR``, ``OBJECT_NOT_FOUND``, ``RATE_LIMITS``…) and a ``message`` that for
property errors embeds a JSON list of ``{"name", "error", "message"}`` (``error`` such as
``PROPERTY_DOESNT_EXIST`` or ``INVALID_OPTION``). The messages quote property *values* (a deal
name is a person's name), so a reason keeps only categories, property names and error codes.
"""
from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["describe_errors", "is_permanent"]

#: Categories no retry can fix: the deal or the portal's setup must change first.
_PERMANENT = frozenset({
    "VALIDATION_ERROR", "OBJECT_NOT_FOUND", "MISSING_SCOPES", "INVALID_AUTHENTICATION", "INVALID_EMAIL",
    "PROPERTY_DOESNT_EXIST", "INVALID_OPTION", "INVALID_INTEGER", "INVALID_LONG", "INVALID_DATE",
    "INVALID_DATETIME", "INVALID_BOOLEAN", "INVALID_DOUBLE", "READ_ONLY_VALUE", "OBJECT_ALREADY_EXISTS",
    "DUPLICATE_OBJECT", "UNIQUE_VALUE_CONFLICT",
})
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{2,63}$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def _details(error: dict[str, Any]) -> list[tuple[str, str]]:
    """``(property name, error code)`` pairs from the JSON list a property error's message embeds."""
    message = error.get("message")
    if not isinstance(message, str) or "[" not in message:
        return []
    try:
        items = orjson.loads(message[message.index("["):])
    except orjson.JSONDecodeError:
        return []
    found = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            name, code = str(item.get("name") or ""), str(item.get("error") or "")
            found.append((name if _NAME.match(name) else "?", code if _CODE.match(code) else "?"))
    return found


def _codes(error: dict[str, Any]) -> set[str]:
    codes = {str(error.get(k)) for k in ("category", "subCategory") if isinstance(error.get(k), str)}
    return codes | {code for _, code in _details(error)}


def is_permanent(errors: list[dict[str, Any]]) -> bool:
    """True when any error is one retrying cannot fix (a validation error, a missing property…)."""
    return any(_codes(e) & _PERMANENT for e in errors)


def describe_errors(errors: list[dict[str, Any]], limit: int = 3) -> str:
    """``VALIDATION_ERROR (dealstage: INVALID_OPTION)``; ``;``-joined; property values left out."""
    parts = []
    for error in errors[:limit]:
        category = str(error.get("category") or "")
        head = category if _CODE.match(category) else ""
        sub = str(error.get("subCategory") or "")
        if head and sub and _CODE.match(sub.replace(".", "_")):
            head += f"/{sub}"
        details = _details(error)
        if details:
            head += " (" + ", ".join(f"{name}: {code}" for name, code in details[:5]) + ")"
        elif isinstance(error.get("message"), str) and category == "VALIDATION_ERROR":
            # No structured detail: the property names it quotes, never anything else it says.
            names = [n for n in re.findall(r"property ([A-Za-z0-9_]{1,100})", error["message"])]
            if names and "non-unique" in error["message"]:
                # An idProperty that is no unique-value deal property (or does not exist at all).
                head += f" (property {names[0]} is not a unique-value property of deals)"
            elif names:
                head += f" (property {', '.join(names[:3])})"
        if head:
            parts.append(head.strip())
    more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
    return "; ".join(parts) + more

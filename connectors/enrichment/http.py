"""A provider over HTTP, configured by a URL template, an auth header and a field mapping.

``GET url`` with the lookup key (``{domain}`` or ``{email}``) URL-encoded into it; a JSON object
comes back and ``fields`` maps each of our field names to one or more dotted paths in it (the
first present one wins). Statuses in ``not_found`` mean "no record" (cached as such); any
other non-2xx, a body that is not a JSON object, or a connection failure is a ``ProviderError``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import orjson

from connectors.enrichment.provider import Answer, LookupKind, ProviderError
from rules.enrichment import MAX_PROVIDED_VALUE

__all__ = ["HttpProvider", "extract"]

MAX_BODY_BYTES: Final = 512 * 1024  # a company record is a few KiB; never buffer an unbounded body
_MAX_LIST_ITEMS: Final = 10


class HttpProvider:
    """An ``EnrichmentProvider`` for any JSON-over-HTTP lookup API."""

    __slots__ = ("_name", "_kind", "_url", "_headers", "_fields", "_not_found", "_root", "_session")

    def __init__(self, *, name: str, url: str, fields: Mapping[str, Sequence[str]],
                 session: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession],
                 auth_header: str | None = None, auth_value: str | None = None,
                 not_found: Sequence[int] = (404,), root: str | None = None) -> None:
        kinds = [kind for kind in ("domain", "email") if "{" + kind + "}" in url]
        if len(kinds) != 1:
            raise ValueError("the url must hold exactly one of {domain} or {email}")
        self._name = name
        self._kind: LookupKind = "domain" if kinds[0] == "domain" else "email"
        self._url = url
        # The key lives only in this header dict: never in the URL (proxies and logs keep URLs).
        self._headers = {"Accept": "application/json"}
        if auth_header and auth_value:
            self._headers[auth_header] = auth_value
        self._fields = {name: tuple(paths) for name, paths in fields.items()}
        self._not_found = frozenset(not_found)
        self._root = root
        self._session = session

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> LookupKind:
        return self._kind

    def __repr__(self) -> str:  # never the headers: they hold the API key
        return f"HttpProvider(name={self._name!r}, kind={self._kind!r})"

    def url_for(self, key: str) -> str:
        return self._url.replace("{" + self._kind + "}", quote(key, safe=""))

    async def lookup(self, key: str) -> Answer:
        session = self._session() if callable(self._session) else self._session
        try:
            async with session.get(self.url_for(key), headers=self._headers, allow_redirects=False) as response:
                if response.status in self._not_found:
                    return Answer(found=False)
                if not 200 <= response.status < 300:
                    raise ProviderError(f"{self._name} answered HTTP {response.status}")
                body = await response.content.read(MAX_BODY_BYTES + 1)
        except aiohttp.ClientError as exc:
            raise ProviderError(f"{self._name} could not be reached ({type(exc).__name__})") from None
        if len(body) > MAX_BODY_BYTES:
            raise ProviderError(f"{self._name} answered more than {MAX_BODY_BYTES} bytes")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderError(f"{self._name} answered something that is not JSON") from None
        record = _at(document, self._root) if self._root else document
        if not isinstance(record, dict):
            raise ProviderError(f"{self._name} answered JSON without an object{' at ' + self._root if self._root else ''}")
        return Answer(found=True, fields=extract(record, self._fields))


def extract(record: Mapping[str, Any], fields: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Our fields from a provider's record: per field the first path with a usable value, as text."""
    out: dict[str, str] = {}
    for name, paths in fields.items():
        for path in paths:
            text = _text(_at(record, path))
            if text:
                out[name] = text[:MAX_PROVIDED_VALUE]
                break
    return out


def _at(document: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(document, dict):
            document = document.get(part)
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return None
    return document


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return " ".join(value.split()) or None
    if isinstance(value, list):
        items = [text for text in (_text(item) for item in value[:_MAX_LIST_ITEMS]) if text]
        return ", ".join(items) or None
    return None

"""API keys: kept only as SHA-256 digests and compared in constant time."""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["ApiKey", "Keyring"]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """Who is calling: the key's name doubles as the default lead source."""

    name: str


class Keyring:
    """The accepted API keys, by digest."""

    def __init__(self, digests: Mapping[str, str], plain_keys: Iterable[tuple[str, str]] = ()) -> None:
        self._digests = dict(digests)
        for name, key in plain_keys:
            self._digests[hashlib.sha256(key.encode()).hexdigest()] = name

    def __len__(self) -> int:
        return len(self._digests)

    def authenticate(self, authorization: str | None) -> ApiKey | None:
        """Return the caller for an ``Authorization: Bearer <key>`` header, or ``None``."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        found: str | None = None
        # Compare against every digest so timing does not reveal how many keys matched early.
        for known, name in self._digests.items():
            if hmac.compare_digest(known, digest):
                found = name
        return ApiKey(found) if found is not None else None

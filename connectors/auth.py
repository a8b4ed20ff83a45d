"""API keys: kept only as SHA-256 digests, compared in constant time, each with the scopes it grants.

A scope is what a key may do, by route (docs/capture.md, "API keys and scopes"):

* ``capture`` — send leads: ``POST /v1/leads``, ``/v1/leads/import``, ``/v1/forms/{form_id}``.
* ``read`` — read leads, teams and accounts: ``GET /v1/leads/{id}``, ``/v1/teams/{id}``, ``/v1/accounts/{domain}``.
* ``work`` — what an SDR tool reports on a lead and a rep: accept, decline, activities, qualification,
  disposition, and a rep's presence.
* ``admin`` — change who leads go to: ``PUT``/``DELETE /v1/reps/{id}`` (team, capacity, webhook URL
  and secret) and ``PUT``/``DELETE /v1/accounts/{domain}``.

A web-form key is ``[capture]``; an SDR tool ``[read, work]``; RevOps tooling ``[admin, read]``.
A key configured without scopes has them all, as every key had before scopes existed; the worker
says so at start, naming the key (never the key itself).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = ["ALL_SCOPES", "ApiKey", "Keyring", "MIN_KEY_LENGTH", "SCOPES", "Scope", "key_problem", "parse_scopes"]

log = logging.getLogger(__name__)

Scope = Literal["capture", "read", "work", "admin"]
#: Every scope, in the order the docs list them.
SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)
ALL_SCOPES: Final = frozenset(SCOPES)
#: Shortest key accepted from the config or the environment: a key is a secret, not a password.
MIN_KEY_LENGTH: Final = 16


def key_problem(key: str) -> str | None:
    """What makes ``key`` unfit to be an API key (never the key itself), or ``None``.

    A key must be printable ASCII (what ``Keyring.authenticate`` can match) and at least
    ``MIN_KEY_LENGTH`` characters long.
    """
    if not _printable_ascii(key) or key != key.strip():
        return "must be printable ASCII characters, without leading or trailing spaces"
    if len(key) < MIN_KEY_LENGTH:
        return f"has {len(key)} characters; at least {MIN_KEY_LENGTH} are needed (e.g. `openssl rand -hex 24`)"
    return None


def parse_scopes(names: Iterable[str]) -> tuple[frozenset[Scope], list[str]]:
    """The scopes named, and one problem per name that is no scope."""
    scopes: set[Scope] = set()
    problems = []
    for name in names:
        if name in SCOPES:
            scopes.add(name)
        else:
            problems.append(f"{name!r} is not a scope (expected {', '.join(SCOPES)})")
    return frozenset(scopes), problems


def _printable_ascii(text: str) -> bool:
    # aiohttp decodes header bytes with surrogateescape: b"\xff" arrives as "\udcff", which str.encode()
    # refuses. Only " " to "~" can be in a key, so nothing else needs hashing.
    return text.isascii() and text.isprintable()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """Who is calling: the key's name doubles as the default lead source.

    ``scopes`` ``None``: the key was configured without scopes and may do everything (warned at start).
    """

    name: str
    scopes: frozenset[Scope] | None = None

    def allows(self, scope: Scope) -> bool:
        return self.scopes is None or scope in self.scopes


class Keyring:
    """The accepted API keys, by digest.

    ``digests`` maps a SHA-256 hex digest to its key (or to a bare name: a key without scopes);
    ``plain_keys`` are ``(key or name, secret)`` pairs hashed here.
    """

    def __init__(self, digests: Mapping[str, ApiKey | str],
                 plain_keys: Iterable[tuple[ApiKey | str, str]] = ()) -> None:
        self._keys = {digest: _key(who) for digest, who in digests.items()}
        for who, secret in plain_keys:
            self._keys[hashlib.sha256(secret.encode()).hexdigest()] = _key(who)
        for name in sorted({k.name for k in self._keys.values() if k.scopes is None}):
            log.warning("API key %r has no scopes, so it may do everything (%s): give it only the scopes it "
                        "needs (`scopes: [...]` in the config, `<key>:<scope>+<scope>` in LEADFLOW_API_KEYS)",
                        name, ", ".join(SCOPES))

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, authorization: str | None) -> ApiKey | None:
        """Return the caller for an ``Authorization: Bearer <key>`` header, or ``None``."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not _printable_ascii(token):
            return None  # a 401, not the 500 of an UnicodeEncodeError
        digest = hashlib.sha256(token.encode("ascii")).hexdigest()
        found: ApiKey | None = None
        # Compare against every digest so timing does not reveal how many keys matched early.
        for known, key in self._keys.items():
            if hmac.compare_digest(known, digest):
                found = key
        return found


def _key(who: ApiKey | str) -> ApiKey:
    return who if isinstance(who, ApiKey) else ApiKey(who)

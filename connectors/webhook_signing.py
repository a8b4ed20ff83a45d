"""Standard Webhooks signing: secrets, the v1 HMAC-SHA256 signature and the signed headers."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Final

__all__ = [
    "SECRET_PREFIX",
    "USER_AGENT",
    "generate_secret",
    "sign",
    "signed_headers",
    "validate_msg_id",
    "validate_secret",
]

SECRET_PREFIX: Final = "whsec_"
USER_AGENT: Final = "leadflow-webhooks/1"

# The spec's bounds on the decoded key; 32 bytes (what we generate) is the usual size.
_MIN_KEY_BYTES: Final = 24
_MAX_KEY_BYTES: Final = 64
# The id travels as a header value and is what receivers de-duplicate on: keep it boring.
_MSG_ID: Final = re.compile(r"[!-~]{1,256}")


def generate_secret() -> str:
    """A new ``whsec_`` secret holding 32 random bytes; shown to the rep once, stored as is."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _signing_key(secret: str) -> bytes:
    """The HMAC key inside ``secret``; messages never quote the secret itself."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"webhook secret must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        # Unpadded base64 is accepted, as the reference verifiers do; validate=True still
        # rejects characters outside the alphabet instead of silently skipping them.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise ValueError(f"webhook secret must be {SECRET_PREFIX!r} followed by base64") from exc
    if not _MIN_KEY_BYTES <= len(key) <= _MAX_KEY_BYTES:
        raise ValueError(
            f"webhook secret must decode to {_MIN_KEY_BYTES}-{_MAX_KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def validate_secret(secret: str) -> None:
    """Raise ``ValueError`` saying what is wrong unless ``secret`` is a usable ``whsec_`` secret."""
    _signing_key(secret)


def validate_msg_id(msg_id: str) -> None:
    """Raise ``ValueError`` unless ``msg_id`` can travel as a ``webhook-id`` header."""
    if not _MSG_ID.fullmatch(msg_id):
        raise ValueError("webhook id must be 1-256 printable ASCII characters without spaces")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    # The body is signed as the exact bytes sent; never re-serialize it between here and the wire.
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """All headers of one delivery attempt; ``timestamp`` is that attempt's unix seconds."""
    validate_msg_id(msg_id)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }

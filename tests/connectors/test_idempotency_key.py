"""The Idempotency-Key header: 1 to 255 printable ASCII characters, or a 400 naming it (never a 500)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from multidict import CIMultiDict

from connectors.api.errors import ApiError
from connectors.api.leads import idempotency_key


def _request(value: str | None) -> object:
    """What the function reads of a request: its headers, as aiohttp decoded them."""
    return SimpleNamespace(headers=CIMultiDict({} if value is None else {"Idempotency-Key": value}))


@pytest.mark.parametrize("value", ["order-42:retry", "k" * 255, "a b ~"])
def test_a_printable_ascii_key_is_the_key(value: str) -> None:
    assert idempotency_key(_request(value)) == value  # type: ignore[arg-type]


def test_no_header_is_no_key() -> None:
    assert idempotency_key(_request(None)) is None  # type: ignore[arg-type]


# aiohttp decodes header bytes with surrogateescape: b"\xff\xfe" arrives as "\udcff\udcfe", which
# could not be encoded to hash the key for the idempotency store (a 500 before this check).
@pytest.mark.parametrize("value", ["", "k" * 256, "\udcff\udcfe", "clé", "tab\there", "nul\x00"])
def test_anything_else_is_a_400_naming_the_header(value: str) -> None:
    with pytest.raises(ApiError) as refused:
        idempotency_key(_request(value))  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.code) == (400, "invalid_idempotency_key")
    assert "Idempotency-Key must be 1 to 255 printable ASCII characters" in refused.value.message

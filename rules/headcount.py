"""Employee counts as people and providers write them: ``350``, ``1,200``, ``1.5k``, ``10K+``, ``2M``, ``51-200``.

Pure. ``read_headcount`` finds the first count or band in free text and returns it as
``(low, high)`` (``high`` ``None``: no upper bound), or ``None`` when the text holds no count.
Scoring takes the low end of a band; team selection matches the whole band.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

__all__ = ["read_headcount"]

#: One count: digits grouped by thousands (``1,200``, ``1.200``, ``1 200``, ``1'200``) or plain, an
#: optional decimal part (``1.5``), an optional ``k``/``m`` (thousands, millions) not starting a word.
_COUNT: Final = (r"(?:\d{1,3}(?:[,.' _]\d{3})+(?![\d])|\d+)"  # the whole number
                 r"(?:[.,]\d{1,2}(?![\d]))?"                    # a decimal part: 1.5k, 2,5k
                 r"(?:\s?[kKmM](?![A-Za-z]))?")                  # thousands, millions
_HEADCOUNT: Final = re.compile(rf"(?P<low>{_COUNT})(?:\s*(?P<plus>\+)|\s*(?:-|–|—|to)\s*(?P<high>{_COUNT}))?")
_MULTIPLIER: Final = {"k": 1_000, "m": 1_000_000}


def _count(text: str) -> int:
    """``"1,200"`` → 1200, ``"1.5k"`` → 1500, ``"2M"`` → 2000000 (the text matched ``_COUNT``)."""
    text = text.replace(" ", "")
    multiplier = _MULTIPLIER.get(text[-1].lower(), 1)
    if multiplier != 1:
        text = text[:-1]
    whole, fraction = text, ""
    decimal = re.search(r"[.,](\d{1,2})$", text)
    if decimal is not None:
        whole, fraction = text[: decimal.start()], decimal.group(1)
    digits = re.sub(r"[,.'_]", "", whole)
    return int(Decimal(f"{digits}.{fraction or 0}") * multiplier)


def read_headcount(text: str) -> tuple[int, int | None] | None:
    """The first employee count or band in ``text`` as ``(low, high)``; ``None`` when there is none.

    ``"40"`` → (40, 40), ``"1,200"`` → (1200, 1200), ``"1.5k"`` → (1500, 1500), ``"10k+"`` →
    (10000, None), ``"51-200"`` → (51, 200), ``"about 12"`` → (12, 12), ``"n/a"`` → ``None``. A band
    that ends before it starts is read as its low end only.
    """
    match = _HEADCOUNT.search(text)
    if match is None:
        return None
    low = _count(match["low"])
    if match["plus"]:
        return low, None
    if match["high"]:
        high = _count(match["high"])
        return (low, high) if high >= low else (low, low)
    return low, low

"""Benchmarks run by hand (``python -m ops.bench.<name>``); their figures are recorded in ``docs/``."""
from __future__ import annotations

__all__: list[str] = []

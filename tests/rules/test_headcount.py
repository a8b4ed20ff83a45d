"""Employee counts as written: thousands separators, k/m suffixes, decimals, bands, open bands."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.headcount import read_headcount


@pytest.mark.parametrize(("text", "band"), [
    ("40", (40, 40)),
    ("about 12", (12, 12)),
    ("1,200", (1200, 1200)),
    ("1.200", (1200, 1200)),        # a dot between thousands, as much of Europe writes it
    ("1 200", (1200, 1200)),
    ("12,000,000", (12_000_000, 12_000_000)),
    ("10k", (10_000, 10_000)),
    ("10K", (10_000, 10_000)),
    ("1.5k", (1500, 1500)),         # was read as 15
    ("2,5k", (2500, 2500)),         # a decimal comma
    ("1.25 k", (1250, 1250)),
    ("2M", (2_000_000, 2_000_000)),
    ("1.5m employees", (1_500_000, 1_500_000)),
    ("10k+", (10_000, None)),
    ("1,000+", (1000, None)),
    ("51-200", (51, 200)),
    ("1,000-4,999", (1000, 4999)),
    ("1k - 5k", (1000, 5000)),
    ("201 to 500", (201, 500)),
    ("51–200", (51, 200)),          # an en dash
    ("500-200", (500, 500)),        # a band that ends before it starts: its low end
    ("12 members", (12, 12)),       # "m" starting a word is not millions
    ("5 Mitarbeiter", (5, 5)),
    ("n/a", None),
    ("", None),
    ("lots", None),
])
def test_headcounts_are_read_as_people_write_them(text: str, band: tuple[int, int | None] | None) -> None:
    assert read_headcount(text) == band


@given(st.integers(min_value=0, max_value=10**9))
def test_every_count_written_with_or_without_thousands_separators_reads_back(n: int) -> None:
    assert read_headcount(str(n)) == (n, n)
    assert read_headcount(f"{n:,}") == (n, n)
    assert read_headcount(f"{n:,}+") == (n, None)

"""Where a lead is: one reading of country and state for team rules and rep territories."""
from __future__ import annotations

import pytest

from rules.capture import CapturedLead
from rules.enrichment import enrich
from rules.territory import Location, expand_territories, locate, subdivision, territory_problem, uncovered


@pytest.mark.parametrize(("value", "country", "expected"), [
    ("CA", "US", "US-CA"),
    (" ca ", "us", "US-CA"),
    ("us-ca", "US", "US-CA"),
    ("US-CA", None, "US-CA"),
    ("CA", None, "CA"),       # nothing to prefix it with
    ("", "US", None),
    (None, "US", None),
])
def test_subdivision(value: str | None, country: str | None, expected: str | None) -> None:
    assert subdivision(value, country) == expected


@pytest.mark.parametrize(("country", "attributes", "expected"), [
    ("US", {"state": "CA"}, Location(country="US", state="US-CA")),
    ("US", {"region": "CA"}, Location(country="US", state="US-CA")),
    ("US", {"state": " ", "region": "WA"}, Location(country="US", state="US-WA")),
    ("US", {"state": "OR", "region": "WA"}, Location(country="US", state="US-OR")),  # state first
    ("us", {}, Location(country="US")),
    (None, {}, Location()),
])
def test_locate_reads_state_or_region(country: str | None, attributes: dict[str, str], expected: Location) -> None:
    assert locate(country, attributes) == expected


def test_without_a_country_the_phone_says_where_and_prefixes_the_state() -> None:
    lead = CapturedLead(email="ines@empresa.es", phone="+34612345678", source="web", attributes={"state": "MD"})
    assert locate(lead.country, lead.attributes, enrich(lead)) == Location(country="ES", country_from="phone",
                                                                             state="ES-MD")


@pytest.mark.parametrize(("territories", "country", "state", "expected"), [
    ((), "US", "US-CA", None),                  # no territories: anywhere
    (("US-CA",), None, None, None),             # a lead that says nowhere asks for no territory
    (("US-CA",), "US", "US-CA", None),
    (("US-CA",), "US", "CA", None),             # a bare state queued by an older version
    (("US",), "US", "US-CA", None),
    (("US-WA",), "US", "US-CA", "US-CA"),
    (("FR",), "DE", None, "DE"),
])
def test_uncovered(territories: tuple[str, ...], country: str | None, state: str | None,
                   expected: str | None) -> None:
    assert uncovered(territories, country, state) == expected


@pytest.mark.parametrize(("territory", "ok"), [
    ("US", True), ("us-ca", True), ("GB", True), ("EMEA", True), (" de ", True),
    ("UK", False), ("XX-CA", False), ("Narnia", False), ("APAC", False), ("", False),
])
def test_a_rep_territory_is_a_region_a_country_or_a_state(territory: str, ok: bool) -> None:
    problem = territory_problem(territory, {"EMEA": ("DE", "FR")})
    assert (problem is None) == ok, problem
    if problem is not None:
        assert "ISO 3166-1 country (US)" in problem and "routing.regions (EMEA)" in problem


def test_regions_expand_to_their_countries_once_in_first_mention_order() -> None:
    regions = {"EMEA": ("DE", "FR"), "NA": ("US", "CA")}
    assert expand_territories(["FR", "EMEA", "US-CA", "NA", "DE"], regions) == ("FR", "DE", "US-CA", "US", "CA")
    assert expand_territories(["EMEA"], {}) == ("EMEA",)  # no regions: left as is (the check refuses it)

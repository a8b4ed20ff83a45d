"""Rep territories and rule countries in the YAML: a region of ``routing.regions`` is expanded to its
countries, an ISO country or state passes, anything else is refused at its line; a rule's country
must be ISO 3166-1 (the list the API checks leads' countries against)."""
from __future__ import annotations

import pytest

from leadflow.errors import ConfigError
from rules.territory import uncovered
from streams.config import parse_config

REGIONS = """\
routing:
  regions: {{EMEA: [DE, FR, ES], NA: [US, CA]}}
teams:
  - id: t
    reps:
      - {{id: a, territories: {territories}}}
"""


def test_a_region_name_is_expanded_to_its_countries() -> None:
    # [EMEA] passed before and matched no lead: the rep was never eligible for a lead with a country.
    config = parse_config(REGIONS.format(territories="[EMEA, US-CA, gb]"), "c.yaml")
    (profile,) = config.rep_profiles({})
    assert profile.territories == ("DE", "FR", "ES", "US-CA", "gb")
    assert uncovered(profile.territories, "FR", None) is None
    assert uncovered(profile.territories, "US", "CA") is None
    assert uncovered(profile.territories, "IT", None) == "IT"


@pytest.mark.parametrize(("territory", "says"), [
    ("Narnia", "unknown territory 'Narnia'"), ("XX", "unknown territory 'XX'"), ("XX-CA", "unknown territory 'XX-CA'"),
    ("APAC", "unknown territory 'APAC'"),
])
def test_a_territory_that_matches_no_lead_is_refused_at_its_line(territory: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(REGIONS.format(territories=f"[NA, {territory}]"), "c.yaml")
    assert str(caught.value) == (
        f"invalid configuration:\n  c.yaml:6: teams[0].reps[0].territories[1]: {says}: use an ISO 3166-1 country "
        "(US), an ISO 3166-2 state (US-CA) or a region of routing.regions (EMEA, NA)")


@pytest.mark.parametrize(("rule", "path", "says"), [
    ("{team: t, countries: [US, XX]}", "routing.rules[0].countries[1]", "XX is not an ISO 3166-1 alpha-2 country code"),
    ("{team: t, countries: [UK]}", "routing.rules[0].countries[0]", "UK is not an ISO 3166-1 alpha-2 country code; use GB"),
    ("{team: t, states: [XX-CA]}", "routing.rules[0].states[0]", "XX is not an ISO 3166-1 alpha-2 country code"),
])
def test_a_rule_country_must_be_iso(rule: str, path: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"routing:\n  rules:\n    - {rule}\n", "c.yaml")
    assert f"c.yaml:3: {path}: Value error, {says}" in str(caught.value)


def test_a_region_country_must_be_iso() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("routing:\n  regions:\n    EMEA: [DE, ZZ]\n", "c.yaml")
    assert "c.yaml:3: routing.regions.EMEA[1]: Value error, ZZ is not an ISO 3166-1 alpha-2 country code" in str(
        caught.value)

"""The YAML's routing rules become TeamRules; every mistake is named by file, line and path."""
from __future__ import annotations

import pytest

from leadflow.errors import ConfigError
from rules.routing import Region, SizeRange, TeamRule
from streams.config import parse_config

CONFIG = """\
routing:
  default_team: sdr-global
  regions:
    EMEA: [DE, FR, ES, GB]
    NA: [US, CA]
  tier_priorities: {A: 0, B: 1}
  rules:
    - {name: enterprise-na, team: ent-na, regions: [NA], company_sizes: [1000+], industries: [software]}
    - {team: west, states: [US-CA, US-WA], seniorities: [vp, c_level], departments: [sales]}
    - {team: partners, sources: [partner-feed], tiers: [A]}
    - {team: emea, regions: [EMEA], countries: [IE]}
"""


def test_rules_are_built_in_order_with_their_regions_resolved() -> None:
    policy = parse_config(CONFIG, "r.yaml").lead_policy("default")
    assert policy.default_team == "sdr-global" and policy.tier_priorities == {"A": 0, "B": 1}
    assert policy.team_rules == (
        TeamRule(team="ent-na", name="enterprise-na", regions=(Region(name="NA", countries=("US", "CA")),),
                 company_sizes=(SizeRange(low=1000),), industries=("software",)),
        TeamRule(team="west", states=("US-CA", "US-WA"), seniorities=("vp", "c_level"), departments=("sales",)),
        TeamRule(team="partners", sources=("partner-feed",), tiers=("A",)),
        TeamRule(team="emea", regions=(Region(name="EMEA", countries=("DE", "FR", "ES", "GB")),), countries=("IE",)),
    )


@pytest.mark.parametrize(("text", "error"), [
    ("routing:\n  rules:\n    - {team: t, regions: [EMAE]}\n",
     "r.yaml:3: routing.rules[0].regions[0]: unknown region 'EMAE' (defined: none; add routing.regions)"),
    ("routing:\n  regions: {EMEA: [DE]}\n  rules:\n    - {team: t}\n    - {team: t, regions: [EMEA, APAC]}\n",
     "r.yaml:5: routing.rules[1].regions[1]: unknown region 'APAC' (defined: EMEA)"),
    ("routing:\n  rules:\n    - {team: t, company_sizes: [200-100]}\n",
     "r.yaml:3: routing.rules[0].company_sizes: Value error, '200-100': the band ends before it starts"),
    ("routing:\n  rules:\n    - {team: t, seniorities: [boss]}\n",
     "r.yaml:3: routing.rules[0].seniorities: Value error, unknown seniority 'boss'"),
    ("routing:\n  rules:\n    - {team: t, states: [California]}\n",
     "r.yaml:3: routing.rules[0].states[0]: String should match pattern"),
    ("routing:\n  regions: {EMEA: [de]}\n", "r.yaml:2: routing.regions.EMEA[0]: String should match pattern"),
    ("routing:\n  tier_priorities: {A: 12}\n",
     "r.yaml:2: routing.tier_priorities.A: Input should be less than or equal to 9"),
    ("routing:\n  rules:\n    - {team: t, size: 10}\n", "r.yaml:3: routing.rules[0].size: Extra inputs are not permitted"),
])
def test_rule_errors_name_file_line_and_path(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "r.yaml")
    assert error in str(caught.value)

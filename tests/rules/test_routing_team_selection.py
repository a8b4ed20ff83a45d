"""Team selection: every criterion, rule order, the default team, account ownership first, the why."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rules.accounts import Account
from rules.capture import CapturedLead
from rules.enrichment import ProviderFindings, enrich
from rules.routing import LeadFacts, Region, SizeRange, TeamRule, facts_of, select_team
from rules.team_selection import rule_match, tier_priority

AT = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
EMEA = Region(name="EMEA", countries=("DE", "FR", "ES", "GB"))


def facts(**fields: object) -> LeadFacts:
    values: dict[str, object] = {"source": "web"}
    values.update(fields)
    return LeadFacts(**values)  # type: ignore[arg-type]


def team(rules: tuple[TeamRule, ...], default: str = "fallback", **fields: object) -> tuple[str, str]:
    return select_team(facts=facts(**fields), rules=rules, default_team=default)


# --- each criterion, matching and not ----------------------------------------------------

CRITERIA = [
    # (rule, facts that match, facts that do not, a phrase of the why)
    (TeamRule(team="x", countries=("US", "CA")), {"country": "CA"}, {"country": "MX"}, "country CA"),
    (TeamRule(team="x", regions=(EMEA,)), {"country": "ES"}, {"country": "US"}, "country ES in region EMEA"),
    (TeamRule(team="x", states=("US-CA", "US-WA")), {"country": "US", "state": "US-WA"},
     {"country": "US", "state": "US-NY"}, "state US-WA"),
    (TeamRule(team="x", company_sizes=(SizeRange(low=200, high=999),)), {"employees": SizeRange(low=200, high=500)},
     {"employees": SizeRange(low=1000)}, "employees 200-500 within 200-999"),
    (TeamRule(team="x", company_sizes=(SizeRange(low=1000),)), {"employees": SizeRange(low=5000, high=5000)},
     {"employees": SizeRange(low=500, high=5000)}, "employees 5000 within 1000+"),
    (TeamRule(team="x", industries=("Software", "fintech")), {"industry": "software"}, {"industry": "retail"},
     "industry software"),
    (TeamRule(team="x", seniorities=("vp", "c_level")), {"seniority": "vp"}, {"seniority": "manager"},
     "seniority vp"),
    (TeamRule(team="x", departments=("sales",)), {"department": "sales"}, {"department": "it"}, "department sales"),
    (TeamRule(team="x", sources=("partner-feed",)), {"source": "partner-feed"}, {"source": "web"},
     "source partner-feed"),
    (TeamRule(team="x", tiers=("A",)), {"tier": "A"}, {"tier": "B"}, "tier A"),
]


@pytest.mark.parametrize(("rule", "yes", "no", "phrase"), CRITERIA)
def test_each_criterion_matches_its_value_and_refuses_others(
        rule: TeamRule, yes: dict[str, object], no: dict[str, object], phrase: str) -> None:
    chosen, why = team((rule,), **yes)
    assert chosen == "x" and phrase in why and why.startswith("routing rule #1 matched: ")
    assert team((rule,), **no) == ("fallback", "no routing rule matched; default team fallback")


@pytest.mark.parametrize("rule", [c[0] for c in CRITERIA if not c[0].sources])  # every lead has a source
def test_a_criterion_about_something_unknown_does_not_match(rule: TeamRule) -> None:
    assert rule_match(rule, facts()) is None


def test_every_criterion_of_a_rule_must_match() -> None:
    rule = TeamRule(team="emea-ent", name="EMEA enterprise", regions=(EMEA,),
                    company_sizes=(SizeRange(low=1000),), industries=("software",))
    assert team((rule,), country="DE", employees=SizeRange(low=2000, high=4999), industry="software") == (
        "emea-ent", "routing rule #1 'EMEA enterprise' matched: country DE in region EMEA, "
                    "employees 2000-4999 within 1000+, industry software")
    assert team((rule,), country="DE", employees=SizeRange(low=50, high=99), industry="software")[0] == "fallback"
    assert team((rule,), country="US", employees=SizeRange(low=2000), industry="software")[0] == "fallback"


def test_the_first_matching_rule_wins_not_the_most_specific() -> None:
    rules = (
        TeamRule(team="emea", regions=(EMEA,)),
        TeamRule(team="emea-partners", regions=(EMEA,), sources=("partner",)),
        TeamRule(team="catch-all"),
    )
    assert team(rules, country="FR", source="partner")[0] == "emea"
    assert team(rules[1:], country="FR", source="partner")[0] == "emea-partners"
    chosen, why = team(rules, country="JP")
    assert (chosen, why) == ("catch-all", "routing rule #3 matched: no criteria (matches every lead)")


def test_no_rules_means_the_default_team() -> None:
    assert team((), default="inbound", country="DE") == ("inbound", "no routing rule matched; default team inbound")


def test_an_account_with_a_team_comes_before_every_rule() -> None:
    rules = (TeamRule(team="catch-all"),)
    owned = Account(domain="acme.com", name="Acme", owner="ana", team="strategic", updated_at=AT)
    assert select_team(facts=facts(), rules=rules, default_team="d", account=owned) == (
        "strategic", "account acme.com (Acme) is owned by ana (team strategic)")
    teamed = Account(domain="acme.com", team="named", updated_at=AT)
    assert select_team(facts=facts(), rules=rules, default_team="d", account=teamed)[0] == "named"
    # An account without a team (a tier only) leaves the choice to the rules.
    tiered = Account(domain="acme.com", tier="strategic", updated_at=AT)
    assert select_team(facts=facts(), rules=rules, default_team="d", account=tiered)[0] == "catch-all"


# --- the facts a lead gives ---------------------------------------------------------------

def lead(**fields: object) -> CapturedLead:
    values: dict[str, object] = {"source": "web", "email": "kim@initech.example"}
    values.update(fields)
    return CapturedLead(**values)  # type: ignore[arg-type]


def test_facts_come_from_the_lead_its_attributes_and_the_enrichment() -> None:
    captured = lead(country="us", title="VP of Sales", attributes={
        "state": "ca", "employees": "1,000-4,999", "industry": "Software"})
    got = facts_of(captured, enrich(captured), tier="A")
    assert got == LeadFacts(source="web", country="US", state="US-CA", employees=SizeRange(low=1000, high=4999),
                            industry="Software", seniority="vp", department="sales", tier="A")


def test_the_country_falls_back_to_the_phone_and_the_why_says_so() -> None:
    captured = lead(phone="+34612345678")
    got = facts_of(captured, enrich(captured))
    assert (got.country, got.country_from) == ("ES", "phone")
    assert team((TeamRule(team="iberia", countries=("ES",)),), country="ES", country_from="phone") == (
        "iberia", "routing rule #1 matched: country ES (from the phone)")


@pytest.mark.parametrize(("attributes", "state", "employees"), [
    ({"region": "WA"}, "US-WA", None),
    ({"state": "US-NY", "company_size": "350"}, "US-NY", SizeRange(low=350, high=350)),
    ({"employees": "10000+"}, None, SizeRange(low=10000)),
    ({"employees": "10k+"}, None, SizeRange(low=10000)),
    ({"employees": "1.5k"}, None, SizeRange(low=1500, high=1500)),
    ({"employees": "51-200"}, None, SizeRange(low=51, high=200)),
    ({"employees": "lots"}, None, None),        # unreadable: unknown, never an error
])
def test_state_and_size_attributes(attributes: dict[str, str], state: str | None,
                                   employees: SizeRange | None) -> None:
    got = facts_of(lead(country="US", attributes=attributes))
    assert (got.state, got.employees) == (state, employees)


def test_unknown_enrichment_findings_are_not_facts() -> None:
    captured = lead(title="Wizard")
    got = facts_of(captured, enrich(captured))
    assert got.seniority is None and got.department is None


@pytest.mark.parametrize(("text", "band"), [
    ("350", SizeRange(low=350, high=350)), ("200-999", SizeRange(low=200, high=999)),
    (" 1,000 - 4,999 ", SizeRange(low=1000, high=4999)), ("1000+", SizeRange(low=1000)),
])
def test_size_bands_parse(text: str, band: SizeRange) -> None:
    assert SizeRange.parse(text) == band


@pytest.mark.parametrize("text", ["", "big", "500-100", "-5", "1e3"])
def test_bad_size_bands_say_why(text: str) -> None:
    with pytest.raises(ValueError, match="band|employee"):
        SizeRange.parse(text)


def test_tier_priority_takes_the_most_urgent_known_tier() -> None:
    priorities = {"strategic": 0, "key": 1}
    assert tier_priority(priorities, "key", "strategic") == 0
    assert tier_priority(priorities, None, "key") == 1
    assert tier_priority(priorities, "unknown", None) is None


def test_company_size_and_industry_fall_back_to_what_providers_found() -> None:
    found = ProviderFindings(provider="pdl", status="found", fields={"employees": "2500", "industry": "SaaS"})
    quiet = lead(country="us")
    got = facts_of(quiet, enrich(quiet, (found,)))
    assert (got.employees, got.industry) == (SizeRange(low=2500, high=2500), "SaaS")
    # What the lead said wins over the provider.
    said = lead(country="us", attributes={"industry": "Retail"})
    assert facts_of(said, enrich(said, (found,))).industry == "Retail"


def test_capitalised_attribute_names_are_facts_like_lower_case_ones() -> None:
    got = facts_of(lead(country="US", attributes={"Employees": "5000", "Industry": "Software", "State": "CA"}))
    assert (got.employees, got.industry, got.state) == (SizeRange(low=5000, high=5000), "Software", "US-CA")
    rule = TeamRule(team="ent", company_sizes=(SizeRange(low=1000),), industries=("software",), states=("US-CA",))
    assert select_team(facts=got, rules=(rule,), default_team="fallback")[0] == "ent"

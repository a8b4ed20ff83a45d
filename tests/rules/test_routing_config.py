"""The YAML's routing rules become TeamRules; every mistake is named by file, line and path."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from leadflow.errors import ConfigError
from rules.accounts import lead_domains
from rules.capture import CapturedLead, derive_lead_id
from rules.commands import CaptureLead, PutRep, RouteLead
from rules.enrichment import enrich
from rules.routing import Region, SizeRange, TeamRule, facts_of, select_team
from rules.team_selection import tier_priority
from sla.clock import FakeClock
from streams.config import parse_config
from tests.rules._sim import Bus, values

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)

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


# --- the worked example of docs/routing.md ----------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


def _example() -> str:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- routing-example:start -->", 1)[1].split("<!-- routing-example:end -->", 1)[0]
    return block.strip().removeprefix("```yaml").removesuffix("```")


@pytest.mark.parametrize(("lead", "team", "why"), [
    (CapturedLead(email="kim@eu.acme.com", source="web"), "ent-na",
     "account acme.com (Acme) is owned by ana (team ent-na)"),
    (CapturedLead(email="lee@bigsoft.io", source="web", country="US",
                  attributes={"employees": "5000+", "industry": "SaaS"}), "ent-na",
     "routing rule #1 'na-enterprise-software' matched: country US in region NA, employees 5000+ within 1000+, "
     "industry SaaS"),
    (CapturedLead(email="sam@tinyco.com", source="web", country="US", title="VP Sales", attributes={"state": "CA"}),
     "west", "routing rule #2 'west-execs' matched: state US-CA, seniority vp"),
    (CapturedLead(email="ola@shop.ca", source="web", country="CA"), "sdr-na",
     "routing rule #3 'na' matched: country CA in region NA"),
    (CapturedLead(email="jun@corp.jp", source="partner-feed", country="JP"), "partners",
     "routing rule #4 'partners' matched: source partner-feed"),
    (CapturedLead(email="ines@empresa.es", phone="+34612345678", source="web"), "sdr-emea",
     "routing rule #5 'emea' matched: country ES (from the phone) in region EMEA"),
    (CapturedLead(email="max@firma.ch", source="web", country="CH"), "sdr-global",
     "no routing rule matched; default team sdr-global"),
])
def test_the_documented_example_loads_and_routes_as_its_table_says(lead: CapturedLead, team: str, why: str) -> None:
    config = parse_config(_example(), "docs/routing.md")
    policy = config.lead_policy("default")
    accounts = {a.domain: a for a in config.account_list(T0)}
    domains = lead_domains(lead)
    account = next((accounts[d] for d in domains if d in accounts), None)
    got = select_team(facts=facts_of(lead, enrich(lead)), rules=policy.team_rules,
                      default_team=policy.default_team, account=account)
    assert got == (team, why)
    if account is not None:
        assert tier_priority(policy.tier_priorities, account.tier) == 0


@pytest.mark.parametrize("attribute", ["state", "region"])
def test_the_documented_west_coast_exec_is_assigned_to_wes_whichever_attribute_names_the_state(
        attribute: str) -> None:
    """docs/routing.md: sam@tinyco.com, US, state CA, VP Sales -> team west -> Wes (territories US-CA...).

    Team selection and Wes's territory filter must read the state the same way: with ``state: CA``
    the rule matched but Wes refused the lead ("territory US not covered") and it stayed queued.
    """
    config = parse_config(_example(), "docs/routing.md")
    bus = Bus(policy=config.lead_policy("default"), clock=FakeClock(T0))
    for profile in config.rep_profiles(env={}):
        bus.send("rep.commands", profile.rep_id, PutRep(rep_id=profile.rep_id, profile=profile, at=bus.clock.now()))
    lead = CapturedLead(email="sam@tinyco.com", source="web", country="US", title="VP Sales",
                        attributes={attribute: "CA"})
    lead_id = derive_lead_id(email=lead.email, phone=None, source="web", external_id=None)
    sent = bus.send("lead.commands", lead_id, CaptureLead(lead_id=lead_id, capture_id="c1",
                                                          captured_at=bus.clock.now(), lead=lead))
    state = bus.leads[lead_id]
    assert state.team_id == "west" and state.routing == "assigned", [e.kind for e in state.timeline]
    assert state.assignment is not None and state.assignment.rep_id == "wes"
    (route,) = values(sent, "team.commands", RouteLead)
    assert (route.country, route.region) == ("US", "US-CA")
    (wes,) = state.assignment.decision.candidates
    assert wes.eligible and wes.reasons == ()


def test_the_documented_queued_entry_is_what_a_lead_waiting_for_wes_gets() -> None:
    """docs/routing.md step 4: the JSON of a ``queued`` entry, for a seventh west-coast exec (Wes holds 6/6)."""
    text = DOC.read_text(encoding="utf-8")
    documented = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])  # the page's only JSON block
    config = parse_config(_example(), "docs/routing.md")
    bus = Bus(policy=config.lead_policy("default"), clock=FakeClock(T0))
    for profile in config.rep_profiles(env={}):
        bus.send("rep.commands", profile.rep_id, PutRep(rep_id=profile.rep_id, profile=profile, at=bus.clock.now()))
    for i in range(7):
        lead = CapturedLead(email=f"sam{i}@tinyco.com", source="web", country="US", title="VP Sales",
                            attributes={"state": "CA"})
        lead_id = derive_lead_id(email=lead.email, phone=None, source="web", external_id=None)
        bus.send("lead.commands", lead_id, CaptureLead(lead_id=lead_id, capture_id="c1",
                                                       captured_at=bus.clock.now(), lead=lead))
    state = bus.leads[lead_id]
    assert state.routing == "queued"
    entry = state.timeline[-1]
    assert entry.kind == documented["kind"] and entry.detail == documented["detail"]

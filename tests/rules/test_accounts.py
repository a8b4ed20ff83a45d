"""Lead-to-account matching: domain keys, a lead's candidate domains, the account book, the lead's use of it."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from leadflow.errors import ConfigError
from rules import lead
from rules.account_book import MatchAccount, PutAccount, RemoveAccount, apply, capture_outgoing
from rules.accounts import Account, account_domain_problem, lead_domains, normalize_domain, registrable_domain
from rules.capture import CapturedLead, derive_lead_id
from rules.commands import CaptureLead, RouteLead
from rules.lead import LeadPolicy
from rules.routing import TeamRule
from streams.config import parse_config
from tests.rules._sim import T0

ACME = Account(domain="acme.co.uk", name="Acme", owner="ana", team="strategic", tier="strategic", updated_at=T0)


# --- domains ------------------------------------------------------------------------------

@pytest.mark.parametrize(("host", "domain"), [
    ("acme.com", "acme.com"), ("WWW.Acme.COM.", "acme.com"), ("mail.emea.acme.co.uk", "acme.co.uk"),
    ("northwind.example", "northwind.example"), ("bücher.de", "xn--bcher-kva.de"),
    ("shop.blogspot.com", "shop.blogspot.com"),  # a private suffix: each blog is its own company
    ("co.uk", None), ("localhost", None), ("10.0.0.1", None), ("", None),
])
def test_registrable_domain(host: str, domain: str | None) -> None:
    assert registrable_domain(host) == domain


@pytest.mark.parametrize(("raw", "domain"), [
    ("acme.com", "acme.com"), ("https://www.acme.com:443/about?x=1", "acme.com"), ("user@eu.acme.com", "acme.com"),
])
def test_normalize_domain(raw: str, domain: str) -> None:
    assert normalize_domain(raw) == domain


@pytest.mark.parametrize(("raw", "problem"), [
    ("", "a domain is required"), ("co.uk", "not a company's domain"), ("acme corp", "not a domain name"),
    ("127.0.0.1", "not a company's domain"),
])
def test_bad_domains_say_why(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        normalize_domain(raw)


def person(email: str | None = "kim@mail.acme.co.uk", **attributes: str) -> CapturedLead:
    return CapturedLead(email=email, source="web", attributes=attributes)


@pytest.mark.parametrize(("lead_", "domains"), [
    (person(), ("acme.co.uk",)),
    (person(website="https://www.acme.co.uk/"), ("acme.co.uk",)),                 # the same company once
    (person(website="initech.com"), ("acme.co.uk", "initech.com")),               # e-mail first, then website
    (person("kim@gmail.com", website="www.initech.com"), ("initech.com",)),       # free mail never matches
    (person("kim@mailinator.com"), ()),                                           # nor disposable mail
    (person(None, company_website="https://globex.example/x"), ("globex.example",)),
    (person(None, **{"Company Website": "https://globex.example/x"}), ("globex.example",)),  # a CSV header as given
    (person("kim@gmail.com"), ()),
    (person("info@acme.co.uk"), ("acme.co.uk",)),                                 # a role address is the company's
    # A website on a mailbox provider or a shared host names no company (audit s16-dedup #4) ...
    (person("gus@yahoo.com", website="gmail.com"), ()),
    (person("gus@yahoo.com", website="https://www.linkedin.com/in/gus"), ()),
    (person("gus@yahoo.com", website="https://sites.google.com/view/x"), ()),
    (person("gus@yahoo.com", website="facebook.com/gusbakery"), ()),
    (person("gus@yahoo.com", website="https://mailinator.com/"), ()),
    # ... while a later website attribute that is the company's own still counts,
    (person(None, website="linkedin.com/company/initech", company_website="initech.com"), ("initech.com",)),
    # and the e-mail of someone at such a company still matches its account.
    (person("kim@linkedin.com"), ("linkedin.com",)),
])
def test_lead_domains(lead_: CapturedLead, domains: tuple[str, ...]) -> None:
    assert lead_domains(lead_) == domains


@pytest.mark.parametrize(("domain", "kind"), [("gmail.com", "free"), ("hotmail.co.uk", "free"),
                                            ("mailinator.com", "disposable")])
def test_a_mail_providers_domain_cannot_be_an_account(domain: str, kind: str) -> None:
    assert account_domain_problem(domain) == (
        f"{domain} is a {kind} e-mail provider's domain: its addresses belong to anyone, not to one company; "
        "give the company's own domain")


@pytest.mark.parametrize("domain", ["acme.co.uk", "linkedin.com", "google.com"])
def test_a_companys_domain_can_be_an_account(domain: str) -> None:
    assert account_domain_problem(domain) is None


# --- the account book ---------------------------------------------------------------------

def captured(email: str = "kim@acme.co.uk", **attributes: str) -> CaptureLead:
    return CaptureLead(lead_id=derive_lead_id(email=email, phone=None, source="web", external_id=None),
                       capture_id="cap-1", captured_at=T0, lead=CapturedLead(email=email, source="web",
                                                                             attributes=attributes))


def test_a_capture_without_a_company_domain_goes_straight_to_the_lead() -> None:
    capture = captured("kim@gmail.com")
    out = capture_outgoing(capture)
    assert (out.channel, out.key, out.value) == ("lead.commands", capture.lead_id, capture)


def test_a_capture_visits_the_owner_of_its_first_domain() -> None:
    capture = captured(website="initech.com")
    out = capture_outgoing(capture)
    assert (out.channel, out.key) == ("account.commands", "acme.co.uk")
    assert out.value == MatchAccount(domain="acme.co.uk", capture=capture, then=("initech.com",))


def test_put_replace_and_remove() -> None:
    put = apply(None, PutAccount(domain="acme.co.uk", account=ACME, at=T0), T0)
    assert put.account == ACME and put.outgoing == ()
    moved = replace(ACME, owner="ben")
    assert apply(ACME, PutAccount(domain="acme.co.uk", account=moved, at=T0), T0).account == moved
    assert apply(ACME, RemoveAccount(domain="acme.co.uk", at=T0), T0).account is None


def test_a_match_sends_the_capture_on_with_the_account() -> None:
    capture = captured()
    out = apply(ACME, MatchAccount(domain="acme.co.uk", capture=capture, then=("initech.com",)), T0)
    assert out.account is ACME  # unchanged: nothing to write
    (sent,) = out.outgoing
    assert (sent.channel, sent.key) == ("lead.commands", capture.lead_id)
    assert sent.value == replace(capture, account=ACME)


def test_a_miss_tries_the_next_domain_then_gives_up() -> None:
    capture = captured(website="initech.com")
    (hop,) = apply(None, MatchAccount(domain="acme.co.uk", capture=capture, then=("initech.com",)), T0).outgoing
    assert (hop.channel, hop.key, hop.value) == (
        "account.commands", "initech.com", MatchAccount(domain="initech.com", capture=capture))
    (last,) = apply(None, hop.value, T0).outgoing
    assert (last.channel, last.value) == ("lead.commands", capture)


# --- the lead uses the account --------------------------------------------------------------

POLICY = LeadPolicy(default_team="inbound", team_rules=(TeamRule(team="catch-all"),),
                    tier_priorities={"strategic": 0, "A": 1})


def route_of(transition: lead.LeadTransition) -> RouteLead:
    (route,) = [m.value for m in transition.outgoing if isinstance(m.value, RouteLead)]
    return route


def test_a_matched_lead_goes_to_the_owners_team_for_the_owner_first() -> None:
    capture = replace(captured(), account=ACME)
    transition = lead.apply(None, capture, T0, POLICY)
    state = transition.state
    assert state is not None and state.team_id == "strategic" and state.account == ACME
    route = route_of(transition)
    assert (route.team_id, route.account_owner, route.priority) == ("strategic", "ana", 0)
    captured_event = next(m.value for m in transition.outgoing if m.channel == "lead.events")
    assert captured_event["data"]["why_team"] == "account acme.co.uk (Acme) is owned by ana (team strategic)"


def test_without_an_account_the_rules_decide_and_the_priority_is_the_default() -> None:
    transition = lead.apply(None, captured(), T0, POLICY)
    route = route_of(transition)
    assert (route.team_id, route.account_owner) == ("catch-all", None)
    assert route.priority == RouteLead(team_id="x", lead_id="y", route_id="z", requested_at=T0).priority


def test_a_reassignment_keeps_asking_for_the_owner() -> None:
    # Any later route of the cycle (SLA reassign, decline, overflow) still names the owner.
    state = lead.apply(None, replace(captured(), account=ACME), T0, POLICY).state
    assert state is not None
    route = lead.route_command(state, excluded=("ana",)).value
    assert (route.account_owner, route.excluded_reps) == ("ana", ("ana",))


def test_a_touch_without_a_match_keeps_the_account() -> None:
    first = lead.apply(None, replace(captured(), account=ACME), T0, POLICY).state
    again = replace(captured(), capture_id="cap-2", captured_at=T0 + timedelta(minutes=1))
    touched = lead.apply(first, again, T0 + timedelta(minutes=1), POLICY).state
    assert touched is not None and touched.account == ACME


# --- the config -----------------------------------------------------------------------------

GOOD = """\
routing:
  tier_priorities: {strategic: 0}
accounts:
  - {domain: www.acme.co.uk, name: Acme, owner: ana, tier: strategic}
  - {domain: initech.com, owner: zoe, team: partners}
  - {domain: globex.example, team: strategic}
teams:
  - id: strategic
    reps: [{id: ana}]
"""


def test_config_accounts_take_the_owners_team() -> None:
    config = parse_config(GOOD, "t.yaml")
    accounts = {a.domain: a for a in config.account_list(T0)}
    assert accounts["acme.co.uk"] == Account(domain="acme.co.uk", name="Acme", owner="ana", team="strategic",
                                             tier="strategic", updated_at=T0)
    assert accounts["initech.com"].team == "partners"  # an owner who is not in this file: the given team
    assert config.lead_policy("default").tier_priorities == {"strategic": 0}


@pytest.mark.parametrize(("text", "error"), [
    ("accounts:\n  - {domain: co.uk}\n", "t.yaml:2: accounts[0].domain: Value error, 'co.uk' is not a company's domain"),
    ("accounts:\n  - {domain: a.com}\n  - {domain: www.a.com}\n",
     "t.yaml:3: accounts[1].domain: domain a.com is already accounts[0]"),
    ("accounts:\n  - {domain: a.com,\n     owner: zoe}\n",
     "t.yaml:3: accounts[0].owner: rep 'zoe' is in no team of this file; give the account a team"),
    ("teams:\n  - {id: t1, reps: [{id: ana}]}\naccounts:\n  - {domain: a.com, owner: ana, team: t2}\n",
     "t.yaml:4: accounts[0].team: rep 'ana' is in team 't1', not 't2'"),
    ("accounts:\n  - {domain: a.com, colour: red}\n", "t.yaml:2: accounts[0].colour: Extra inputs are not permitted"),
])
def test_config_account_errors_name_file_line_and_path(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yaml")
    assert error in str(caught.value)

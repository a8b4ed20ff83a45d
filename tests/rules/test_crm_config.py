"""The ``crm`` section: an adapter whose credentials are missing from the environment is refused at start."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from leadflow.errors import ConfigError
from streams.config import LeadflowConfig, parse_config

ADAPTERS = {
    "salesforce": ("crm: {adapter: salesforce, salesforce: {login_url: 'https://acme.my.salesforce.com', "
                   "client_id_env: T_SF_ID, client_secret_env: T_SF_SECRET}}",
                   {"T_SF_ID": "id", "T_SF_SECRET": "secret"}),
    "hubspot": ("crm: {adapter: hubspot, hubspot: {token_env: T_HS}}", {"T_HS": "pat-1"}),
    "webhook": ("crm: {adapter: webhook, webhook: {url: 'https://crm.example/hook', secret_env: T_WH}}",
                {"T_WH": "whsec_" + "A" * 43}),
}


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_an_adapter_starts_with_its_credentials_and_is_refused_without_them(adapter: str) -> None:
    text, env = ADAPTERS[adapter]
    config = parse_config(text, "c.yaml")
    assert config.lead_policy("default", env).default_team == "default"
    for name in env:
        with pytest.raises(ConfigError, match=rf"c.yaml:1: crm\.{adapter}\.\w+_env: environment variable {name} is not set"):
            config.lead_policy("default", {k: v for k, v in env.items() if k != name})


def test_no_adapter_needs_no_credentials() -> None:
    assert parse_config("crm: {adapter: none}", "c.yaml").lead_policy("default", {}).recycle_after_s is None


_QUALIFICATION_DOC = Path(__file__).resolve().parents[2] / "docs" / "QUALIFICATION.md"


def _yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_the_crm_example_of_docs_qualification_loads() -> None:
    """The walkthrough's ``recycle_after: 30d`` was refused ("'30d' is not a duration")."""
    (block,) = [b for b in _yaml_blocks(_QUALIFICATION_DOC) if b.startswith("crm:")]
    crm = parse_config(block, "docs/QUALIFICATION.md").crm
    assert crm.recycle_after == 30 * 86400
    assert crm.retry_delays == (5, 30, 120, 600, 1800, 3600)


@pytest.mark.parametrize(("text", "read"), [
    ("crm: {recycle_after: 1d12h}", lambda c: c.crm.recycle_after),
    ("crm: {events_tolerance: 1d 12h}", lambda c: c.crm.events_tolerance),
    ("teams: [{id: t, offer_timeout: 1.5d}]", lambda c: c.teams[0].offer_timeout),
    ("sla: {policies: [{name: p, first_contact: 1.5d}]}", lambda c: c.sla.policies[0].first_contact),
    ("enrichment: {cache: {ttl: 1.5d}}", lambda c: c.enrichment.cache.ttl),
])
def test_every_config_duration_takes_days(text: str, read: Callable[[LeadflowConfig], float]) -> None:
    assert read(parse_config(text, "c.yaml")) == 36 * 3600


def test_a_bad_config_duration_says_which_units_there_are() -> None:
    with pytest.raises(ConfigError, match=r"c.yaml:1: crm.recycle_after: .*'30x' is not a duration: .*'7d'"):
        parse_config("crm: {recycle_after: 30x}", "c.yaml")


@pytest.mark.parametrize("url", ["https://login.salesforce.com", "https://test.salesforce.com/",
                                 "https://LOGIN.salesforce.com:443"])
def test_salesforce_login_url_on_the_generic_login_hosts_is_refused_at_its_line(url: str) -> None:
    """Salesforce's client credentials flow does not work on login.salesforce.com or test.salesforce.com
    (help article 000886201): the token endpoint's 400 dead-lettered every opportunity as refused."""
    text = f"crm:\n  adapter: salesforce\n  salesforce:\n    client_id_env: A\n    login_url: '{url}'\n"
    with pytest.raises(ConfigError, match=r"c.yaml:5: crm\.salesforce\.login_url: .*does not support the OAuth "
                                          r"client credentials flow.*My Domain"):
        parse_config(text, "c.yaml")


def test_salesforce_needs_a_login_url_there_is_no_default() -> None:
    with pytest.raises(ConfigError, match=r"c.yaml:3: crm\.salesforce\.login_url: .*needs login_url.*My Domain"):
        parse_config("crm:\n  adapter: salesforce\n  salesforce: {client_id_env: A}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml:1: crm\.salesforce\.login_url: "):
        parse_config("crm: {adapter: salesforce}\n", "c.yaml")
    assert parse_config("crm: {adapter: hubspot}", "c.yaml").crm.salesforce.login_url is None
    ok = parse_config("crm: {adapter: salesforce, salesforce: {login_url: 'https://acme.my.salesforce.com'}}")
    assert ok.crm.salesforce.login_url == "https://acme.my.salesforce.com"


@pytest.mark.parametrize("version", ["v45.0", "v30.0"])
def test_salesforce_api_versions_before_46_are_refused_at_their_line(version: str) -> None:
    """Up to v45.0 an upsert that updates answers 204 with no body: leadflow never learns the record id."""
    text = f"crm:\n  salesforce:\n    login_url: 'https://acme.my.salesforce.com'\n    api_version: {version}\n"
    with pytest.raises(ConfigError, match=rf"c.yaml:4: crm\.salesforce\.api_version: .*{version} is too old.*v46\.0"):
        parse_config(text, "c.yaml")
    assert parse_config(text.replace(version, "v46.0"), "c.yaml").crm.salesforce.api_version == "v46.0"


def test_the_lead_id_property_is_written_by_default_configurable_and_can_be_turned_off() -> None:
    crm = parse_config("crm: {adapter: none}", "c.yaml").crm
    assert crm.hubspot.lead_id_property == "leadflow_lead_id" and crm.salesforce.lead_id_field == "Leadflow_Lead_Id__c"
    off = parse_config("crm: {hubspot: {lead_id_property: null}, salesforce: {lead_id_field: null}}", "c.yaml").crm
    assert off.hubspot.lead_id_property is None and off.salesforce.lead_id_field is None
    with pytest.raises(ConfigError, match=r"c.yaml:1: crm\.hubspot: .*lead_id_property must differ from id_property"):
        parse_config("crm: {hubspot: {lead_id_property: leadflow_id}}", "c.yaml")
    with pytest.raises(ConfigError, match=r"crm\.salesforce\.lead_id_field: .*pattern"):
        parse_config("crm: {salesforce: {lead_id_field: LeadId}}", "c.yaml")


@pytest.mark.parametrize(("text", "path"), [
    ("scoring:\n  learning:\n    prior_weight: .inf\n", "scoring.learning.prior_weight"),
    ("scoring:\n  learning:\n    prior_weight: .nan\n", "scoring.learning.prior_weight"),
    ("scoring:\n  learning:\n    prior_rate: .nan\n", "scoring.learning.prior_rate"),
    ("scoring:\n  learning:\n    min_deals: .inf\n", "scoring.learning.min_deals"),
    ("scoring:\n  learning:\n    reason_weights: {'no budget': .nan}\n", "scoring.learning.reason_weights.no budget"),
    ("qualification:\n  frameworks:\n  - {name: X, min_met: 1, criteria:\n"
     "    [{key: k, question: q, kind: number, minimum: .inf}]}\n", r"qualification.frameworks[0].criteria[0].minimum"),
    ("qualification:\n  frameworks:\n  - {name: X, min_met: 1, criteria:\n"
     "    [{key: k, question: q, kind: number, minimum: -.inf}]}\n", r"qualification.frameworks[0].criteria[0].minimum"),
])
def test_an_infinite_or_nan_number_is_refused_at_its_line(text: str, path: str) -> None:
    """``prior_weight: .inf`` was taken (it is > 0), and then every win rate was inf/inf and
    scoring raised for every lead with a tally (review s18 F6); a ``.nan`` was refused with a
    message about a bound it did not break."""
    line = text.count("\n")
    with pytest.raises(ConfigError, match=rf"c.yaml:{line}: {re.escape(path)}: Input should be a finite number"):
        parse_config(text, "c.yaml")


def test_finite_learning_numbers_still_load() -> None:
    learning = parse_config("scoring: {learning: {prior_rate: 0.3, prior_weight: 4, reason_weights: {x: 2.5}}}",
                            "c.yaml").scoring.model().learning
    assert (learning.prior_rate, learning.prior_weight, learning.reason_weights["x"]) == (0.3, 4, 2.5)


def test_min_deals_reaches_the_scoring_model_and_defaults_to_every_deal() -> None:
    assert parse_config("scoring: {learning: {min_deals: 5}}", "c.yaml").scoring.model().learning_min_deals == 5
    assert parse_config("scoring: {}", "c.yaml").scoring.model().learning_min_deals == 0
    with pytest.raises(ConfigError, match=r"c.yaml:1: scoring.learning.min_deals: Input should be greater"):
        parse_config("scoring: {learning: {min_deals: -1}}", "c.yaml")

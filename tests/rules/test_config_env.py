"""Every environment variable the config names is checked at the worker's start, and by
``leadflow worker --check-config`` through the same code: all missing ones at once, each at its line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadflow.errors import ConfigError
from streams.app import create_app
from streams.config import LeadflowConfig, parse_config
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET_VALUE = "whsec_" + "c2VjcmV0LXZhbHVlLW5ldmVyLWluLWFuLWVycm9yIQ=="

CONFIG = """\
api_keys:
  - {name: web, key_env: T_WEB_KEY}
crm:
  adapter: salesforce
  salesforce: {login_url: "https://acme.my.salesforce.com", client_id_env: T_SF_ID, client_secret_env: T_SF_SECRET}
  account_executives:
    "*": {webhook_url: "https://chat.example/hooks/ae", webhook_secret_env: T_AE_SECRET}
teams:
  - id: t
    manager: {webhook_url: "https://chat.example/hooks/m", webhook_secret_env: T_MANAGER}
    reps:
      - {id: a, webhook_secret_env: T_REP_SECRET}
      - {id: b, webhook_secret_env: T_REP_SECRET}
providers:
  facebook: {}
  typeform: {secret_env: T_TYPEFORM}
enrichment:
  providers:
    - {name: pdl, kind: pdl_company, api_key_env: T_PDL}
"""

EVERY_VARIABLE = ("T_WEB_KEY", "T_SF_ID", "T_SF_SECRET", "T_AE_SECRET", "T_MANAGER", "T_REP_SECRET", "T_TYPEFORM",
                  "T_PDL", "LEADFLOW_FACEBOOK_APP_SECRET", "LEADFLOW_FACEBOOK_VERIFY_TOKEN")

PROBLEMS = """\
invalid configuration:
  c.yaml:2: api_keys[0].key_env: environment variable T_WEB_KEY is not set
  c.yaml:5: crm.salesforce.client_secret_env: environment variable T_SF_SECRET is not set
  c.yaml:7: crm.account_executives.*.webhook_secret_env: environment variable T_AE_SECRET is not set
  c.yaml:10: teams[0].manager.webhook_secret_env: environment variable T_MANAGER is not set
  c.yaml:12: teams[0].reps[0].webhook_secret_env: environment variable T_REP_SECRET is not set
  c.yaml:13: teams[0].reps[1].webhook_secret_env: environment variable T_REP_SECRET is not set
  c.yaml:15: providers.facebook: environment variable LEADFLOW_FACEBOOK_APP_SECRET is not set
  c.yaml:15: providers.facebook: environment variable LEADFLOW_FACEBOOK_VERIFY_TOKEN is not set
  c.yaml:16: providers.typeform.secret_env: environment variable T_TYPEFORM is not set
  c.yaml:19: enrichment.providers[0].api_key_env: environment variable T_PDL is not set"""


def _env(*, without: tuple[str, ...] = ()) -> dict[str, str]:
    return {name: SECRET_VALUE for name in EVERY_VARIABLE if name not in without}


def test_every_missing_variable_is_listed_at_the_line_naming_it() -> None:
    config = parse_config(CONFIG, "c.yaml")
    with pytest.raises(ConfigError) as refused:
        config.lead_policy("default", {"T_SF_ID": SECRET_VALUE})
    assert str(refused.value) == PROBLEMS


def test_with_every_variable_set_the_policy_is_built_with_their_values() -> None:
    config = parse_config(CONFIG, "c.yaml")
    policy = config.lead_policy("default", _env())
    assert policy.managers["t"].secret == SECRET_VALUE and policy.account_executives["*"].secret == SECRET_VALUE
    assert [p.webhook_secret for p in config.rep_profiles(_env())] == [SECRET_VALUE, SECRET_VALUE]


@pytest.mark.parametrize("name", EVERY_VARIABLE)
def test_each_variable_alone_is_found_and_no_value_is_shown(name: str) -> None:
    config = parse_config(CONFIG, "c.yaml")
    with pytest.raises(ConfigError) as refused:
        config.check_env(_env(without=(name,)))
    message = str(refused.value)
    assert f"environment variable {name} is not set" in message
    assert message.count("\n") == (2 if name == "T_REP_SECRET" else 1)  # reps a and b share it
    assert SECRET_VALUE not in message


def test_an_empty_variable_counts_as_unset() -> None:
    with pytest.raises(ConfigError, match=r"c.yaml:2: api_keys\[0\]\.key_env: environment variable T_WEB_KEY"):
        parse_config(CONFIG, "c.yaml").check_env({**_env(), "T_WEB_KEY": ""})


def test_a_config_built_in_code_names_the_section() -> None:
    config = LeadflowConfig.model_validate({"api_keys": [{"name": "web", "key_env": "T_WEB_KEY"}]})
    with pytest.raises(ConfigError, match=r"^invalid configuration:\n  api_keys: environment variable "
                                          r"T_WEB_KEY is not set$"):
        config.check_env({})


def test_where_a_config_came_from_does_not_make_it_differ() -> None:
    assert parse_config(CONFIG, "c.yaml") == parse_config(CONFIG, "d.yaml")
    assert parse_config("") == LeadflowConfig()


# --- the worker's start and --check-config --------------------------------------------------------

@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    return path


def _problems_in(message: str, config_file: Path) -> str:
    return message.replace(str(config_file), "c.yaml")


def test_the_worker_refuses_to_start_listing_every_one(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EVERY_VARIABLE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("T_SF_ID", SECRET_VALUE)
    with pytest.raises(ConfigError) as refused:
        create_app(Settings.from_env({"LEADFLOW_CONFIG": str(config_file), "LEADFLOW_STORE": "memory"}))
    assert _problems_in(str(refused.value), config_file) == PROBLEMS


def _check_config(config_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_") and k not in EVERY_VARIABLE}
    return subprocess.run([sys.executable, "-m", "leadflow", "worker", "--config", str(config_file), "--check-config"],
                          env={**keep, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_check_config_lists_every_problem_and_exits_2(config_file: Path) -> None:
    done = _check_config(config_file, {"T_SF_ID": SECRET_VALUE})
    assert done.returncode == 2, done.stderr
    assert _problems_in(done.stderr, config_file) == f"leadflow: {PROBLEMS}\n"
    assert "config OK" not in done.stdout


def test_check_config_passes_what_the_worker_accepts(config_file: Path) -> None:
    done = _check_config(config_file, _env())
    assert (done.returncode, done.stdout) == (0, "config OK: 1 team(s), 2 rep(s), 1 API key(s)\n"), done.stderr


def test_sources_in_the_config_compare_with_leads_in_their_canonical_spelling() -> None:
    # Leads carry their source lower-cased (rules.capture.canonical_source); the config may not.
    config = parse_config("""\
api_keys:
  - {name: WebForm, key_env: T_WEB_KEY}
marketing:
  sources: [{name: Webinar, monthly_spend: 100}]
scoring:
  source: {Partner-Feed: 12}
  hot_sources: [Contact-Sales]
sla:
  policies:
    - {name: fast, first_contact: 1m, sources: [Chat]}
""", "c.yaml")
    assert config.source_spend() == {"webinar": (100.0, "USD")}
    assert config.metric_sources() == {"webform", "webinar"}
    model = config.scoring.model()
    assert model.source["partner-feed"] == 12 and "Partner-Feed" not in model.source
    assert model.hot_sources == {"contact-sales"}
    (policy,) = [p for p in config.sla.policies if p.name == "fast"]
    assert policy.to_policy().matches(team="t", source="chat", tier=None)

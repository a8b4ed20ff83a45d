"""Every webhook the YAML configures (reps', managers', account executives', the generic CRM's) is
validated as the API validates a rep's: URL and ``whsec_`` secret, in the file or in the variable it
names; a rep's URL needs its secret (exactly one of ``webhook_secret``, ``webhook_secret_env``)."""
from __future__ import annotations

import pytest

from leadflow.errors import ConfigError
from streams.config import parse_config

GOOD_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    return str(caught.value)


def test_a_rep_with_a_url_and_no_secret_is_refused_at_the_url() -> None:
    # Accepted before: the rep got leads and was never notified (no log, no metric).
    problem = _refused('teams:\n  - id: t\n    reps:\n      - id: a\n        webhook_url: "https://h.example/a"\n')
    assert problem.startswith("invalid configuration:\n  c.yaml:5: teams[0].reps[0].webhook_url: ")
    assert "set webhook_secret_env" in problem


def test_a_rep_with_both_secrets_is_refused_as_a_manager_is() -> None:
    for where, entry in (("teams[0].reps[0]", "reps:\n      - {id: a, webhook_url: \"https://h.example/a\", "),
                         ("teams[0].manager", "manager: {webhook_url: \"https://h.example/m\", ")):
        problem = _refused(f"teams:\n  - id: t\n    {entry}webhook_secret: {GOOD_SECRET}, webhook_secret_env: X}}\n")
        assert f"{where}" in problem and "give exactly one of webhook_secret, webhook_secret_env" in problem


@pytest.mark.parametrize(("entry", "path", "says"), [
    ('manager: {webhook_url: "https://h.example/hooks/manager", webhook_secret: "hunter2"}',
     "teams[0].manager.webhook_secret", "webhook secret must start with 'whsec_'"),
    ('manager: {webhook_url: "not a url", webhook_secret_env: M}', "teams[0].manager.webhook_url", "URL"),
    ('manager: {webhook_url: "https://u:p@h.example/m", webhook_secret_env: M}', "teams[0].manager.webhook_url",
     "must not contain credentials"),
])
def test_a_manager_webhook_is_validated_as_a_reps(entry: str, path: str, says: str) -> None:
    problem = _refused(f"teams:\n  - id: t\n    {entry}\n")
    assert f"c.yaml:3: {path}: " in problem and says in problem
    assert "hunter2" not in problem


@pytest.mark.parametrize(("crm", "path"), [
    ('account_executives:\n    "*": {webhook_url: "https://u:p@h.example/ae", webhook_secret_env: AE}',
     'crm.account_executives.*.webhook_url'),
    ('adapter: webhook\n  webhook: {url: "https://u:p@h.example/crm", secret_env: CRM}', "crm.webhook.url"),
])
def test_crm_webhook_urls_are_validated_as_a_reps(crm: str, path: str) -> None:
    problem = _refused(f"crm:\n  {crm}\n")
    assert f": {path}: " in problem and "must not contain credentials" in problem


ENV_SECRETS = f"""\
crm:
  adapter: webhook
  webhook: {{url: "https://h.example/crm", secret_env: T_CRM}}
  account_executives:
    "*": {{webhook_url: "https://h.example/ae", webhook_secret_env: T_AE}}
teams:
  - id: t
    manager: {{webhook_url: "https://h.example/m", webhook_secret_env: T_MANAGER}}
    reps:
      - {{id: a, webhook_url: "https://h.example/a", webhook_secret_env: T_REP}}
"""


@pytest.mark.parametrize(("variable", "who"), [
    ("T_MANAGER", "team 't' manager"), ("T_REP", "rep 'a'"), ("T_AE", "crm.account_executives.*"),
    ("T_CRM", "crm.webhook"),
])
def test_a_secret_in_the_environment_is_validated_at_start(variable: str, who: str) -> None:
    env = {name: GOOD_SECRET for name in ("T_CRM", "T_AE", "T_MANAGER", "T_REP")}
    config = parse_config(ENV_SECRETS, "c.yaml")
    config.lead_policy("t", env)
    config.rep_profiles(env)
    env[variable] = "hunter2"  # every escalation to it was dead-lettered: "must start with 'whsec_'"
    with pytest.raises(ConfigError) as caught:
        config.lead_policy("t", env)
        config.rep_profiles(env)
    assert str(caught.value) == f"{who}: environment variable {variable}: webhook secret must start with 'whsec_'"

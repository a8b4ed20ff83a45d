"""The ``crm`` section: an adapter whose credentials are missing from the environment is refused at start."""
from __future__ import annotations

import pytest

from leadflow.errors import ConfigError
from streams.config import parse_config

ADAPTERS = {
    "salesforce": ("crm: {adapter: salesforce, salesforce: {client_id_env: T_SF_ID, client_secret_env: T_SF_SECRET}}",
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
        with pytest.raises(ConfigError, match=f"crm.{adapter}: environment variable {name} is not set"):
            config.lead_policy("default", {k: v for k, v in env.items() if k != name})


def test_no_adapter_needs_no_credentials() -> None:
    assert parse_config("crm: {adapter: none}", "c.yaml").lead_policy("default", {}).recycle_after_s is None

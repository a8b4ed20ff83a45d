"""API keys in the YAML config and in ``LEADFLOW_API_KEYS``: their scopes, checked at start."""
from __future__ import annotations

import hashlib

import pytest

from connectors.auth import ApiKey, Keyring
from leadflow.errors import ConfigError
from streams.config import parse_config
from streams.settings import Settings

KEY = "key-web-form-0123456789"
DIGEST = hashlib.sha256(KEY.encode()).hexdigest()


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    return str(caught.value)


def test_a_keys_scopes_come_from_the_config() -> None:
    config = parse_config(f"""\
api_keys:
  - {{name: web-form, key_sha256: {DIGEST}, scopes: [capture]}}
  - name: sdr-tool
    key_env: T_SDR_KEY
    scopes: [read, work]
  - {{name: legacy, key: key-legacy-0123456789}}
""", "c.yaml")
    keys = config.key_digests({"T_SDR_KEY": "key-sdr-tool-0123456789"})
    assert keys[DIGEST] == ApiKey("web-form", frozenset({"capture"}))
    assert ApiKey("sdr-tool", frozenset({"read", "work"})) in keys.values()
    assert ApiKey("legacy", None) in keys.values()  # no scopes: all of them, as before scopes existed
    caller = Keyring(keys).authenticate(f"Bearer {KEY}")
    assert caller is not None and caller.allows("capture") and not caller.allows("read")


def test_an_unknown_or_empty_scope_list_is_refused_at_its_line() -> None:
    problem = _refused(f"api_keys:\n  - name: web\n    key_sha256: {DIGEST}\n    scopes: [capture, reed]\n")
    assert "c.yaml:4: api_keys[0].scopes[1]: Input should be 'capture', 'read', 'work' or 'admin'" in problem
    problem = _refused(f"api_keys:\n  - {{name: web, key_sha256: {DIGEST}, scopes: []}}\n")
    assert "c.yaml:2: api_keys[0].scopes: " in problem and "at least 1 item" in problem
    problem = _refused(f"api_keys:\n  - {{name: web, key_sha256: {DIGEST}, scopes: capture}}\n")
    assert "c.yaml:2: api_keys[0].scopes: " in problem


def test_leadflow_api_keys_take_scopes_after_a_colon() -> None:
    settings = Settings.from_env({"LEADFLOW_API_KEYS": f"{KEY}:capture, key-sdr-tool-0123456789:read+work,"
                                                       "key-legacy-0123456789"})
    assert [(k.reveal(), k.scopes) for k in settings.api_keys] == [
        (KEY, frozenset({"capture"})), ("key-sdr-tool-0123456789", frozenset({"read", "work"})),
        ("key-legacy-0123456789", None)]


@pytest.mark.parametrize("value", [f"{KEY}:reed", f"{KEY}:capture+", f"{KEY}:", ":capture"])
def test_leadflow_api_keys_with_a_bad_scope_list_stop_the_worker_without_showing_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"LEADFLOW_API_KEYS": f"key-other-0123456789, {value}"})
    message = str(caught.value)
    assert message.startswith("environment variable LEADFLOW_API_KEYS: key 2: after its last ':' expected scopes")
    assert KEY not in message and "key-other" not in message


# --- at least 16 characters, everywhere ------------------------------------------------------


def test_a_literal_key_shorter_than_16_characters_is_refused_at_its_line() -> None:
    problem = _refused("api_keys:\n  - name: web\n    key: change-me-please\n  - {name: b, key: change-me}\n")
    assert "c.yaml:4: api_keys[1].key: String should have at least 16 characters" in problem
    problem = _refused('api_keys:\n  - {name: web, key: "t\\u00e9l\\u00e9phone-0123456789"}\n')
    assert "c.yaml:2: api_keys[0].key: " in problem and "the key must be printable ASCII" in problem


def test_a_key_env_value_shorter_than_16_characters_stops_the_worker_at_the_line_naming_it() -> None:
    config = parse_config(f"""\
api_keys:
  - {{name: web, key_sha256: {DIGEST}}}
  - name: partner
    key_env: T_PARTNER_KEY
""", "c.yaml")
    with pytest.raises(ConfigError) as caught:
        config.lead_policy("default", {"T_PARTNER_KEY": "short-secret"})
    assert str(caught.value) == ("invalid configuration:\n  c.yaml:4: api_keys[1].key_env: the key in environment "
                                 "variable T_PARTNER_KEY has 12 characters; at least 16 are needed "
                                 "(e.g. `openssl rand -hex 24`)")
    config.lead_policy("default", {"T_PARTNER_KEY": "a-key-of-16-char"})


@pytest.mark.parametrize("value", ["change-me", "key-ok-0123456789,short"])
def test_leadflow_api_keys_shorter_than_16_characters_stop_the_worker_without_showing_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"LEADFLOW_API_KEYS": value})
    message = str(caught.value)
    assert message.startswith("environment variable LEADFLOW_API_KEYS: key ") and "at least 16" in message
    assert "change-me" not in message and "short" not in message

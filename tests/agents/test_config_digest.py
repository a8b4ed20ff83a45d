"""Every worker exports a digest of its config, so a deployment whose workers route by different
configs shows it (``leadflow_config_info``, the alert ``LeadflowConfigDiffers``)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from connectors.lead_input import configure_lead_ids
from streams.app import config_digest, create_app
from streams.config import parse_config
from streams.settings import Settings

_CONFIG = """\
# the EMEA desk
routing:
  default_team: emea
  rules:
    - {team: emea, countries: [DE, FR]}
teams:
  - id: emea
    reps:
      - {id: ana, capacity: 5, webhook_url: "https://hooks.example.com/ana",
         webhook_secret: "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="}
"""

_SAME_REWRITTEN = """\
teams:
  - reps:
      - webhook_url: https://hooks.example.com/ana
        webhook_secret: whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=
        capacity: 5
        id: 'ana'
    id: emea
routing:
  rules:
    - countries: ["DE", "FR"]
      team: emea
  default_team: "emea"
"""


def test_the_same_config_laid_out_otherwise_has_the_same_digest() -> None:
    digest = config_digest(parse_config(_CONFIG))
    assert len(digest) == 12 and int(digest, 16) >= 0
    assert config_digest(parse_config(_SAME_REWRITTEN)) == digest


@pytest.mark.parametrize("change", [("capacity: 5", "capacity: 6"), ("[DE, FR]", "[DE]"),
                                    ("default_team: emea", "default_team: other")])
def test_any_change_of_substance_changes_the_digest(change: tuple[str, str]) -> None:
    before, after = change
    assert config_digest(parse_config(_CONFIG.replace(before, after))) != config_digest(parse_config(_CONFIG))


def test_the_worker_exports_its_digest_and_logs_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "teams.yaml"
    path.write_text(_CONFIG)
    with caplog.at_level(logging.INFO, logger="streams.app"):
        app = create_app(Settings.from_env({"LEADFLOW_CONFIG": str(path)}))
    digest = config_digest(parse_config(_CONFIG))
    registry = app.runtime.metrics.registry
    assert registry.get_sample_value("leadflow_config_info", {"digest": digest}) == 1.0
    assert f"1 team(s), 1 rep(s), digest {digest}" in caplog.text


def test_a_worker_without_a_config_file_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="streams.app"):
        create_app(Settings.from_env({}))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "streams.app"]
    assert len(warnings) == 2
    assert "no config file (LEADFLOW_CONFIG or --config)" in warnings[0]
    assert "LEADFLOW_LEAD_ID_KEY is not set" in warnings[1]  # ids are plain hashes of e-mails


def test_a_worker_with_a_lead_id_key_does_not_warn_about_it(caplog: pytest.LogCaptureFixture) -> None:
    try:
        with caplog.at_level(logging.INFO, logger="streams.app"):
            create_app(Settings.from_env({"LEADFLOW_LEAD_ID_KEY": "0123456789abcdef" * 4}))
    finally:
        configure_lead_ids(None)  # the key is the process's: later tests derive plain ids
    assert not any("LEADFLOW_LEAD_ID_KEY" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert any(r.getMessage().startswith("lead ids: an HMAC with LEADFLOW_LEAD_ID_KEY, fingerprint ")
               for r in caplog.records)


def test_each_worker_shows_its_lead_id_key_fingerprint_never_the_key() -> None:
    from connectors.lead_input import lead_id_key_fingerprint
    from prometheus_client import generate_latest

    key = "0123456789abcdef" * 4
    try:
        app = create_app(Settings.from_env({"LEADFLOW_LEAD_ID_KEY": key}))
    finally:
        configure_lead_ids(None)
    exposition = generate_latest(app.runtime.metrics.registry).decode()
    fingerprint = lead_id_key_fingerprint(key)
    assert f'leadflow_lead_id_key_info{{fingerprint="{fingerprint}"}} 1.0' in exposition
    assert key not in exposition and len(fingerprint) == 8
    assert lead_id_key_fingerprint("f" * 64) != fingerprint and lead_id_key_fingerprint(None) == "none"
    plain = create_app(Settings.from_env({})).runtime.metrics.registry
    assert plain.get_sample_value("leadflow_lead_id_key_info", {"fingerprint": "none"}) == 1.0


@pytest.mark.parametrize(("env", "warns"), [
    ({"LEADFLOW_BROKER": "kafka://kafka-1.internal:9092"}, True),  # another host, loopback web host
    ({"LEADFLOW_BROKER": "kafka://kafka-1.internal:9092", "LEADFLOW_WEB_HOST": "10.0.3.7"}, False),
    ({}, False),  # all on this host: the local stack, a demo
])
def test_a_loopback_web_host_beside_a_remote_broker_is_named(caplog: pytest.LogCaptureFixture,
                                                             env: dict[str, str], warns: bool) -> None:
    with caplog.at_level(logging.INFO, logger="streams.app"):
        create_app(Settings.from_env(env))
    named = [r for r in caplog.records if r.levelno == logging.WARNING and "LEADFLOW_WEB_HOST" in r.getMessage()]
    assert bool(named) is warns

"""``leadflow_api_auth_failures_total``: every request refused at authentication counted once, by why.

Before it, a key guesser or a client with a revoked key showed only as 401s and 429s among all
of ``leadflow_http_requests_total`` (the per-key rate limit's 429s included).
"""
from __future__ import annotations

from prometheus_client import generate_latest

from ops.metrics import AUTH_FAILURE_REASONS, PROVIDER_UNAVAILABLE_REASONS, Metrics
from tests.connectors.test_api import error_of, sample
from tests.connectors.test_api_auth_block import CountingRedis, Serve
from tests.connectors.test_api_scopes import KEYRING, bearer

# The fixture, for this module's tests.
from tests.connectors.test_api_auth_block import serve  # noqa: F401

WRONG_KEY = "wrong-key-0000-xxxxxxxx"


def _counts(metrics: Metrics) -> dict[str, float]:
    return {reason: sample(metrics, "leadflow_api_auth_failures_total", reason=reason) for reason in AUTH_FAILURE_REASONS}


async def test_each_refusal_is_counted_once_by_its_reason(serve: Serve, metrics: Metrics) -> None:
    client = await serve(CountingRedis(), per_minute=2)
    await error_of(await client.get("/v1/teams/emea"), 401, "unauthorized")
    assert _counts(metrics) == {"missing_key": 1, "invalid_key": 0, "scope_refused": 0, "blocked": 0}
    await error_of(await client.get("/v1/teams/emea", headers=bearer("web-form")), 403, "forbidden")
    assert _counts(metrics) == {"missing_key": 1, "invalid_key": 0, "scope_refused": 1, "blocked": 0}
    for _ in range(2):
        await error_of(await client.get("/v1/teams/emea", headers={"Authorization": f"Bearer {WRONG_KEY}"}), 401)
    assert _counts(metrics) == {"missing_key": 1, "invalid_key": 2, "scope_refused": 1, "blocked": 0}
    # The wrong key over the limit and the right key after it are answered 429: blocked, not invalid.
    await error_of(await client.get("/v1/teams/emea", headers={"Authorization": f"Bearer {WRONG_KEY}"}), 429)
    await error_of(await client.get("/v1/teams/emea", headers=bearer("sdr-tool")), 429)
    assert _counts(metrics) == {"missing_key": 1, "invalid_key": 2, "scope_refused": 1, "blocked": 2}
    # Neither the key nor the address is a label: the reason is all there is.
    text = generate_latest(metrics.registry).decode()
    assert WRONG_KEY not in text and "127.0.0.1" not in text
    assert all(key not in text for key, _ in KEYRING.values())


async def test_a_key_over_its_own_rate_limit_is_no_authentication_failure(
        serve: Serve, metrics: Metrics) -> None:
    client = await serve(CountingRedis(), rate_limits={"web-form": 1})
    assert (await client.post("/v1/leads", json={"email": "a@example.com"}, headers=bearer("web-form"))).status == 202
    await error_of(await client.post("/v1/leads", json={"email": "b@example.com"}, headers=bearer("web-form")), 429)
    assert set(_counts(metrics).values()) == {0}


def test_the_counters_an_alert_reads_start_at_zero() -> None:
    text = generate_latest(Metrics().registry).decode().splitlines()
    for reason in AUTH_FAILURE_REASONS:
        assert f'leadflow_api_auth_failures_total{{reason="{reason}"}} 0.0' in text
    for provider, reasons in PROVIDER_UNAVAILABLE_REASONS.items():
        for reason in reasons:
            assert f'leadflow_provider_webhooks_unavailable_total{{provider="{provider}",reason="{reason}"}} 0.0' in text

"""HTTP enrichment: the provider over real HTTP (a People Data Labs stand-in), the config, and the
batch enricher's budget, cache, dedup, degraded modes and metrics."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from connectors.enrichment import Answer, EnrichmentCache, EnrichmentConfig, Enricher, HttpProvider, ProviderError
from connectors.enrichment.http import extract
from connectors.enrichment.pdl import PDL_FIELDS, pdl_url
from leadflow.errors import ConfigError
from rules.capture import CapturedLead
from rules.enrichment import ProviderFindings, enrich
from streams.config import parse_config
from tests.connectors.pdl_standin import NORTHWIND, PdlStandIn

KEY = "pdl-test-key-not-a-secret-0123"


@pytest.fixture
async def pdl() -> AsyncIterator[PdlStandIn]:
    standin = PdlStandIn(KEY)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def provider(pdl: PdlStandIn, session: aiohttp.ClientSession, key: str = KEY) -> HttpProvider:
    return HttpProvider(name="pdl", url=pdl_url(f"{pdl.url}/v5/company/enrich"), fields=PDL_FIELDS,
                        session=session, auth_header="X-Api-Key", auth_value=key)


def lead(email: str = "maria@northwind.example", **kw: Any) -> CapturedLead:
    return CapturedLead(email=email, source="web", **kw)


# --- the HTTP provider, over real HTTP --------------------------------------------------------

async def test_a_match_maps_the_documented_fields(pdl: PdlStandIn, session: aiohttp.ClientSession) -> None:
    answer = await provider(pdl, session).lookup("northwind.example")
    assert answer.found
    assert answer.fields == {
        "company_name": "Northwind Traders", "company_size": "201-500", "employees": "312",
        "industry": "wholesale", "founded": "1998", "company_type": "private",
        "company_country": "united states", "company_region": "washington", "company_locality": "seattle",
        "company_linkedin": "linkedin.com/company/northwind-traders",
    }  # ticker is null in the record: absent, not "None"
    assert pdl.seen_keys == [KEY] and pdl.calls["northwind.example"] == 1


async def test_no_match_is_an_answer_not_an_error(pdl: PdlStandIn, session: aiohttp.ClientSession) -> None:
    assert await provider(pdl, session).lookup("unknown.example") == Answer(found=False)


@pytest.mark.parametrize("status", [401, 500, 429])
async def test_failures_are_provider_errors_that_name_neither_key(
    pdl: PdlStandIn, session: aiohttp.ClientSession, status: int
) -> None:
    if status == 401:
        p = provider(pdl, session, key="wrong-key-zzz")
    else:
        pdl.fail_with, p = status, provider(pdl, session)
    with pytest.raises(ProviderError, match=f"HTTP {status}") as caught:
        await p.lookup("northwind.example")
    assert "northwind" not in str(caught.value) and KEY not in str(caught.value) and "wrong-key" not in str(caught.value)
    assert KEY not in repr(p)


async def test_an_unreachable_provider_is_a_provider_error(session: aiohttp.ClientSession) -> None:
    from tests.integration.harness import free_port
    p = HttpProvider(name="gone", url=f"http://127.0.0.1:{free_port()}/x?d={{domain}}", fields={"a": ("a",)},
                     session=session)
    with pytest.raises(ProviderError, match="could not be reached"):
        await p.lookup("northwind.example")


def test_the_key_goes_in_the_header_and_the_lookup_key_is_url_encoded() -> None:
    p = HttpProvider(name="p", url="https://api.example/v1/people?email={email}", fields={"a": ("a",)},
                     session=None, auth_header="Authorization", auth_value="Bearer s3cret")  # type: ignore[arg-type]
    assert p.kind == "email"
    assert p.url_for("a+b@x.example&admin=1") == "https://api.example/v1/people?email=a%2Bb%40x.example%26admin%3D1"
    assert "s3cret" not in p.url_for("x") and "s3cret" not in repr(p)


def test_extract_takes_the_first_usable_path_as_text() -> None:
    record = {"a": {"b": None, "c": 2.0}, "flag": True, "tags": ["x", 3, {"no": 1}, " y "], "long": "z" * 500,
              "blank": "  ", "obj": {"k": 1}}
    got = extract(record, {"one": ("a.b", "a.c"), "flag": ("flag",), "tags": ("tags",), "long": ("long",),
                           "none": ("blank", "obj", "missing.path"), "first": ("tags.0",)})
    assert got == {"one": "2", "flag": "true", "tags": "x, 3, y", "long": "z" * 200, "first": "x"}


# --- configuration ------------------------------------------------------------------------------

def test_config_errors_name_the_file_and_line() -> None:
    text = """enrichment:
  budget: 20s
  providers:
    - {name: pdl, kind: pdl_company}
    - name: firmo
      url: "https://api.example/v1?d={domain}&e={email}"
      fields: {company_name: name}
    - {name: Bad Name, url: "https://api.example/{domain}", fields: {a: b}}
    - {name: nofields, url: "https://api.example/{domain}"}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "teams.yaml")
    message = str(caught.value)
    assert "teams.yaml:2: enrichment.budget" in message
    assert "teams.yaml:4: enrichment.providers[0]" in message and "api_key_env" in message
    assert "teams.yaml:5: enrichment.providers[1]" in message and "{domain}, {email}" in message
    assert "enrichment.providers[2].name" in message
    assert "teams.yaml:9: enrichment.providers[3]" in message and "needs fields" in message


def test_durations_and_defaults() -> None:
    config = parse_config("enrichment:\n  budget: 250ms\n  cache: {ttl: 7d, negative_ttl: 12h}\n").enrichment
    assert (config.budget, config.cache.ttl, config.cache.negative_ttl) == (0.25, 7 * 86400, 12 * 3600)
    assert parse_config("").enrichment.providers == ()
    assert parse_config("").enrichment.build({}, session=None, redis=None, prefix="x:") is None  # type: ignore[arg-type]


def test_api_keys_come_only_from_the_environment() -> None:
    config = EnrichmentConfig.model_validate(
        {"providers": [{"name": "pdl", "kind": "pdl_company", "api_key_env": "PDL_KEY_FOR_TEST"}]})
    with pytest.raises(ConfigError, match=r"\$PDL_KEY_FOR_TEST, which is not set"):
        config.build({}, session=None, redis=None, prefix="x:")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'pdl' reads its API key from \$PDL_KEY_FOR_TEST, which is not set"):
        config.check_env({"PDL_KEY_FOR_TEST": ""})
    config.check_env({"PDL_KEY_FOR_TEST": KEY})
    built = config.build({"PDL_KEY_FOR_TEST": KEY}, session=None, redis=None, prefix="x:")  # type: ignore[arg-type]
    assert built is not None and built.providers == ("pdl",) and KEY not in repr(vars(built))
    with pytest.raises(Exception, match="extra"):
        EnrichmentConfig.model_validate({"providers": [{"name": "p", "url": "https://a/{domain}", "fields": {"a": "b"},
                                                        "api_key": KEY}]})  # a key in the file is refused


# --- the enricher ---------------------------------------------------------------------------------

class FakeProvider:
    def __init__(self, name: str = "fake", *, delay_s: float = 0.0, found: bool = True, fail: bool = False) -> None:
        self.name, self.kind = name, "domain"
        self.delay_s, self.found, self.fail = delay_s, found, fail
        self.calls: list[str] = []

    async def lookup(self, key: str) -> Answer:
        self.calls.append(key)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ProviderError(f"{self.name} answered HTTP 503")
        return Answer(found=self.found, fields={"company_name": key.split(".")[0].title()} if self.found else {})


class MemoryRedis:
    """The slice of ``redis.asyncio.Redis`` the cache uses (MGET, pipelined SET with EX)."""

    def __init__(self, down: bool = False) -> None:
        self.data: dict[str, bytes] = {}
        self.ttls: dict[str, int] = {}
        self.down = down

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        if self.down:
            raise RedisConnectionError("Connection refused")
        return [self.data.get(k) for k in keys]

    def pipeline(self, transaction: bool = True) -> MemoryRedis._Pipe:
        return MemoryRedis._Pipe(self)

    class _Pipe:
        def __init__(self, redis: MemoryRedis) -> None:
            self.redis = redis
            self.queued: list[tuple[str, bytes, int]] = []

        async def __aenter__(self) -> MemoryRedis._Pipe:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        def set(self, key: str, value: bytes, ex: int) -> None:
            self.queued.append((key, value, ex))

        async def execute(self) -> list[bool]:
            if self.redis.down:
                raise RedisConnectionError("Connection refused")
            for key, value, ex in self.queued:
                self.redis.data[key], self.redis.ttls[key] = value, ex
            return [True] * len(self.queued)


def enricher(*providers: FakeProvider, redis: MemoryRedis | None = None, budget_s: float = 0.3,
             outcomes: list[tuple[str, str]] | None = None, degraded: list[str] | None = None,
             **kw: Any) -> Enricher:
    cache = EnrichmentCache(redis, prefix="t:", ttl_s=3600, negative_ttl_s=60) if redis is not None else None  # type: ignore[arg-type]
    return Enricher(list(providers), cache, budget_s=budget_s,
                    on_lookup=lambda p, o: (outcomes if outcomes is not None else []).append((p, o)),
                    on_cache_degraded=lambda op: (degraded if degraded is not None else []).append(op), **kw)


async def test_found_fields_ride_on_each_lead_and_merge_into_its_enrichment() -> None:
    fast, outcomes = FakeProvider(), []  # type: ignore[var-annotated]
    batch = await enricher(fast, redis=MemoryRedis(), outcomes=outcomes).enrich(
        [lead(), lead("ana@gmail.com"), lead("x@acme.example", attributes={"website": "https://www.acme.example/x"})])
    assert batch.findings[0] == (ProviderFindings(provider="fake", status="found", fields={"company_name": "Northwind"}),)
    assert batch.findings[1] == ()  # a free-mail address has no company domain to ask about
    assert fast.calls == ["northwind.example", "acme.example"] and outcomes == [("fake", "miss")] * 2
    enrichment = enrich(lead(), batch.findings[0])
    assert enrichment.provided == {"company_name": "Northwind"}
    assert "fake: company_name" in enrichment.reasons
    # A later touch whose lookup timed out keeps what was found before.
    later = enrich(lead(), (ProviderFindings(provider="fake", status="timeout"),), previous=enrichment)
    assert later.provided == {"company_name": "Northwind"} and "fake: no answer within the time budget" in later.reasons


async def test_a_slow_provider_never_holds_the_batch_past_the_budget() -> None:
    slow, fast, outcomes = FakeProvider("slow", delay_s=5.0), FakeProvider("fast"), []  # type: ignore[var-annotated]
    started = time.monotonic()
    batch = await enricher(slow, fast, budget_s=0.2, outcomes=outcomes).enrich([lead(), lead("b@acme.example")])
    elapsed = time.monotonic() - started
    assert elapsed < 0.2 + 0.15, f"the batch waited {elapsed:.2f} s for a 0.2 s budget"
    assert [f.status for f in batch.findings[0]] == ["timeout", "found"]
    assert sorted(outcomes) == sorted([("slow", "timeout")] * 2 + [("fast", "miss")] * 2)


async def test_each_key_is_asked_once_per_batch_and_parallelism_is_bounded() -> None:
    class Counting(FakeProvider):
        in_flight = peak = 0

        async def lookup(self, key: str) -> Answer:
            Counting.in_flight += 1
            Counting.peak = max(Counting.peak, Counting.in_flight)
            try:
                return await super().lookup(key)
            finally:
                Counting.in_flight -= 1

    p = Counting(delay_s=0.02)
    leads = [lead(f"p{i}@c{i % 10}.example") for i in range(40)]
    batch = await enricher(p, parallelism=3, budget_s=2.0).enrich(leads)
    assert sorted(p.calls) == sorted(f"c{i}.example" for i in range(10)) and Counting.peak <= 3
    assert all(f[0].status == "found" for f in batch.findings)


async def test_a_cache_hit_avoids_a_second_call_and_no_record_is_cached_too() -> None:
    redis, p, outcomes = MemoryRedis(), FakeProvider(), []  # type: ignore[var-annotated]
    e = enricher(p, redis=redis, outcomes=outcomes)
    first = await e.enrich([lead()])
    await e.remember(first)
    assert len(redis.data) == 1 and set(redis.ttls.values()) == {3600}
    assert not any("northwind" in k for k in redis.data)  # keys are hashes, never the lookup key
    second = await e.enrich([lead("other.person@northwind.example")])
    assert p.calls == ["northwind.example"]
    assert second.findings[0] == (ProviderFindings(provider="fake", status="found", cached=True,
                                                   fields={"company_name": "Northwind"}),)
    assert outcomes == [("fake", "miss"), ("fake", "hit")] and not second.to_cache
    nobody = FakeProvider("nobody", found=False)
    e2 = enricher(nobody, redis=redis)
    await e2.remember(await e2.enrich([lead()]))
    assert (await e2.enrich([lead()])).findings[0][0].status == "not_found" and nobody.calls == ["northwind.example"]
    assert 60 in redis.ttls.values()


async def test_redis_down_is_degraded_mode_and_leads_still_get_answers(caplog: pytest.LogCaptureFixture) -> None:
    p, outcomes, degraded = FakeProvider(), [], []  # type: ignore[var-annotated]
    e = enricher(p, redis=MemoryRedis(down=True), outcomes=outcomes, degraded=degraded)
    with caplog.at_level(logging.INFO):
        batch = await e.enrich([lead("maria@northwind.example")])
        await e.remember(batch)
    assert batch.findings[0][0].status == "found" and outcomes == [("fake", "degraded")]
    assert degraded == ["enrichment_cache_get"] and not batch.to_cache
    assert "maria" not in caplog.text and "northwind" not in caplog.text


async def test_a_failing_provider_is_skipped_for_the_cooldown_then_tried_again() -> None:
    now = [0.0]
    p, outcomes = FakeProvider(fail=True), []  # type: ignore[var-annotated]
    e = enricher(p, outcomes=outcomes, failure_threshold=2, cooldown_s=30.0, clock=lambda: now[0])
    for i in range(2):
        assert (await e.enrich([lead(f"a@c{i}.example")])).findings[0][0].status == "error"
    assert (await e.enrich([lead("a@c9.example")])).findings[0][0].status == "skipped"
    assert len(p.calls) == 2 and outcomes[-1] == ("fake", "degraded") and outcomes[:2] == [("fake", "error")] * 2
    now[0] = 31.0
    p.fail = False
    assert (await e.enrich([lead("a@c9.example")])).findings[0][0].status == "found"

"""The ``enrichment:`` section of the YAML config: the budget, the cache and the providers.

```yaml
enrichment:
  budget: 300ms              # routing never waits longer for providers (per intake batch)
  parallelism: 16            # requests in flight at once
  cache: {ttl: 7d, negative_ttl: 1d}
  providers:
    - {name: pdl, kind: pdl_company, api_key_env: PDL_API_KEY}
    - name: firmographics    # any JSON-over-HTTP API
      url: "https://api.example.com/v1/companies?domain={domain}"
      api_key_env: FIRMO_KEY
      auth_header: Authorization
      auth_scheme: Bearer
      fields: {company_name: name, employees: [metrics.employees, size]}
```

Keys are read from the environment variables named here when the worker starts (missing ones
fail the start naming the variable); they are never logged nor kept anywhere but the request
header.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

import aiohttp
import redis.asyncio as aioredis
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

from connectors.enrichment.cache import EnrichmentCache
from connectors.enrichment.enricher import Enricher, Outcome
from connectors.enrichment.http import HttpProvider
from connectors.enrichment.pdl import PDL_AUTH_HEADER, PDL_FIELDS, PDL_URL, pdl_url
from leadflow.errors import ConfigError
from sla.config import parse_duration

__all__ = ["EnrichmentConfig", "HttpProviderConfig", "CacheConfig"]

_MAX_FIELDS: Final = 20
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")

_Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
_Field = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
_JsonPath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$", max_length=200)]
_EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
_HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")]
_Url = Annotated[str, StringConstraints(pattern=r"^https?://[^/?#\s@]+(/[^\s#]*)?$", max_length=500)]


def _seconds(low: float, high: float) -> Any:
    """Seconds between ``low`` and ``high``, as ``sla.config.parse_duration`` reads them (``"250ms"``, ``"7d"``)."""
    return Annotated[float, BeforeValidator(parse_duration), Field(ge=low, le=high, allow_inf_nan=False)]


def _paths(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheConfig(_Strict):
    """Redis caching of answers: found records for ``ttl``, "no record" for ``negative_ttl``."""

    enabled: bool = True
    ttl: _seconds(1, 90 * 86400) = 7 * 86400.0  # type: ignore[valid-type]
    negative_ttl: _seconds(1, 90 * 86400) = 86400.0  # type: ignore[valid-type]
    #: The longest a cache read may take (it is also capped at half the budget).
    timeout: _seconds(0.001, 5) = 0.1  # type: ignore[valid-type]


class HttpProviderConfig(_Strict):
    """One provider: ``kind: http`` (yours: url, auth and fields) or a preset (``pdl_company``)."""

    name: _Name
    kind: Literal["http", "pdl_company"] = "http"
    #: ``http``: required, with ``{domain}`` or ``{email}`` where the lookup key goes.
    #: ``pdl_company``: optional, the API's base URL (a proxy of your own, a test stand-in).
    url: _Url | None = None
    api_key_env: _EnvName | None = None
    auth_header: _HeaderName = "Authorization"
    #: Put in front of the key in the header (``Bearer`` → ``Authorization: Bearer <key>``); ``""``: the key alone.
    auth_scheme: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{0,30}$")] = "Bearer"
    #: Our field name → a dotted path in the answer, or a list of them (the first present wins).
    fields: dict[_Field, Annotated[tuple[_JsonPath, ...], BeforeValidator(_paths), Field(min_length=1, max_length=5)]] = \
        Field(default_factory=dict)
    #: HTTP statuses that mean "no record for this key" (cached as such).
    not_found: tuple[Annotated[int, Field(ge=200, le=599)], ...] = (404,)
    #: Where the record sits in the answer (``data`` for ``{"data": {...}}``); none: the whole answer.
    root: _JsonPath | None = None
    #: ``pdl_company``: PDL's ``min_likelihood`` (1–10) for a match.
    min_likelihood: Annotated[int, Field(ge=1, le=10)] | None = None

    @field_validator("fields")
    @classmethod
    def _few_fields(cls, fields: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if len(fields) > _MAX_FIELDS:
            raise ValueError(f"at most {_MAX_FIELDS} fields per provider")
        return fields

    @model_validator(mode="after")
    def _by_kind(self) -> HttpProviderConfig:
        if self.kind == "http":
            if self.url is None:
                raise ValueError("an http provider needs a url with {domain} or {email} in it")
            names = _PLACEHOLDER.findall(self.url)
            if len(names) != 1 or names[0] not in ("domain", "email"):
                raise ValueError(f"url must hold exactly one placeholder, {{domain}} or {{email}} (found "
                                 f"{', '.join('{' + n + '}' for n in names) or 'none'})")
            if not self.fields:
                raise ValueError("an http provider needs fields: {our_name: path.in.the.answer}")
        else:
            if self.url is not None and _PLACEHOLDER.search(self.url):
                raise ValueError("a pdl_company url is the API's base URL, without placeholders")
            if self.api_key_env is None:
                raise ValueError("pdl_company needs api_key_env (People Data Labs requires an API key)")
        if self.min_likelihood is not None and self.kind != "pdl_company":
            raise ValueError("min_likelihood is a pdl_company setting")
        return self

    def build(self, env: Mapping[str, str],
              session: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession]) -> HttpProvider:
        key = None
        if self.api_key_env is not None:
            key = env.get(self.api_key_env, "")
            if not key:
                raise ConfigError(f"enrichment: provider {self.name!r} reads its API key from "
                                  f"${self.api_key_env}, which is not set")
        if self.kind == "pdl_company":
            return HttpProvider(name=self.name, url=pdl_url(self.url or PDL_URL, self.min_likelihood),
                                fields=self.fields or PDL_FIELDS, session=session,
                                auth_header=PDL_AUTH_HEADER, auth_value=key, not_found=self.not_found)
        auth = None if key is None else (f"{self.auth_scheme} {key}" if self.auth_scheme else key)
        assert self.url is not None  # checked by _by_kind
        return HttpProvider(name=self.name, url=self.url, fields=self.fields, session=session,
                            auth_header=self.auth_header, auth_value=auth, not_found=self.not_found,
                            root=self.root)


class EnrichmentConfig(_Strict):
    """HTTP enrichment in the intake; with no providers, only the built-in enrichment runs."""

    #: The most a batch of leads waits for providers before going on without their answers.
    budget: _seconds(0.01, 10) = 0.3  # type: ignore[valid-type]
    parallelism: Annotated[int, Field(ge=1, le=64)] = 16
    #: Failures in a row (errors or timeouts) after which a provider is skipped for ``cooldown``.
    failure_threshold: Annotated[int, Field(ge=1, le=1000)] = 5
    cooldown: _seconds(0, 3600) = 30.0  # type: ignore[valid-type]
    cache: CacheConfig = CacheConfig()
    providers: tuple[HttpProviderConfig, ...] = Field(default=(), max_length=8)

    @field_validator("providers")
    @classmethod
    def _unique(cls, providers: tuple[HttpProviderConfig, ...]) -> tuple[HttpProviderConfig, ...]:
        names = [p.name for p in providers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"provider names must be unique ({', '.join(duplicates)} repeated)")
        return providers

    def check_env(self, env: Mapping[str, str]) -> None:
        """Fail (``ConfigError`` naming each variable) when an ``api_key_env`` is not set: at start, not at the first lead."""
        missing = [f"enrichment: provider {p.name!r} reads its API key from ${p.api_key_env}, which is not set"
                   for p in self.providers if p.api_key_env is not None and not env.get(p.api_key_env)]
        if missing:
            raise ConfigError("\n".join(missing))

    def build(self, env: Mapping[str, str], *,
              session: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession],
              redis: aioredis.Redis | None, prefix: str,
              on_lookup: Callable[[str, Outcome], None] = lambda provider, outcome: None,
              on_cache_degraded: Callable[[str], None] = lambda operation: None) -> Enricher | None:
        """The worker's enricher (``None`` when no provider is configured); reads the keys from ``env``."""
        if not self.providers:
            return None
        cache = None
        if self.cache.enabled and redis is not None:
            cache = EnrichmentCache(redis, prefix=prefix, ttl_s=self.cache.ttl, negative_ttl_s=self.cache.negative_ttl,
                                    timeout_s=self.cache.timeout)
        return Enricher([p.build(env, session) for p in self.providers], cache, budget_s=self.budget,
                        parallelism=self.parallelism, failure_threshold=self.failure_threshold,
                        cooldown_s=self.cooldown, on_lookup=on_lookup, on_cache_degraded=on_cache_degraded)

"""Lead providers that push leads over signed webhooks (Facebook Lead Ads, Typeform), and their configuration.

The configuration (``ProvidersConfig``, a section of the YAML config) names environment
variables, never secrets; ``resolve`` reads them once at start and fails naming the variable.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from connectors.providers.facebook import GRAPH_API_VERSION, FacebookSettings, GraphLeadFetcher
from connectors.providers.typeform import MAP_TARGETS, TypeformSettings
from leadflow.errors import ConfigError

__all__ = ["Providers", "ProvidersConfig", "FacebookConfig", "TypeformConfig", "FacebookSettings",
           "TypeformSettings"]

_Source = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
_EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


@dataclass(frozen=True, slots=True, kw_only=True)
class Providers:
    """The providers this worker accepts webhooks from; ``None`` answers 503 on its endpoints (retried)."""

    facebook: FacebookSettings | None = None
    typeform: TypeformSettings | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FacebookConfig(_Strict):
    """Meta Lead Ads. ``access_token_env`` (a Page token with ``leads_retrieval``) enables fetching
    each lead's answers from the Graph API; without it only payloads carrying ``field_data`` work."""

    app_secret_env: _EnvName = "LEADFLOW_FACEBOOK_APP_SECRET"
    verify_token_env: _EnvName = "LEADFLOW_FACEBOOK_VERIFY_TOKEN"
    access_token_env: _EnvName | None = None
    #: Meta retires a version about two years after its successor ships: keep it current.
    graph_api_version: Annotated[str, StringConstraints(pattern=r"^v\d+\.\d+$")] = GRAPH_API_VERSION
    #: Where the Graph API is: Meta's by default; another for an egress proxy or a relay of your own.
    graph_api_url: Annotated[str, StringConstraints(pattern=r"^https?://[^/?#\s@]+(/[^?#\s]*)?$",
                                                    max_length=300)] = "https://graph.facebook.com"
    source: _Source = "facebook-lead-ads"
    #: A lead created longer ago is refused as a replay (Meta retries a delivery for up to 36 h).
    max_age_hours: int = Field(48, ge=1, le=720)


class TypeformConfig(_Strict):
    """Typeform. ``forms`` maps a form id to {answer ``field.ref`` or ``hidden.<name>``: lead field}."""

    secret_env: _EnvName = "LEADFLOW_TYPEFORM_SECRET"
    source: _Source = "typeform"
    #: A response submitted longer ago is refused as a replay.
    max_age_hours: int = Field(48, ge=1, le=720)
    forms: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("forms")
    @classmethod
    def _targets(cls, forms: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for form_id, field_map in forms.items():
            for ref, target in field_map.items():
                if target not in MAP_TARGETS:
                    raise ValueError(f"{form_id}.{ref}: {target!r} is not a lead field; use one of "
                                     f"{', '.join(sorted(MAP_TARGETS))}")
        return forms


class ProvidersConfig(_Strict):
    facebook: FacebookConfig | None = None
    typeform: TypeformConfig | None = None

    def resolve(self, env: Mapping[str, str],
                session: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession] | None = None) -> Providers:
        """Read the secrets from ``env``; ``session`` (the process's one, or what returns it) is for the Graph API."""
        def secret(name: str, what: str) -> str:
            value = env.get(name, "")
            if not value:
                raise ConfigError(f"providers: {what} is read from ${name}, which is not set")
            return value

        facebook = typeform = None
        if self.facebook is not None:
            fb = self.facebook
            app_secret = secret(fb.app_secret_env, "facebook.app_secret_env")
            fetcher = None
            if fb.access_token_env is not None:
                if session is None:
                    raise ConfigError("providers: facebook.access_token_env needs the worker's HTTP session")
                token = secret(fb.access_token_env, "facebook.access_token_env")
                fetcher = GraphLeadFetcher(session, access_token=token, app_secret=app_secret,
                                           api_version=fb.graph_api_version, base_url=fb.graph_api_url)
            facebook = FacebookSettings(app_secret=app_secret,
                                        verify_token=secret(fb.verify_token_env, "facebook.verify_token_env"),
                                        source=fb.source, fetcher=fetcher, max_age=timedelta(hours=fb.max_age_hours))
        if self.typeform is not None:
            tf = self.typeform
            typeform = TypeformSettings(secret=secret(tf.secret_env, "typeform.secret_env"), source=tf.source,
                                        forms={k: dict(v) for k, v in tf.forms.items()},
                                        max_age=timedelta(hours=tf.max_age_hours))
        return Providers(facebook=facebook, typeform=typeform)

"""The ``scoring``, ``qualification`` and ``crm`` sections of the YAML config, validated with the rest.

Every table in ``scoring`` is merged over the shipped defaults (``rules.scoring.ScoringModel``),
so a file only says what it changes. Frameworks in ``qualification.frameworks`` are added to
BANT, MEDDIC and CHAMP (or replace one of the same name). Secrets come from the environment only:
the config names the variables.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from connectors.crm import CrmAdapter
from connectors.crm.hubspot import HubspotCrm
from connectors.crm.salesforce import SalesforceCrm
from connectors.crm.webhook import WebhookCrm
from connectors.rep_fields import WebhookUrl, secret_from_env
from leadflow.errors import ConfigError
from rules.lead_state import Endpoint
from rules.capture import canonical_source
from rules.outcomes import LearningPolicy
from rules.qualification import DEFAULT_FRAMEWORKS, Criterion, Framework
from rules.scoring import ScoringModel, SizeBand
from sla.config import Duration

__all__ = ["ScoringConfig", "QualificationConfig", "CrmConfig", "crm_policy", "build_adapter"]

_Key = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


#: A whole number: YAML's true/false (and 5.0, "5") are refused, where lax validation read true as 1.
_Count = Annotated[int, Strict()]
#: A finite number: YAML's ``.inf`` and ``.nan`` are refused. ``prior_weight: .inf`` passed ``gt=0``
#: and made every win rate ``inf/inf``, so scoring raised for every lead with a tally (review s18 F6);
#: a ``.nan`` failed a bound with a message about the bound, not about the value.
_Finite = Annotated[float, Field(allow_inf_nan=False)]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SizeBandConfig(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=32)]
    minimum: _Count = Field(ge=0)
    points: _Count = Field(ge=-100, le=100)


class TierConfig(_Strict):
    tier: Annotated[str, Field(min_length=1, max_length=8)]
    minimum: _Count = Field(ge=0, le=100)


class LearningConfig(_Strict):
    prior_rate: _Finite = Field(default=0.25, gt=0, lt=1)
    prior_weight: _Finite = Field(default=8.0, gt=0)
    max_points: _Count = Field(default=15, ge=0, le=50)
    #: A source or segment with fewer closed deals than this (weighted as counted: a "no budget"
    #: loss is 2 in the segment) moves no score; 0: every tally counts from its first deal.
    min_deals: _Finite = Field(default=0, ge=0, le=10_000)
    #: Lost reasons and how many losses each counts for the segment: a reason counts when it begins
    #: with the phrase as whole words, case and spacing aside (``rules.outcomes.reason_weight``).
    reason_weights: dict[str, Annotated[_Finite, Field(ge=0, le=10)]] | None = None


_Points = dict[str, Annotated[_Count, Field(ge=-100, le=100)]]


class ScoringConfig(_Strict):
    """Weights over the shipped defaults; ``mql_threshold`` turns on the MQL gate (nurture below it)."""

    base: _Count = Field(default=0, ge=-100, le=100)
    seniority: _Points = {}
    department: _Points = {}
    size_bands: tuple[SizeBandConfig, ...] | None = None
    industry: _Points = {}
    country: _Points = {}
    email_type: _Points = {}
    source: _Points = {}
    campaign: _Points = {}
    keywords: _Points = {}
    repeat_touch: _Count | None = Field(default=None, ge=0, le=50)
    repeat_touch_max: _Count | None = Field(default=None, ge=0, le=100)
    tiers: tuple[TierConfig, ...] | None = None
    mql_threshold: _Count | None = Field(default=None, ge=0, le=100)
    hot_sources: tuple[str, ...] | None = None
    learning: LearningConfig = LearningConfig()

    @model_validator(mode="after")
    def _tiers(self) -> ScoringConfig:
        if self.tiers is not None:
            minimums = [t.minimum for t in self.tiers]
            if not minimums or minimums != sorted(minimums, reverse=True) or minimums[-1] != 0:
                raise ValueError("tiers must go from the highest minimum down, the last one starting at 0")
        return self

    def model(self) -> ScoringModel:
        d = ScoringModel()
        learning = LearningPolicy(
            prior_rate=self.learning.prior_rate, prior_weight=self.learning.prior_weight,
            max_points=self.learning.max_points,
            reason_weights={**d.learning.reason_weights,
                            **{k.lower(): v for k, v in (self.learning.reason_weights or {}).items()}})
        return replace(
            d, base=self.base,
            seniority={**d.seniority, **self.seniority}, department={**d.department, **self.department},
            industry={**d.industry, **{k.lower(): v for k, v in self.industry.items()}},
            country={**d.country, **self.country}, email_type={**d.email_type, **self.email_type},
            source={**d.source, **{canonical_source(k): v for k, v in self.source.items()}}, campaign={**d.campaign, **self.campaign},
            keywords={**d.keywords, **{k.lower(): v for k, v in self.keywords.items()}},
            size_bands=d.size_bands if self.size_bands is None else tuple(
                SizeBand(name=b.name, minimum=b.minimum, points=b.points) for b in self.size_bands),
            repeat_touch=d.repeat_touch if self.repeat_touch is None else self.repeat_touch,
            repeat_touch_max=d.repeat_touch_max if self.repeat_touch_max is None else self.repeat_touch_max,
            tiers=d.tiers if self.tiers is None else tuple((t.tier, t.minimum) for t in self.tiers),
            mql_threshold=self.mql_threshold,
            hot_sources=d.hot_sources if self.hot_sources is None else frozenset(
                canonical_source(s) for s in self.hot_sources),
            learning=learning, learning_min_deals=self.learning.min_deals,
        )


class CriterionConfig(_Strict):
    key: _Key
    question: Annotated[str, Field(min_length=1, max_length=300)]
    kind: Literal["boolean", "number", "choice", "text"]
    choices: tuple[str, ...] = ()
    met_values: tuple[str, ...] = ()
    #: A ``number`` criterion is met at this or more: ``.nan`` or ``.inf`` would never be met, ``-.inf`` always.
    minimum: _Finite | None = None
    min_length: _Count = Field(default=3, ge=1)
    required: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> CriterionConfig:
        if self.kind == "choice" and (not self.choices or not set(self.met_values) <= set(self.choices)):
            raise ValueError("a choice criterion needs choices, and met_values taken from them")
        return self


class FrameworkConfig(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]
    description: str = ""
    min_met: _Count = Field(ge=0)
    criteria: tuple[CriterionConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _reachable(self) -> FrameworkConfig:
        keys = [c.key for c in self.criteria]
        if len(keys) != len(set(keys)):
            raise ValueError("criterion keys must be unique")
        if self.min_met > len(keys):
            raise ValueError(f"min_met {self.min_met} is more than the {len(keys)} criteria")
        return self


class QualificationConfig(_Strict):
    frameworks: tuple[FrameworkConfig, ...] = ()

    def frameworks_by_name(self) -> dict[str, Framework]:
        found = dict(DEFAULT_FRAMEWORKS)
        for f in self.frameworks:
            found[f.name] = Framework(name=f.name, description=f.description, min_met=f.min_met, criteria=tuple(
                Criterion(key=c.key, question=c.question, kind=c.kind, choices=c.choices, met_values=c.met_values,
                          minimum=c.minimum, min_length=c.min_length, required=c.required) for c in f.criteria))
        return found


class EndpointConfig(_Strict):
    """A Standard Webhooks endpoint (an AE's); the secret from ``webhook_secret_env``."""

    #: Validated as a rep's (connectors/rep_fields.py).
    webhook_url: WebhookUrl
    webhook_secret_env: str

    def endpoint(self, where: str, env: Mapping[str, str]) -> Endpoint:
        return Endpoint(url=self.webhook_url, secret=secret_from_env(env, self.webhook_secret_env, where))


#: Salesforce's generic login hosts, where the client credentials flow is not supported (help
#: article 000886201): the token endpoint answers 400 and every opportunity was dead-lettered.
_GENERIC_LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")


class SalesforceConfig(_Strict):
    #: The org's My Domain URL (``https://<MyDomain>.my.salesforce.com``), where the OAuth 2.0 client
    #: credentials flow gets a token (``/services/oauth2/token``). No default: it is the org's own.
    login_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    client_id_env: str = "LEADFLOW_SALESFORCE_CLIENT_ID"
    client_secret_env: str = "LEADFLOW_SALESFORCE_CLIENT_SECRET"
    #: v46.0 or later: before v46.0 an upsert that updates answers 204 with no body, without the record id.
    api_version: Annotated[str, Field(pattern=r"^v\d+\.\d$")] = "v62.0"
    #: The Opportunity's External ID field holding leadflow's opportunity id (the upsert key).
    external_id_field: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$")] = "Leadflow_Id__c"
    #: A custom Text(27+) field on Opportunity where leadflow writes its lead id (``ld_…``), so
    #: the CRM's events can name the lead; ``null``: not written.
    lead_id_field: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$")] | None = "Leadflow_Lead_Id__c"
    stage: str = "Qualification"
    close_in_days: _Count = Field(default=30, ge=1)

    @field_validator("login_url")
    @classmethod
    def _my_domain(cls, value: str | None) -> str | None:
        host = (urlsplit(value).hostname or "").lower().rstrip(".") if value else ""
        if host in _GENERIC_LOGIN_HOSTS:
            raise ValueError(f"{host} does not support the OAuth client credentials flow (Salesforce help "
                             "000886201): use your org's My Domain URL, https://<MyDomain>.my.salesforce.com "
                             "(a sandbox: https://<MyDomain>--<sandbox>.sandbox.my.salesforce.com)")
        return value

    @model_validator(mode="after")
    def _two_fields(self) -> SalesforceConfig:
        if self.lead_id_field == self.external_id_field:
            raise ValueError("lead_id_field must differ from external_id_field (the opportunity id's field)")
        return self

    @field_validator("api_version")
    @classmethod
    def _upsert_answers_the_id(cls, value: str) -> str:
        if int(value[1:].split(".")[0]) < 46:
            raise ValueError(f"{value} is too old: up to v45.0 Salesforce answers an upsert that updates with 204 "
                             "and no body, so leadflow cannot learn the record id; use v46.0 or later")
        return value


class HubspotConfig(_Strict):
    base_url: Annotated[str, Field(pattern=r"^https?://")] = "https://api.hubapi.com"
    token_env: str = "LEADFLOW_HUBSPOT_TOKEN"
    #: A deal property with unique values holding leadflow's opportunity id (the upsert key).
    id_property: _Key = "leadflow_id"
    #: A deal property (single-line text) where leadflow writes its lead id (``ld_…``), so the CRM's
    #: events can name the lead; ``null``: not written.
    lead_id_property: _Key | None = "leadflow_lead_id"
    pipeline: str = "default"
    stage: str = "appointmentscheduled"

    @model_validator(mode="after")
    def _two_properties(self) -> HubspotConfig:
        if self.lead_id_property == self.id_property:
            raise ValueError("lead_id_property must differ from id_property (the opportunity id's property)")
        return self


class WebhookCrmConfig(_Strict):
    #: Validated as a rep's webhook URL (connectors/rep_fields.py).
    url: WebhookUrl
    secret_env: str


class CrmConfig(_Strict):
    """Where opportunities go, how hard to try, and how the CRM's events are authenticated."""

    adapter: Literal["none", "webhook", "salesforce", "hubspot"] = "none"
    webhook: WebhookCrmConfig | None = None
    salesforce: SalesforceConfig = SalesforceConfig()
    hubspot: HubspotConfig = HubspotConfig()
    #: Per call to the CRM.
    timeout: Annotated[Duration, Field(gt=0)] = 10.0
    #: Durable retries of a failing upsert (kept in a table); after the last one it is dead-lettered.
    retry_delays: tuple[Duration, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    #: A CRM out of API quota (HubSpot's daily limit, Salesforce's rolling 24 h allowance) is waited
    #: for without using up ``retry_delays``, until this long after the first such refusal.
    rate_limit_max_wait: Annotated[Duration, Field(gt=0)] = 3 * 86400.0
    #: ``POST /v1/crm/events`` is signed (Standard Webhooks) with the secret in this variable.
    events_secret_env: str = "LEADFLOW_CRM_EVENTS_SECRET"
    #: How far a signed event's timestamp may be from now.
    events_tolerance: Annotated[Duration, Field(gt=0)] = 300.0
    #: After a lost deal, when the lead is routed again; absent: it stays in nurture.
    recycle_after: Duration | None = None
    #: ``opportunity.created`` webhooks by team id; ``"*"`` for every other team.
    account_executives: dict[str, EndpointConfig] = {}

    @model_validator(mode="after")
    def _adapter_settings(self) -> CrmConfig:
        if self.adapter == "webhook" and self.webhook is None:
            raise ValueError("adapter webhook needs a webhook section (url, secret_env)")
        if self.adapter == "salesforce" and self.salesforce.login_url is None:
            from streams.config import _ErrorAt  # at call time: streams.config imports this module
            raise _ErrorAt(("salesforce", "login_url"), "adapter salesforce needs login_url: your org's My Domain "
                           "URL, https://<MyDomain>.my.salesforce.com (Setup > My Domain); the client "
                           "credentials flow does not work on login.salesforce.com")
        return self


def _adapter_secrets(crm: CrmConfig) -> tuple[str, ...]:
    """The environment variables the configured adapter reads its credentials from."""
    if crm.adapter == "webhook" and crm.webhook is not None:
        return (crm.webhook.secret_env,)
    if crm.adapter == "salesforce":
        return (crm.salesforce.client_id_env, crm.salesforce.client_secret_env)
    if crm.adapter == "hubspot":
        return (crm.hubspot.token_env,)
    return ()


def crm_policy(scoring: ScoringConfig, qualification: QualificationConfig, crm: CrmConfig,
               env: Mapping[str, str]) -> dict[str, object]:
    """The ``LeadPolicy`` fields these sections set.

    The adapter's credentials are checked here, at start: found missing only at the first
    conversion, the CRM agent could not build the adapter and that opportunity was skipped.
    """
    missing = [name for name in _adapter_secrets(crm) if not env.get(name)]
    if missing:
        raise ConfigError(f"crm.{crm.adapter}: environment variable {', '.join(missing)} is not set")
    if crm.adapter == "webhook" and crm.webhook is not None:  # signed like every webhook: a whsec_ secret
        secret_from_env(env, crm.webhook.secret_env, "crm.webhook")
    return {
        "scoring": scoring.model(),
        "frameworks": qualification.frameworks_by_name(),
        "account_executives": {team: e.endpoint(f"crm.account_executives.{team}", env)
                               for team, e in crm.account_executives.items()},
        "recycle_after_s": crm.recycle_after,
    }


def build_adapter(crm: CrmConfig, session: Any, env: Mapping[str, str], *,
                  allow_private: bool = False) -> CrmAdapter | None:
    """The configured CRM adapter (``None`` for ``adapter: none``); secrets from ``env``.

    ``allow_private`` (``LEADFLOW_WEBHOOK_ALLOW_PRIVATE``) lets the generic webhook reach private
    addresses, as it lets reps' webhooks.
    """
    def secret(name: str) -> str:
        value = env.get(name)
        if not value:
            raise ConfigError(f"crm: environment variable {name} is not set")
        return value

    if crm.adapter == "webhook" and crm.webhook is not None:
        hook_secret = secret_from_env(env, crm.webhook.secret_env, "crm.webhook")
        return WebhookCrm(session, url=crm.webhook.url, secret=hook_secret, timeout_s=crm.timeout,
                          allow_private=allow_private)
    if crm.adapter == "salesforce":
        sf = crm.salesforce
        if sf.login_url is None:  # refused when the config was validated; kept for a hand-built CrmConfig
            raise ConfigError("crm.salesforce.login_url: adapter salesforce needs the org's My Domain URL")
        return SalesforceCrm(session, login_url=sf.login_url, client_id=secret(sf.client_id_env),
                             client_secret=secret(sf.client_secret_env), api_version=sf.api_version,
                             external_id_field=sf.external_id_field, stage=sf.stage,
                             close_in_days=sf.close_in_days, timeout_s=crm.timeout, lead_id_field=sf.lead_id_field)
    if crm.adapter == "hubspot":
        hs = crm.hubspot
        return HubspotCrm(session, base_url=hs.base_url, token=secret(hs.token_env), id_property=hs.id_property,
                          pipeline=hs.pipeline, stage=hs.stage, timeout_s=crm.timeout,
                          lead_id_property=hs.lead_id_property)
    return None

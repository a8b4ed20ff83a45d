"""The YAML configuration: teams, reps, routing rules, API keys; validated once at start.

Errors name the file, the line, the path inside the document and what is wrong, e.g.
``config.yaml:12: teams[0].reps[1].capacity: Input should be greater than or equal to 1``.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, Strict, StringConstraints, ValidationError,
                      field_validator, model_validator)
from pydantic_core import InitErrorDetails

from connectors.auth import MIN_KEY_LENGTH, ApiKey, Scope, key_problem
from connectors.enrichment import EnrichmentConfig
from connectors.providers import ProvidersConfig
from connectors.rep_fields import (
    HolidaysCountry,
    Identifier,
    TimeZoneName,
    WebhookSecret,
    WebhookUrl,
    WorkingHours,
    secret_from_env,
)
from leadflow.errors import ConfigError, ErrorAt
from rules.accounts import Account
from rules.capture import canonical_source
from rules.commands import RepProfile
from rules.roster import (
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TERRITORIES,
    RepState,
)
from rules.team import admission_problem, new_team
from rules.lead import LeadPolicy
from rules.lead_state import Endpoint
from rules.territory import expand_territories, territory_problem
from sla.config import Duration, SlaConfig
from streams._config_env import ConfigOrigin, Section, dotted, line_of, node_problems, unset_variables
from streams.crm_config import CrmConfig, QualificationConfig, ScoringConfig, crm_policy
from streams.routing_config import AccountConfig, RoutingConfig, _problem, _raise, check_accounts, config_accounts

__all__ = ["ApiKeyConfig", "RepConfig", "TeamConfig", "LeadflowConfig", "LEAD_ID_KEY_UNSET", "load_config",
           "parse_config"]

#: The warning for a deployment without ``LEADFLOW_LEAD_ID_KEY`` (a setting, not the file): the
#: worker logs it at start (``streams.app``), ``leadflow worker --check-config`` prints it.
LEAD_ID_KEY_UNSET = ("LEADFLOW_LEAD_ID_KEY is not set: lead ids are plain SHA-256 hashes of e-mails and phones, "
                     "which anyone holding an e-mail can recompute; set a key before the first lead "
                     "(README, configuration: LEADFLOW_LEAD_ID_KEY)")

#: A whole number: YAML's true/false (and 5.0, "5") are refused, where lax validation read true as 1.
_Count = Annotated[int, Strict()]
_Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_LENGTH)]
#: A valid ``whsec_`` secret of the usual length, standing in for one named by an environment variable.
_SECRET_STAND_IN = "whsec_" + "A" * 44
_Id = Identifier  # the API's rule too (connectors/rep_fields.py ID_PATTERN): ASCII only


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_ErrorAt = ErrorAt  # a validator's problem at a path below its model (leadflow.errors)


class ApiKeyConfig(_Strict):
    """An API key for one source. Give its SHA-256 (``key_sha256``) or the name of an
    environment variable holding it (``key_env``); a literal ``key`` is for demos only.

    ``scopes`` is what the key may do (connectors/auth.py): ``capture``, ``read``, ``work``,
    ``admin``. Without it the key may do everything, and the worker warns at start."""

    name: _Id
    key: str | None = Field(default=None, min_length=MIN_KEY_LENGTH)
    key_env: str | None = None
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    rate_per_minute: _Count | None = Field(default=None, ge=1)
    scopes: tuple[Scope, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyConfig:
        given = [x for x in (self.key, self.key_env, self.key_sha256) if x]
        if len(given) != 1:
            raise ValueError("give exactly one of key, key_env, key_sha256")
        if self.key is not None and (problem := key_problem(self.key)) is not None:
            raise _ErrorAt(("key",), f"the key {problem}")
        return self

    def api_key(self) -> ApiKey:
        """Who a request with this key is: its name and scopes (``None``: all, as before scopes)."""
        return ApiKey(self.name, frozenset(self.scopes) if self.scopes is not None else None)

    def key_problem(self, env: Mapping[str, str]) -> str | None:
        """What is wrong with the key ``key_env`` names (never the key), once it is set."""
        value = env.get(self.key_env) if self.key_env else None
        return key_problem(value) if value else None

    def digest(self, env: Mapping[str, str]) -> str:
        if self.key_sha256:
            return self.key_sha256
        if self.key_env:
            value = env.get(self.key_env)
            if not value:
                raise ConfigError(f"api key {self.name!r}: environment variable {self.key_env} is not set")
            return hashlib.sha256(value.encode()).hexdigest()
        assert self.key is not None
        return hashlib.sha256(self.key.encode()).hexdigest()


class RepConfig(_Strict):
    """A rep in the file: the limits of ``PUT /v1/reps/{id}`` (``rules.roster``), at their lines."""

    id: _Id
    name: Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH)] = ""
    capacity: _Count = Field(default=5, ge=1, le=1000)
    daily_cap: _Count | None = Field(default=None, ge=1)
    weight: _Count = Field(default=1, ge=1, le=100)
    skills: Annotated[tuple[_Tag, ...], Field(max_length=MAX_TAGS)] = ()
    languages: Annotated[tuple[_Tag, ...], Field(max_length=MAX_TAGS)] = ()
    territories: Annotated[tuple[_Tag, ...], Field(max_length=MAX_TERRITORIES)] = ()
    timezone: TimeZoneName = "UTC"
    #: Validated as ``PUT /v1/reps/{id}`` validates them (connectors/rep_fields.py).
    webhook_url: WebhookUrl | None = None
    webhook_secret: WebhookSecret | None = None
    webhook_secret_env: str | None = None
    email: Annotated[str, StringConstraints(max_length=MAX_EMAIL_LENGTH)] | None = None
    #: Most leads assigned per ISO week in the rep's time zone (no cap when absent).
    weekly_cap: _Count | None = Field(default=None, ge=1)
    #: Weekly hours in ``timezone``, e.g. ``{"mon-fri": ["09:00-17:00"]}``; absent: always on.
    working_hours: WorkingHours = {}
    #: Country (ISO 3166-1 alpha-2) whose public holidays the rep does not work.
    holidays_country: HolidaysCountry | None = None

    @model_validator(mode="after")
    def _webhook(self) -> RepConfig:
        # The API generates a secret for a rep given without one and returns it once; a file has no
        # one to hand a generated secret to, and a rep with a URL and no secret was never notified.
        if self.webhook_url is not None and self.webhook_secret is None and self.webhook_secret_env is None:
            raise _ErrorAt(("webhook_url",), "a webhook needs a signing secret: set webhook_secret_env to the name "
                           "of an environment variable holding a whsec_ secret (or webhook_secret, for demos)")
        if self.webhook_secret is not None and self.webhook_secret_env is not None:
            raise _ErrorAt(("webhook_secret_env",), "give exactly one of webhook_secret, webhook_secret_env")
        return self

    @model_validator(mode="after")
    def _zone(self) -> RepConfig:
        # Hours and holidays are read in the rep's time zone; left out it was UTC, and a Sydney
        # rep's mon-fri 09:00-17:00 became 20:00-04:00 Sydney time (PUT /v1/reps says the same).
        if (self.working_hours or self.holidays_country is not None) and "timezone" not in self.model_fields_set:
            raise _ErrorAt(("timezone",), "required with working_hours or holidays_country, which are read in it: "
                           "an IANA name such as 'Australia/Sydney' (or 'UTC', if that is meant)")
        return self

    def profile(self, team_id: str, env: Mapping[str, str], strategy: str | None = None,
                regions: Mapping[str, tuple[str, ...]] | None = None) -> RepProfile:
        """The profile the team agent gets; ``regions`` (``routing.regions``) expands region territories."""
        secret = self.webhook_secret
        if self.webhook_secret_env:
            secret = secret_from_env(env, self.webhook_secret_env, f"rep {self.id!r}")
        return RepProfile(
            rep_id=self.id, team_id=team_id, name=self.name or self.id, capacity=self.capacity,
            daily_cap=self.daily_cap, weight=self.weight, skills=self.skills, languages=self.languages,
            territories=expand_territories(self.territories, regions or {}), timezone=self.timezone, webhook_url=self.webhook_url,
            webhook_secret=secret, email=self.email, weekly_cap=self.weekly_cap,
            working_hours={k: tuple(v) for k, v in self.working_hours.items()},
            holidays_country=self.holidays_country,
            team_strategy=strategy,
        )


class ManagerConfig(_Strict):
    """Where SLA escalations of a team go (a Standard Webhooks endpoint)."""

    #: Validated as a rep's (connectors/rep_fields.py).
    webhook_url: WebhookUrl
    webhook_secret: WebhookSecret | None = None
    webhook_secret_env: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> ManagerConfig:
        if (self.webhook_secret is None) == (self.webhook_secret_env is None):
            raise ValueError("give exactly one of webhook_secret, webhook_secret_env")
        return self

    def endpoint(self, team_id: str, env: Mapping[str, str]) -> Endpoint:
        secret = self.webhook_secret
        if self.webhook_secret_env:
            secret = secret_from_env(env, self.webhook_secret_env, f"team {team_id!r} manager")
        assert secret is not None
        return Endpoint(url=self.webhook_url, secret=secret)


class TeamConfig(_Strict):
    id: _Id
    #: How the team picks among eligible reps: weighted_round_robin, least_loaded, most_available.
    #: It reaches the team agent on the config's rep upserts (``RepProfile.team_strategy``).
    strategy: str = "weighted_round_robin"
    #: Receives ``lead.escalated`` webhooks when an SLA ladder reaches ``alert_manager``.
    manager: ManagerConfig | None = None
    #: Where ``release_to_pool`` sends a lead nobody in this team contacted (default: this team's queue),
    #: and where a lead goes after waiting ``overflow_after`` in this team's queue.
    overflow_team: _Id | None = None
    #: How long a lead may wait in this team's queue before it moves to ``overflow_team`` (unset: no limit).
    overflow_after: Annotated[Duration, Field(gt=0)] | None = None
    #: The offer handshake: a rep has this long to accept (``POST /v1/leads/{id}/accept``) before the
    #: lead is offered to the next rep (unset: leads are assigned outright).
    offer_timeout: Annotated[Duration, Field(gt=0)] | None = None
    #: At most ``rules.team.MAX_REPS``, and within the team state's byte budget: both checked by
    #: ``_roster_problems`` (no ``Field`` bound: it reports the first rep over in the API's words).
    reps: tuple[RepConfig, ...] = ()

    @model_validator(mode="after")
    def _overflow(self) -> TeamConfig:
        if self.overflow_after is not None and self.overflow_team is None:
            raise ValueError("overflow_after needs an overflow_team to send waiting leads to")
        if self.overflow_team == self.id:
            raise ValueError("overflow_team must be another team")
        return self

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        from rules.routing import STRATEGIES

        if value not in STRATEGIES:
            raise ValueError(f"unknown strategy {value!r}; choose one of {', '.join(STRATEGIES)}")
        return value


class SourceSpendConfig(_Strict):
    #: The lead source as leads carry it (``source`` field, or the API key name by default).
    name: _Id
    #: What this source costs per month, in ``marketing.currency``; cost per MQL/SQL is PromQL.
    monthly_spend: float = Field(ge=0)


class MarketingConfig(_Strict):
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    #: The sources marketing reports on; a lead from any other source counts as ``other``.
    sources: tuple[SourceSpendConfig, ...] = ()


class LeadflowConfig(_Strict):
    api_keys: tuple[ApiKeyConfig, ...] = ()
    routing: RoutingConfig = RoutingConfig()  # team rules, regions, tier priorities (streams/routing_config.py)
    #: Known companies by domain: owner, team, tier (lead-to-account matching; docs/routing.md).
    accounts: tuple[AccountConfig, ...] = ()
    sla: SlaConfig = SlaConfig()  # policies and business calendars (sla/config.py)
    marketing: MarketingConfig = MarketingConfig()  # source spend, for cost per MQL/SQL (ops/metrics.py)
    teams: tuple[TeamConfig, ...] = ()
    providers: ProvidersConfig = ProvidersConfig()  # Facebook Lead Ads, Typeform (connectors/providers)
    enrichment: EnrichmentConfig = EnrichmentConfig()  # HTTP enrichment providers, budget, cache (connectors/enrichment)
    scoring: ScoringConfig = ScoringConfig()  # fit + intent weights, the MQL threshold (streams/crm_config.py)
    qualification: QualificationConfig = QualificationConfig()  # frameworks besides BANT, MEDDIC, CHAMP
    crm: CrmConfig = CrmConfig()  # the CRM adapter, durable retries, signed CRM events, AEs
    #: The file and its YAML nodes (set by ``parse_config``), for problems found after validation.
    _origin: ConfigOrigin = PrivateAttr(default_factory=ConfigOrigin)

    @model_validator(mode="after")
    def _unique(self) -> LeadflowConfig:
        team_of: dict[str, str] = {}
        for t, team in enumerate(self.teams):
            listed: set[str] = set()
            for r, rep in enumerate(team.reps):
                # The error points at the second entry: the first is where the rep was meant to be.
                if rep.id in listed:
                    raise _ErrorAt(("teams", t, "reps", r), f"rep {rep.id!r} is listed twice in team {team.id!r}")
                if rep.id in team_of:
                    raise _ErrorAt(("teams", t, "reps", r), f"rep {rep.id!r} appears in more than one team "
                                   f"({team_of[rep.id]!r} and {team.id!r}); a rep belongs to one team")
                listed.add(rep.id)
                team_of[rep.id] = team.id
        check_accounts(self.accounts, self.rep_teams())
        names = [k.name for k in self.api_keys]
        if len(names) != len(set(names)):
            raise ValueError("api key names must be unique")
        _raise("LeadflowConfig", self._team_problems() + self._territory_problems() + self._roster_problems())
        return self

    def _territory_problems(self) -> list[InitErrorDetails]:
        """A rep territory that is no country, state or region matched no lead with a place: the rep was
        never eligible for one (``[Narnia]``, or ``[EMEA]`` before region names were understood)."""
        problems = []
        for t, team in enumerate(self.teams):
            for r, rep in enumerate(team.reps):
                for k, territory in enumerate(rep.territories):
                    problem = territory_problem(territory, self.routing.regions)
                    if problem is not None:
                        problems.append(_problem("unknown_territory", problem,
                                                 ("teams", t, "reps", r, "territories", k), territory))
        return problems

    def _roster_problems(self) -> list[InitErrorDetails]:
        """A rep its team could not take (``rules.team.admission_problem``): the team would refuse it
        at start-up, which ones depending on the order the reps arrive. Secrets named by variable
        count at a real secret's length (the file is checked without the environment)."""
        problems = []
        for t, team in enumerate(self.teams):
            state = new_team(team.id)
            for r, rep in enumerate(team.reps):
                env = {rep.webhook_secret_env: _SECRET_STAND_IN} if rep.webhook_secret_env else {}
                profile = rep.profile(team.id, env, team.strategy, self.routing.regions)
                problem = admission_problem(state, profile)
                if problem is not None:
                    problems.append(_problem("team_full", problem, ("teams", t, "reps", r), rep.id))
                    break
                state = replace(state, reps={**state.reps, rep.id: RepState(profile=profile)})
        return problems

    def _team_problems(self) -> list[InitErrorDetails]:
        """A team id defined twice (at the second), and a reference that is a defined team misspelt
        (``sdr-us`` for ``sdr_us``, ``SDR_US``): its leads would wait in a team nobody works in."""
        problems = []
        first: dict[str, int] = {}
        for t, team in enumerate(self.teams):
            if team.id in first:
                problems.append(_problem("duplicate_team", f"team {team.id!r} is already defined at teams[{first[team.id]}]; "
                                         "give each team one entry", ("teams", t, "id"), team.id))
            first.setdefault(team.id, t)
        spelt = {_spelling(team_id): team_id for team_id in first}
        for loc, name in self.team_references():
            meant = spelt.get(_spelling(name))
            if name not in first and meant is not None:
                problems.append(_problem("misspelt_team", f"team {name!r} is not defined; did you mean {meant!r}?",
                                         loc, name))
        return problems

    def team_references(self) -> list[tuple[tuple[int | str, ...], str]]:
        """``(path, team id)`` of every place the file names a team besides its definition."""
        refs: list[tuple[tuple[int | str, ...], str]] = []
        if self.routing.default_team:
            refs.append((("routing", "default_team"), self.routing.default_team))
        refs += [(("routing", "rules", i, "team"), rule.team) for i, rule in enumerate(self.routing.rules)]
        refs += [(("teams", i, "overflow_team"), t.overflow_team) for i, t in enumerate(self.teams) if t.overflow_team]
        refs += [(("sla", "policies", i, "teams", j), team) for i, policy in enumerate(self.sla.policies)
                 for j, team in enumerate(policy.teams)]
        refs += [(("sla", "calendars", name, "teams", j), team) for name, cal in self.sla.calendars.items()
                 for j, team in enumerate(cal.teams)]
        refs += [(("accounts", i, "team"), a.team) for i, a in enumerate(self.accounts) if a.team]
        refs += [(("crm", "account_executives", team), team) for team in self.crm.account_executives if team != "*"]
        return refs

    def warnings(self, default_team: str = "default") -> list[str]:
        """What the file allows but probably did not mean, each at its line: teams named but not
        defined in it, and Facebook Lead Ads without ``access_token_env``.

        Not errors: a team also comes into being through the API (``PUT /v1/reps/{id}`` with a
        ``team``), so a rule may send leads to a team whose reps are all managed there. A file that
        defines no team at all manages every team that way and gets no warning for them. Facebook
        without a token takes test payloads (they carry ``field_data``), never a real lead.
        """
        found: list[tuple[int, str]] = []

        def at(loc: tuple[int | str, ...], text: str) -> None:
            line = line_of(self._origin.node, loc) if self._origin.node is not None else None
            found.append((line or 0, f"{self._origin.where(loc)}: {text}"))

        defined = [t.id for t in self.teams]
        if defined:
            for loc, name in self.team_references():
                if name not in defined:
                    at(loc, _undefined(name, defined, sends_leads=loc[0] in ("routing", "teams", "accounts")))
        if self.providers.facebook is not None and self.providers.facebook.access_token_env is None:
            at(("providers", "facebook"), _FACEBOOK_WITHOUT_TOKEN)
        out = [text for _, text in sorted(found, key=lambda item: item[0])]
        if defined and self.routing.default_team is None and default_team not in defined:
            out.append(f"LEADFLOW_DEFAULT_TEAM={default_team!r} (where leads that match no routing rule go; "
                       f"routing.default_team is not set): {_undefined(default_team, defined, True)}")
        return out

    def lead_policy(self, default_team: str, env: Mapping[str, str] | None = None) -> LeadPolicy:
        """The policy leads are routed by, once ``check_env`` found every variable the config names:
        the worker's start (``create_app``) and ``leadflow worker --check-config`` both come here."""
        env = os.environ if env is None else env
        self.check_env(env, default_team)
        self._check_keys(env)
        return self._lead_policy(default_team, env)

    def _check_keys(self, env: Mapping[str, str]) -> None:
        """A key ``key_env`` names that is too short (``key:`` is checked as the file is read), and one
        key under two names: a request with it would count under one of them, the other lost."""
        first: dict[str, int] = {}
        problems = []
        for i, key in enumerate(self.api_keys):
            problem = key.key_problem(env)
            if problem is not None:
                problems.append(f"{self._origin.where(('api_keys', i, 'key_env'))}: the key in environment variable "
                                f"{key.key_env} {problem}")
            digest = key.digest(env)
            if digest in first:
                problems.append(f"{self._origin.where(('api_keys', i))}: key {key.name!r} is the same key as "
                                f"api_keys[{first[digest]}] ({self.api_keys[first[digest]].name!r}); give each "
                                "source its own key")
            first.setdefault(digest, i)
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))

    def check_env(self, env: Mapping[str, str], default_team: str = "default") -> None:
        """Raise ``ConfigError`` listing every environment variable the config names that ``env``
        lacks, each at the line naming it, by running the worker's own code that reads them."""
        crm_at: tuple[int | str, ...] = ("crm", self.crm.adapter) if self.crm.adapter != "none" else ("crm",)
        sections = [
            Section(lambda e: self._lead_policy(default_team, e), (("crm",), ("teams",)), crm_at),
            Section(self.rep_profiles, (("teams",),), ("teams",)),
            Section(self.key_digests, (("api_keys",),), ("api_keys",)),
            Section(self.enrichment.check_env, (("enrichment",),), ("enrichment",)),
            *_provider_sections(self.providers),
        ]
        problems = unset_variables(self._origin, sections, env)
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))

    def _lead_policy(self, default_team: str, env: Mapping[str, str]) -> LeadPolicy:
        default = self.routing.default_team or default_team
        teams = {default, *(t.id for t in self.teams), *(r.team for r in self.routing.rules)}
        return LeadPolicy(
            **crm_policy(self.scoring, self.qualification, self.crm, env),  # type: ignore[arg-type]
            default_team=default,
            team_rules=self.routing.team_rules(),
            tier_priorities=dict(self.routing.tier_priorities),
            sla_policies=self.sla.to_policies(),
            calendars=self.sla.team_calendars(teams),
            default_calendar=self.sla.to_calendars().default,
            managers={t.id: t.manager.endpoint(t.id, env) for t in self.teams if t.manager is not None},
            overflow_teams={t.id: t.overflow_team for t in self.teams if t.overflow_team},
            overflow_after={t.id: t.overflow_after for t in self.teams if t.overflow_after is not None},
            offer_timeouts={t.id: t.offer_timeout for t in self.teams if t.offer_timeout is not None},
        )

    def rep_profiles(self, env: Mapping[str, str] | None = None) -> list[RepProfile]:
        env = os.environ if env is None else env
        return [rep.profile(team.id, env, team.strategy, self.routing.regions) for team in self.teams
                for rep in team.reps]

    def rep_teams(self) -> dict[str, str]:
        """``{rep id: team id}`` for the reps of this file."""
        return {rep.id: team.id for team in self.teams for rep in team.reps}

    def account_list(self, at: datetime) -> list[Account]:
        """The file's accounts (each owner's team filled in), seeded at every worker start."""
        return config_accounts(self.accounts, self.rep_teams(), at)

    def source_spend(self) -> dict[str, tuple[float, str]]:
        """``{source: (monthly spend, currency)}`` for the spend gauges."""
        # Leads carry their source in its canonical form (rules.capture.canonical_source): so do the labels.
        return {canonical_source(s.name): (s.monthly_spend, self.marketing.currency) for s in self.marketing.sources}

    def metric_sources(self) -> frozenset[str]:
        """Sources that may be a metric label: those with spend, in routing rules, or API key names."""
        return frozenset(canonical_source(name) for name in (
            *(s.name for s in self.marketing.sources), *(k.name for k in self.api_keys),
            *(src for r in self.routing.rules for src in r.sources)))

    def rate_limits(self) -> dict[str, int]:
        """Requests per minute by API key name, for the keys that have a limit."""
        return {k.name: k.rate_per_minute for k in self.api_keys if k.rate_per_minute}

    def key_digests(self, env: Mapping[str, str] | None = None) -> dict[str, ApiKey]:
        """``{sha256 hex: key (name and scopes)}`` for every configured key."""
        env = os.environ if env is None else env
        return {k.digest(env): k.api_key() for k in self.api_keys}


def _spelling(team_id: str) -> str:
    """A team id without case and punctuation: two ids alike here are one team misspelt."""
    return re.sub(r"[-_.]", "", team_id.casefold())


#: Meta's lead webhooks carry a lead's id, never its answers (``field_data``): without a token to read
#: them from the Graph API, every real lead is answered 503 until Meta gives up redelivering.
_FACEBOOK_WITHOUT_TOKEN = (
    "access_token_env is not set: real Meta webhooks carry only each lead's id, never its answers "
    "(field_data), so every real lead is answered 503 and lost when Meta stops redelivering after 36 h; "
    "name a Page token with leads_retrieval in access_token_env (docs/capture.md). Only test payloads "
    "that carry field_data are captured without it")


def _undefined(name: str, defined: list[str], sends_leads: bool) -> str:
    close = difflib.get_close_matches(name, defined, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(defined[:10]) + (", …" if len(defined) > 10 else "")
    effect = ("its leads wait unless its reps are added through PUT /v1/reps" if sends_leads
              else "this applies to it once its reps are added through PUT /v1/reps")
    return f"team {name!r} is not defined in this file ({hint}teams: {listed}); {effect}"


def _no_session() -> Any:
    raise AssertionError("checking the environment opens no connection")


def _provider_sections(providers: ProvidersConfig) -> list[Section]:
    """One section per provider, so that a variable read by its default name is reported at its provider."""
    sections = []
    for name in ("facebook", "typeform"):
        if getattr(providers, name) is not None:
            alone = ProvidersConfig.model_validate({name: getattr(providers, name)})
            sections.append(Section(partial(alone.resolve, session=_no_session), (("providers", name),),
                                    ("providers", name)))
    return sections


def parse_config(text: str, source: str = "<config>") -> LeadflowConfig:
    """Parse and validate config text; ``ConfigError`` lists every problem with its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        problems = node_problems(node)  # before loading: a date that does not exist fails the loader
        data: Any = None if problems else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(
            f"{source}:{line}: {problem}" for line, problem in sorted(problems, key=lambda item: item[0])))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping (api_keys, routing, sla, teams)")
    try:
        config = LeadflowConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, _ErrorAt):
                loc += cause.loc
            line = line_of(node, loc)
            where = f"{source}:{line}" if line else source
            lines.append(f"{where}: {dotted(loc)}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    config._origin = ConfigOrigin(source, node)
    return config


def load_config(path: Path | None) -> LeadflowConfig:
    """Load the config file, or an empty config when no file is given."""
    if path is None:
        return LeadflowConfig()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); save the "
                          "file as UTF-8") from None
    return parse_config(text, str(path))

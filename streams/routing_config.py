"""The YAML's ``routing`` and ``accounts`` sections: team rules, regions, tier priorities, accounts.

Part of the config (``streams/config.py`` embeds these models), validated the same way: every
problem names its path, e.g. ``routing.rules[2].regions[0]: unknown region 'EMAE' (defined:
EMEA, NA)`` or ``accounts[1].owner: rep 'zoe' is in no team of this file; give the account a team``.
``docs/routing.md`` explains every field with a worked example.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from rules.accounts import Account, normalize_domain
from rules.capture import country_problem
from rules.enrichment import Department, Seniority
from rules.team_selection import Region, SizeRange, TeamRule

__all__ = ["RuleConfig", "RoutingConfig", "AccountConfig", "check_accounts", "config_accounts"]

#: A whole number: YAML's true/false (and 5.0, "5") are refused, where lax validation read true as 1.
_Count = Annotated[int, Strict()]

_Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


def _iso(value: str) -> str:
    """``value`` when it starts with an ISO 3166-1 country (the list the API checks leads against)."""
    problem = country_problem(value[:2])
    if problem is not None:
        raise ValueError(problem)  # "XX is not an ISO 3166-1 alpha-2 country code", "…; use GB" for UK
    return value


_Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$"), AfterValidator(_iso)]
#: ISO 3166-2: the country, a hyphen, and up to three letters or digits (``US-CA``, ``GB-LND``).
_State = Annotated[str, Field(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$"), AfterValidator(_iso)]
_Label = Annotated[str, Field(min_length=1, max_length=64)]
_SENIORITIES = frozenset(get_args(Seniority)) - {"unknown"}
_DEPARTMENTS = frozenset(get_args(Department)) - {"other"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _problem(kind: str, message: str, loc: tuple[int | str, ...], value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)


def _raise(title: str, problems: list[InitErrorDetails]) -> None:
    if problems:
        # Raised from a validator, pydantic prefixes these locations with the model's own path.
        raise ValidationError.from_exception_data(title, problems)


class RuleConfig(_Strict):
    """One routing rule: leads meeting every criterion given go to ``team`` (first match wins)."""

    team: _Id
    name: Annotated[str, Field(max_length=64)] = ""
    countries: tuple[_Country, ...] = ()
    #: Names of ``routing.regions``.
    regions: tuple[_Label, ...] = ()
    states: tuple[_State, ...] = ()
    #: Employee bands such as ``1-49``, ``200-999``, ``1000+``.
    company_sizes: tuple[str, ...] = ()
    industries: tuple[_Label, ...] = ()
    seniorities: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    tiers: tuple[_Label, ...] = ()

    @field_validator("company_sizes")
    @classmethod
    def _sizes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for band in value:
            SizeRange.parse(band)  # ValueError names the band
        return value

    @field_validator("seniorities")
    @classmethod
    def _seniorities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known(value, _SENIORITIES, "seniority")

    @field_validator("departments")
    @classmethod
    def _departments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known(value, _DEPARTMENTS, "department")

    def rule(self, regions: Mapping[str, tuple[str, ...]]) -> TeamRule:
        return TeamRule(
            team=self.team, name=self.name, countries=self.countries,
            regions=tuple(Region(name=r, countries=regions[r]) for r in self.regions), states=self.states,
            company_sizes=tuple(SizeRange.parse(b) for b in self.company_sizes), industries=self.industries,
            seniorities=self.seniorities, departments=self.departments, sources=self.sources, tiers=self.tiers,
        )


def _known(value: tuple[str, ...], allowed: frozenset[str], what: str) -> tuple[str, ...]:
    for item in value:
        if item not in allowed:
            raise ValueError(f"unknown {what} {item!r}; the enrichment knows {', '.join(sorted(allowed))}")
    return value


class RoutingConfig(_Strict):
    """Team selection: the default team, named regions, the ordered rules and tier priorities."""

    default_team: _Id | None = None
    #: Named groups of countries the rules can refer to: ``{EMEA: [DE, FR, ES], NA: [US, CA]}``.
    regions: dict[_Label, tuple[_Country, ...]] = {}
    rules: tuple[RuleConfig, ...] = ()
    #: Queue priority by tier (an account's or the lead's): ``{strategic: 0, key: 1}``; 0 is served first.
    tier_priorities: dict[_Label, Annotated[_Count, Field(ge=0, le=9)]] = {}

    @model_validator(mode="after")
    def _regions_defined(self) -> RoutingConfig:
        problems = []
        for i, rule in enumerate(self.rules):
            for j, name in enumerate(rule.regions):
                if name not in self.regions:
                    defined = ", ".join(self.regions) or "none; add routing.regions"
                    problems.append(_problem("unknown_region", f"unknown region {name!r} (defined: {defined})",
                                             ("rules", i, "regions", j), name))
        _raise("RoutingConfig", problems)
        return self

    def team_rules(self) -> tuple[TeamRule, ...]:
        return tuple(rule.rule(self.regions) for rule in self.rules)

    def teams(self) -> set[str]:
        return {r.team for r in self.rules}


class AccountConfig(_Strict):
    """A known company: its domain, and who owns its leads."""

    domain: str
    name: Annotated[str, Field(max_length=200)] = ""
    #: A rep id; the account's leads go to them when eligible.
    owner: _Id | None = None
    #: The team of the account's leads; defaults to the owner's team in this file.
    team: _Id | None = None
    tier: _Label | None = None

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return normalize_domain(value)  # ValueError names the problem

    def account(self, reps: Mapping[str, str], at: datetime) -> Account:
        team = self.team or (reps.get(self.owner) if self.owner else None)
        return Account(domain=self.domain, name=self.name, owner=self.owner, team=team, tier=self.tier,
                       updated_at=at)


def check_accounts(accounts: tuple[AccountConfig, ...], reps: Mapping[str, str]) -> None:
    """Each domain once; an owner who is no rep of this file needs the account's ``team``.

    ``reps`` maps the file's rep ids to their team. Raises ``ValidationError`` located at
    ``accounts[i]``.
    """
    problems = []
    seen: dict[str, int] = {}
    for i, account in enumerate(accounts):
        if account.domain in seen:
            problems.append(_problem("duplicate_account", f"domain {account.domain} is already accounts[{seen[account.domain]}]",
                                     ("accounts", i, "domain"), account.domain))
        seen.setdefault(account.domain, i)
        if account.owner and account.team is None and account.owner not in reps:
            problems.append(_problem(
                "unknown_owner", f"rep {account.owner!r} is in no team of this file; give the account a team",
                ("accounts", i, "owner"), account.owner))
        elif account.owner and account.team and reps.get(account.owner, account.team) != account.team:
            problems.append(_problem(
                "owner_team", f"rep {account.owner!r} is in team {reps[account.owner]!r}, not {account.team!r}",
                ("accounts", i, "team"), account.team))
    _raise("LeadflowConfig", problems)


def config_accounts(accounts: Iterable[AccountConfig], reps: Mapping[str, str], at: datetime) -> list[Account]:
    """The config's accounts, with each owner's team filled in from the file's teams."""
    return [a.account(reps, at) for a in accounts]

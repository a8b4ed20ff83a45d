"""Which team (and so which queue) a new lead goes to: account ownership, then an ordered rule list.

Rules are data (the YAML's ``routing.rules``), tried in order; the first whose every criterion
matches wins, else the default team. An empty criterion matches anything; a list criterion
matches when the lead's value is one of the list (case-blind). A criterion about something the
lead does not tell (no industry, no tier, ...) does not match: a rule for "enterprise software"
never catches a lead whose size and industry are unknown.

What a rule can look at (``LeadFacts``):

* territory — ``countries`` (ISO 3166-1 alpha-2), ``regions`` (named groups of countries such
  as EMEA, defined once in ``routing.regions``), ``states`` (ISO 3166-2 such as ``US-CA``). The
  country is the lead's own, else the one its phone number belongs to (built-in enrichment);
  the state comes from the lead's ``state`` (or ``region``) attribute. ``rules.territory`` reads
  both, and the team's reps' territories are matched against the same reading.
* segment — ``company_sizes`` (employee bands such as ``1-49``, ``200-999``, ``1000+``; the
  lead's ``employees`` or ``company_size`` attribute, a number or a band, must lie inside one),
  ``industries`` (the ``industry`` attribute), and the built-in enrichment's ``seniorities``
  and ``departments`` (from the job title).
* ``sources`` — the lead's source; ``tiers`` — the lead's tier (from scoring, when given).

A lead whose domain matches an account with an owner or a team goes to that team before any rule.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rules.accounts import Account
from rules.capture import CapturedLead, attribute
from rules.enrichment import Enrichment
from rules.headcount import read_headcount
from rules.territory import locate

__all__ = ["SizeRange", "Region", "TeamRule", "LeadFacts", "facts_of", "rule_match", "select_team", "tier_priority"]

_BAND = re.compile(r"^\s*(\d[\d,_ ]*)\s*(?:(\+)|-\s*(\d[\d,_ ]*))?\s*$")


def _int(text: str) -> int:
    return int(re.sub(r"[,_ ]", "", text))


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeRange:
    """A band of employee counts, ``low`` to ``high`` inclusive (``high`` None: no upper bound)."""

    low: int
    high: int | None = None

    @classmethod
    def parse(cls, text: str) -> SizeRange:
        """``"350"``, ``"200-999"``, ``"1,000-4,999"`` or ``"1000+"``; ``ValueError`` otherwise."""
        match = _BAND.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not an employee count or band (use 350, 200-999 or 1000+)")
        low = _int(match[1])
        if match[2]:
            return cls(low=low)
        high = _int(match[3]) if match[3] else low
        if high < low:
            raise ValueError(f"{text!r}: the band ends before it starts")
        return cls(low=low, high=high)

    def within(self, other: SizeRange) -> bool:
        """Whether this band lies entirely inside ``other``."""
        if self.low < other.low:
            return False
        if other.high is None:
            return True
        return self.high is not None and self.high <= other.high

    def __str__(self) -> str:
        if self.high is None:
            return f"{self.low}+"
        return str(self.low) if self.high == self.low else f"{self.low}-{self.high}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    """A named sales region: a group of countries (``EMEA: [DE, FR, ES, ...]``)."""

    name: str
    countries: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamRule:
    """Send matching leads to ``team``; every non-empty criterion must match."""

    team: str
    #: Shown in the "why" text; rules without a name are called by their position.
    name: str = ""
    countries: tuple[str, ...] = ()
    regions: tuple[Region, ...] = ()
    states: tuple[str, ...] = ()
    company_sizes: tuple[SizeRange, ...] = ()
    industries: tuple[str, ...] = ()
    seniorities: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadFacts:
    """What team selection knows about a lead (``None``: not known)."""

    source: str
    country: str | None = None
    #: Where the country came from, when not from the lead itself (e.g. "phone").
    country_from: str | None = None
    state: str | None = None
    employees: SizeRange | None = None
    industry: str | None = None
    seniority: str | None = None
    department: str | None = None
    tier: str | None = None


def _attribute(lead: CapturedLead, *names: str, enrichment: Enrichment | None = None) -> str | None:
    """The first non-empty of ``names`` in what the lead said, else in what providers found."""
    for source in (lead.attributes, enrichment.provided if enrichment is not None else {}):
        value = attribute(source, *names)  # "Industry" and "industry" alike
        if value is not None:
            return value.strip()
    return None


def facts_of(lead: CapturedLead, enrichment: Enrichment | None = None, tier: str | None = None) -> LeadFacts:
    """Gather the facts the rules match: the lead's fields and attributes, then enrichment (built-in,
    and for company size and industry what HTTP providers found when the lead did not say)."""
    where = locate(lead.country, lead.attributes, enrichment)
    size_text = _attribute(lead, "employees", "company_size", enrichment=enrichment)
    # Read as scoring reads it ("1.5k", "10k+", "51-200"); an unreadable size is unknown, not an error.
    found = read_headcount(size_text) if size_text is not None else None
    employees = SizeRange(low=found[0], high=found[1]) if found is not None else None
    seniority = department = None
    if enrichment is not None:
        seniority = enrichment.seniority if enrichment.seniority != "unknown" else None
        department = enrichment.department if enrichment.department != "other" else None
    return LeadFacts(
        source=lead.source, country=where.country, country_from=where.country_from, state=where.state,
        employees=employees,
        industry=_attribute(lead, "industry", enrichment=enrichment), seniority=seniority, department=department, tier=tier,
    )


def _fold(value: str) -> str:
    return value.strip().casefold()


def _one_of(value: str | None, allowed: Sequence[str]) -> bool:
    return value is not None and _fold(value) in {_fold(a) for a in allowed}


def _country(facts: LeadFacts) -> str:
    return f"country {facts.country}" + (f" (from the {facts.country_from})" if facts.country_from else "")


def rule_match(rule: TeamRule, facts: LeadFacts) -> list[str] | None:
    """The criteria ``facts`` meet, as text for the "why"; ``None`` when the rule does not match."""
    met: list[str] = []
    if rule.countries:
        if not _one_of(facts.country, rule.countries):
            return None
        met.append(_country(facts))
    if rule.regions:
        region = next((r for r in rule.regions if _one_of(facts.country, r.countries)), None)
        if region is None:
            return None
        met.append(f"{_country(facts)} in region {region.name}")
    if rule.states:
        if not _one_of(facts.state, rule.states):
            return None
        met.append(f"state {facts.state}")
    if rule.company_sizes:
        size = facts.employees
        band = next((b for b in rule.company_sizes if size is not None and size.within(b)), None)
        if band is None or size is None:
            return None
        met.append(f"employees {size} within {band}")
    for label, value, allowed in (
        ("industry", facts.industry, rule.industries),
        ("seniority", facts.seniority, rule.seniorities),
        ("department", facts.department, rule.departments),
        ("source", facts.source, rule.sources),
        ("tier", facts.tier, rule.tiers),
    ):
        if allowed:
            if not _one_of(value, allowed):
                return None
            met.append(f"{label} {value}")
    return met


def select_team(*, facts: LeadFacts, rules: Sequence[TeamRule], default_team: str,
                account: Account | None = None) -> tuple[str, str]:
    """Return the team for a lead and why: its account's team, else the first matching rule, else the default."""
    if account is not None and account.team:
        owner = f"owned by {account.owner}" if account.owner else "assigned"
        return account.team, f"account {account.label()} is {owner} (team {account.team})"
    for index, rule in enumerate(rules):
        met = rule_match(rule, facts)
        if met is None:
            continue
        name = f"routing rule #{index + 1}" + (f" '{rule.name}'" if rule.name else "")
        criteria = ", ".join(met) if met else "no criteria (matches every lead)"
        return rule.team, f"{name} matched: {criteria}"
    return default_team, f"no routing rule matched; default team {default_team}"


def tier_priority(tier_priorities: Mapping[str, int], *tiers: str | None) -> int | None:
    """The most urgent queue priority the given tiers map to (0 first), or ``None`` when none maps."""
    found = [tier_priorities[t] for t in tiers if t is not None and t in tier_priorities]
    return min(found) if found else None

"""Lead scoring as data: fit (who they are) plus intent (what they did), 0-100, a tier and the reasons.

Pure: ``score_lead`` reads the captured lead, its built-in enrichment, its touches and a snapshot
of the won/lost table (``rules.outcomes``) and returns a ``Score`` whose ``reasons`` say where
every point came from ("+22 seniority vp"). The weights are a ``ScoringModel``: shipped defaults
here, overridden by the ``scoring`` section of the YAML config.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from rules.capture import CapturedLead, attribute
from rules.enrichment import Enrichment
from rules.headcount import read_headcount
from rules.outcomes import LearningPolicy, OutcomeBoard, adjustments, board_key

__all__ = [
    "SizeBand",
    "ScoringModel",
    "Score",
    "score_lead",
    "company_size",
    "size_band",
    "segment_of",
    "tier_of",
    "queue_priority",
    "DEFAULT_SIZE_BANDS",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeBand:
    """Companies with ``minimum`` employees or more (up to the next band) are ``name`` and score ``points``."""

    name: str
    minimum: int
    points: int


DEFAULT_SIZE_BANDS: Final = (
    SizeBand(name="micro", minimum=1, points=0),
    SizeBand(name="smb", minimum=11, points=5),
    SizeBand(name="mid", minimum=51, points=10),
    SizeBand(name="large", minimum=201, points=15),
    SizeBand(name="enterprise", minimum=1001, points=18),
)


def _d(**points: int) -> dict[str, int]:
    return dict(points)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringModel:
    """The weights. Every table maps a value to points; values not listed score 0."""

    base: int = 0
    #: Fit: from the built-in enrichment of the title.
    seniority: Mapping[str, int] = field(default_factory=lambda: _d(
        c_level=25, vp=22, director=18, manager=12, senior=6, entry=-5))
    department: Mapping[str, int] = field(default_factory=lambda: _d(
        sales=10, marketing=8, executive=10, operations=6, it=6, engineering=4, finance=4, product=4, hr=2))
    #: Fit: employees (the lead's ``employees``, ``company_size`` or ``employee_count`` attribute; attribute
    #: names are compared without case, spaces or punctuation, so ``Employees`` and ``Employee Count`` count).
    size_bands: tuple[SizeBand, ...] = DEFAULT_SIZE_BANDS
    #: Fit: the lead's ``industry`` attribute, lower-cased.
    industry: Mapping[str, int] = field(default_factory=dict)
    #: Fit: the lead's ISO country (else the phone's).
    country: Mapping[str, int] = field(default_factory=dict)
    email_type: Mapping[str, int] = field(default_factory=lambda: _d(
        corporate=10, free=-5, disposable=-25, none=-5))
    #: Intent: the source of the latest touch.
    source: Mapping[str, int] = field(default_factory=lambda: {
        "demo-request": 25, "contact-sales": 20, "web-demo-form": 25, "trade-show": 10, "webinar": 8,
        "partner-feed": 8, "content-download": 5, "purchased-list": -10})
    campaign: Mapping[str, int] = field(default_factory=dict)
    #: Intent: words in what the lead wrote (``message``); each counts once.
    keywords: Mapping[str, int] = field(default_factory=lambda: {
        "demo": 8, "pricing": 8, "price": 6, "quote": 8, "trial": 5, "seats": 5, "licenses": 5, "urgent": 5,
        "asap": 5, "student": -15, "homework": -15, "job": -10, "unsubscribe": -20})
    #: Intent: points per touch after the first, up to ``repeat_touch_max``.
    repeat_touch: int = 4
    repeat_touch_max: int = 12
    #: ``(tier, minimum score)``, highest first; the last should start at 0.
    tiers: tuple[tuple[str, int], ...] = (("A", 70), ("B", 45), ("C", 20), ("D", 0))
    #: Leads scoring this or more become MQLs and are routed; below it they go to nurture.
    #: ``None`` (the default): no gate, every lead is routed as it was before scoring existed.
    mql_threshold: int | None = None
    #: Sources that make a lead an MQL whatever its score (a demo request is a hand raise).
    hot_sources: frozenset[str] = frozenset({"demo-request", "contact-sales", "web-demo-form"})
    #: How won/lost outcomes move scores (``rules.outcomes``).
    learning: LearningPolicy = LearningPolicy()
    #: ``scoring.learning.min_deals``: a source or segment whose tally counts fewer closed deals
    #: than this (weighted as the board counts them: a "no budget" loss is 2 in the segment) moves
    #: no score. 0 (the default): every tally counts, from its first deal.
    learning_min_deals: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Score:
    """A lead's score: the value 0-100, its tier, the parts and the reasons, in order."""

    value: int
    tier: str
    fit: int
    intent: int
    outcomes: int
    segment: str
    reasons: tuple[str, ...]


_WORD: Final = re.compile(r"[a-z0-9]+")
_SIZE_ATTRIBUTES: Final = ("employees", "company_size", "employee_count", "employees_count")


def company_size(lead: CapturedLead) -> int | None:
    """Employees from the lead's attributes, the low end of a band (``rules.headcount``):
    ``"200-500"`` → 200, ``"1,000+"`` → 1000, ``"40"`` → 40, ``"1.5k"`` → 1500, ``"2M"`` → 2000000."""
    for name in _SIZE_ATTRIBUTES:
        raw = attribute(lead.attributes, name)
        if not raw:
            continue
        found = read_headcount(raw)
        if found is not None:
            return found[0]
    return None


def size_band(employees: int | None, model: ScoringModel) -> SizeBand | None:
    if employees is None:
        return None
    found = None
    for band in sorted(model.size_bands, key=lambda b: b.minimum):
        if employees >= band.minimum:
            found = band
    return found


def segment_of(lead: CapturedLead, model: ScoringModel) -> str:
    """The lead's segment for the won/lost table: size band, and industry when known (``mid/software``)."""
    band = size_band(company_size(lead), model)
    industry = (attribute(lead.attributes, "industry") or "").strip().lower()
    name = band.name if band is not None else "unknown"
    return f"{name}/{industry}" if industry else name


def tier_of(value: int, model: ScoringModel) -> str:
    for tier, minimum in model.tiers:
        if value >= minimum:
            return tier
    return model.tiers[-1][0] if model.tiers else "-"


def queue_priority(score: Score | None) -> int:
    """The team queue's priority for a tier: A first (0), then B (1), everything else (2)."""
    if score is None:
        return 2
    return {"A": 0, "B": 1}.get(score.tier, 2)


def _add(points: int, reason: str, reasons: list[str]) -> int:
    if points:
        reasons.append(f"{points:+d} {reason}")
    return points


def _enough_deals(board: OutcomeBoard, source: str, segment: str, minimum: float) -> OutcomeBoard:
    """``board`` as ``adjustments`` reads it for this lead: its source and segment tallies, less
    the one(s) with fewer than ``minimum`` deals (the rest of the board is not copied per score)."""
    if minimum <= 0:
        return board
    keys = (board_key("source", source), board_key("segment", segment))
    return replace(board, tallies={k: t for k in keys if (t := board.tallies.get(k)) is not None and t.deals >= minimum})


def score_lead(lead: CapturedLead, enrichment: Enrichment | None, touches: int, model: ScoringModel,
               outcomes: OutcomeBoard | None = None) -> Score:
    """Score one lead; pure and total (missing data scores 0, never raises)."""
    reasons: list[str] = []
    fit = 0
    if model.base:
        fit += _add(model.base, "base", reasons)
    if enrichment is not None:
        fit += _add(model.seniority.get(enrichment.seniority, 0), f"seniority {enrichment.seniority}", reasons)
        fit += _add(model.department.get(enrichment.department, 0), f"department {enrichment.department}", reasons)
        fit += _add(model.email_type.get(enrichment.email_type, 0), f"e-mail {enrichment.email_type}", reasons)
    employees = company_size(lead)
    band = size_band(employees, model)
    if band is not None:
        fit += _add(band.points, f"company size {band.name} ({employees} employees)", reasons)
    industry = (attribute(lead.attributes, "industry") or "").strip().lower()
    if industry:
        fit += _add(model.industry.get(industry, 0), f"industry {industry}", reasons)
    country = lead.country or (enrichment.phone_country if enrichment is not None else None)
    if country:
        fit += _add(model.country.get(country, 0), f"country {country}", reasons)

    intent = _add(model.source.get(lead.source, 0), f"source {lead.source}", reasons)
    if lead.campaign:
        intent += _add(model.campaign.get(lead.campaign, 0), f"campaign {lead.campaign}", reasons)
    if lead.message:
        words = set(_WORD.findall(lead.message.lower()))
        for keyword, points in sorted(model.keywords.items()):
            if keyword in words:
                intent += _add(points, f"form mentions '{keyword}'", reasons)
    if touches > 1 and model.repeat_touch:
        repeat = min((touches - 1) * model.repeat_touch, model.repeat_touch_max)
        intent += _add(repeat, f"{touches} touches", reasons)

    segment = segment_of(lead, model)
    learned = 0
    if outcomes is not None:
        board = _enough_deals(outcomes, lead.source, segment, model.learning_min_deals)
        for points, reason in adjustments(board, source=lead.source, segment=segment, policy=model.learning):
            learned += _add(points, reason, reasons)
    value = max(0, min(100, fit + intent + learned))
    return Score(value=value, tier=tier_of(value, model), fit=fit, intent=intent, outcomes=learned,
                 segment=segment, reasons=tuple(reasons))

"""Where a lead is, read one way for both team rules and rep territories.

A lead says where it is with its ``country`` (ISO 3166-1 alpha-2; else the country of its phone
number, from built-in enrichment) and a ``state`` (or ``region``) attribute: an ISO 3166-2 code
(``US-CA``) or its bare suffix (``CA``), which the country prefixes. Team selection matches
``states: [US-CA]`` rules against that code and the team's eligibility filter matches a rep's
``territories`` (``US``, ``US-CA``) against the country and the code, so a lead a rule sends to
a team for its state is never refused by that team's reps for the same state.

A rep's territories, from the YAML or ``PUT /v1/reps``, are checked and expanded here once:
``territory_problem`` says why one would match no lead, ``expand_territories`` replaces region
names (``routing.regions``) by their countries.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rules.capture import attribute, country_problem

if TYPE_CHECKING:
    from rules.enrichment import Enrichment

__all__ = ["STATE_ATTRIBUTES", "Location", "subdivision", "locate", "uncovered", "territory_problem",
           "expand_territories"]

#: The lead attributes that name its state, first non-empty wins.
STATE_ATTRIBUTES = ("state", "region")


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """A lead's country and ISO 3166-2 subdivision (``None``: not known)."""

    country: str | None = None
    #: Where the country came from when not from the lead itself (``"phone"``).
    country_from: str | None = None
    #: ``US-CA``: always prefixed with its country when the country is known.
    state: str | None = None


def subdivision(value: str | None, country: str | None) -> str | None:
    """``CA`` in ``US`` -> ``US-CA``; ``us-ca`` -> ``US-CA``; blank -> ``None``.

    A bare code without a country stays bare (there is nothing to prefix it with).
    """
    text = (value or "").strip().upper()
    if not text:
        return None
    if "-" not in text and country:
        return f"{country.strip().upper()}-{text}"
    return text


def locate(country: str | None, attributes: Mapping[str, str], enrichment: Enrichment | None = None) -> Location:
    """The lead's location from its ``country``, its attributes and (for the country) its phone."""
    where = country.strip().upper() if country and country.strip() else None
    country_from = None
    if where is None and enrichment is not None and enrichment.phone_country:
        where, country_from = enrichment.phone_country.upper(), "phone"
    named = attribute(attributes, *STATE_ATTRIBUTES)  # "State" and "state" alike
    return Location(country=where, country_from=country_from, state=subdivision(named, where))


def uncovered(territories: Sequence[str], country: str | None, state: str | None) -> str | None:
    """The lead's place as text (``US-CA``) when ``territories`` do not cover it; ``None`` when they do.

    Empty territories cover everywhere, and a lead that says nowhere asks for no territory. A
    territory covers the lead when it is the lead's country or its state; ``state`` may come bare
    (a queue entry written before states were prefixed) and is normalized here the same way.
    """
    place = subdivision(state, country)
    wanted = {x.casefold() for x in (country.strip() if country else None, place) if x}
    if not territories or not wanted:
        return None
    if {t.strip().casefold() for t in territories} & wanted:
        return None
    return place or (country.strip() if country else None)


_COUNTRY_OR_STATE = re.compile(r"[A-Z]{2}(?:-[A-Z0-9]{1,3})?")


def territory_problem(territory: str, regions: Mapping[str, tuple[str, ...]]) -> str | None:
    """Why a rep's ``territory`` would match no lead, or ``None``.

    It must be a region of ``routing.regions`` (expanded to its countries), an ISO country (``US``)
    or an ISO 3166-2 state (``US-CA``), as leads are located (``locate``): anything else (``EMEA``
    with no such region, ``Narnia``, ``XX-CA``) left the rep never eligible for a lead with a place.
    """
    if territory in regions:
        return None
    code = territory.strip().upper()
    if _COUNTRY_OR_STATE.fullmatch(code) and country_problem(code[:2]) is None:
        return None
    defined = f"a region of routing.regions ({', '.join(regions)})" if regions else "a region of routing.regions"
    return (f"unknown territory {territory[:64]!r}: use an ISO 3166-1 country (US), an ISO 3166-2 state (US-CA) "
            f"or {defined}")


def expand_territories(territories: Iterable[str], regions: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """A rep's territories with each region name replaced by its countries (first mention kept)."""
    out: dict[str, None] = {}
    for territory in territories:
        for place in regions.get(territory, (territory,)):
            out.setdefault(place, None)
    return tuple(out)

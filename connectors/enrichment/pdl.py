"""People Data Labs' Company Enrichment API as a ready-made provider (``kind: pdl_company``).

``GET https://api.peopledatalabs.com/v5/company/enrich?website=<domain>`` with the key in the
``X-Api-Key`` header (never the ``api_key`` query parameter: URLs end up in logs). A match is
``200`` with the company record at the top level (``status``, ``name``, ``display_name``,
``size``, ``employee_count``, ``industry``, ``location.country``, ``likelihood`` …); no match is
``404`` (PDL charges per match only). ``min_likelihood`` raises the bar for a match.
"""
from __future__ import annotations

from typing import Final

__all__ = ["PDL_URL", "PDL_AUTH_HEADER", "PDL_FIELDS", "pdl_url"]

PDL_URL: Final = "https://api.peopledatalabs.com/v5/company/enrich"
PDL_AUTH_HEADER: Final = "X-Api-Key"

#: Our field → PDL Company Schema paths (base fields, available to every PDL customer).
PDL_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "company_name": ("display_name", "name"),
    "company_size": ("size",),
    "employees": ("employee_count",),
    "industry": ("industry",),
    "founded": ("founded",),
    "company_type": ("type",),
    "company_country": ("location.country",),
    "company_region": ("location.region",),
    "company_locality": ("location.locality",),
    "company_linkedin": ("linkedin_url",),
    "company_ticker": ("ticker",),
}


def pdl_url(base_url: str = PDL_URL, min_likelihood: int | None = None) -> str:
    """The lookup URL template (``{domain}`` is filled in per lead)."""
    url = f"{base_url.rstrip('/')}?website={{domain}}"
    return url if min_likelihood is None else f"{url}&min_likelihood={min_likelihood}"

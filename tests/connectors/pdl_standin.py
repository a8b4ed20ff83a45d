"""A stand-in for People Data Labs' Company Enrichment API, following its public documentation.

``GET /v5/company/enrich`` with the key in ``X-Api-Key`` (or the ``api_key`` parameter) and at
least one of ``website``, ``name``, ``profile``, ``ticker``, ``pdl_id``. A match is ``200`` with
the company record at the top level plus ``status`` and ``likelihood``; no match (or a match
under ``min_likelihood``) is ``404``; a bad key ``401``; no usable parameter ``400``. Errors are
``{"status": <code>, "error": {"type": ..., "message": ...}}``.

Tests steer it: ``delay_s`` (a slow provider), ``fail_with`` (an outage status), and read
``calls`` (lookups by website) and ``seen_keys`` (the API keys it received).
"""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web

from tests.integration.harness import LocalServer

__all__ = ["PdlStandIn", "NORTHWIND"]

#: A record shaped like PDL's example company record (base fields).
NORTHWIND: dict[str, Any] = {
    "id": "nw3xAmpl3Id0000000000000000",
    "name": "northwind traders",
    "display_name": "Northwind Traders",
    "size": "201-500",
    "employee_count": 312,
    "founded": 1998,
    "industry": "wholesale",
    "type": "private",
    "website": "northwind.example",
    "linkedin_url": "linkedin.com/company/northwind-traders",
    "ticker": None,
    "location": {"name": "seattle, washington, united states", "locality": "seattle", "region": "washington",
                 "country": "united states", "continent": "north america"},
    "tags": ["wholesale", "food distribution"],
}


class PdlStandIn(LocalServer):
    """The API on 127.0.0.1, with companies keyed by website domain."""

    def __init__(self, api_key: str, companies: dict[str, dict[str, Any]] | None = None,
                 likelihood: int = 8) -> None:
        self.api_key = api_key
        self.companies = dict(companies or {"northwind.example": NORTHWIND})
        self.likelihood = likelihood
        self.delay_s = 0.0
        self.fail_with: int | None = None
        self.calls: Counter[str] = Counter()
        self.seen_keys: list[str] = []
        super().__init__()

    async def _enrich(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-Api-Key") or request.query.get("api_key", "")
        self.seen_keys.append(key)
        if key != self.api_key:
            return _error(401, "authentication_error", "Invalid API key")
        website = _domain(request.query.get("website", ""))
        if not website and not any(request.query.get(p) for p in ("name", "profile", "ticker", "pdl_id")):
            return _error(400, "invalid_request_error",
                          "Request object must contain at least one of: pdl_id, name, ticker, website, profile")
        self.calls[website] += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_with is not None:
            return _error(self.fail_with, "server_error", "Internal server error")
        record = self.companies.get(website)
        minimum = int(request.query.get("min_likelihood", "0") or 0)
        if record is None or self.likelihood < minimum:
            return _error(404, "not_found", "No records were found matching your request")
        return web.json_response({"status": 200, **record, "likelihood": self.likelihood})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v5/company/enrich", self._enrich)


def _domain(website: str) -> str:
    host = website.strip().lower().removeprefix("https://").removeprefix("http://").split("/")[0]
    return host.removeprefix("www.")


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"status": status, "error": {"type": kind, "message": message}}, status=status)

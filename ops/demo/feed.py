"""A demo lead feed: synthetic, deterministic, realistic-looking leads posted to ``POST /v1/leads``.

Every address is at a reserved example domain (RFC 2606: ``example.com/.org/.net`` and the
``.example`` TLD) and every phone is in a range set aside for fiction (US 555-01xx, Ofcom's
drama ranges), so the demo never looks like, or reaches, a real person.
"""
from __future__ import annotations

import asyncio
import random
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from sla.clock import Clock, SystemClock

__all__ = ["COUNTRIES", "FeedLead", "FeedResult", "DemoFeed", "generate_leads"]

COUNTRIES = ("US", "GB", "DE", "FR", "ES", "BR")

_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "US": (("Emily", "Jacob", "Olivia", "Michael", "Ava", "Daniel"), ("Walker", "Brooks", "Hayes", "Reed", "Foster")),
    "GB": (("Oliver", "Amelia", "Harry", "Isla", "George", "Freya"), ("Clarke", "Hughes", "Price", "Bennett", "Ward")),
    "DE": (("Lukas", "Mia", "Jonas", "Lea", "Felix", "Hannah"), ("Müller", "Schäfer", "Krüger", "Becker", "Wolf")),
    "FR": (("Léa", "Hugo", "Chloé", "Louis", "Manon", "Théo"), ("Lefèvre", "Moreau", "Girard", "Dubois", "Roux")),
    "ES": (("Lucía", "Hugo", "Martina", "Pablo", "Sofía", "Álvaro"), ("García", "Martínez", "López", "Sánchez", "Ruiz")),
    "BR": (("João", "Ana", "Pedro", "Beatriz", "Gabriel", "Larissa"), ("Silva", "Souza", "Oliveira", "Pereira", "Lima")),
}
# Fictitious companies (the usual sample-data names); their domains are under the .example TLD.
_COMPANIES = (
    "Northwind Traders", "Contoso", "Fabrikam", "Tailspin Toys", "Wingtip Toys", "Adventure Works",
    "Litware", "Proseware", "Woodgrove Bank", "Alpine Ski House", "Coho Winery", "Fourth Coffee",
    "Trey Research", "Blue Yonder Airlines", "Acme Corp", "Globex", "Initech", "Lucerne Publishing",
)
_TITLES = (
    "VP of Sales", "Head of Marketing", "CTO", "Sales Operations Manager", "Director of RevOps",
    "Software Engineer", "Marketing Coordinator", "CFO", "Procurement Lead", "Founder & CEO",
)
_SOURCES = (
    ("web_form", "pricing-page"), ("web_form", "contact-us"), ("webinar", "kafka-at-scale"),
    ("content_download", "routing-playbook"), ("linkedin_ads", "q3-abm"), ("google_ads", "brand-search"),
    ("partner_referral", "northwind-partners"), ("event_scan", "saas-summit"),
)
_MESSAGES = (None, None, "Looking for a demo for our SDR team.", "What does pricing look like for 20 seats?",
             "We route leads by hand today.", None)
_PERSONAL_DOMAINS = ("example.com", "example.org", "example.net")
# Fiction-only phone ranges that still pass phonenumbers.is_valid_number.
_US_AREAS = ("202", "212", "312", "415", "617", "206")
_GB_RANGES = ("20 7946 0", "113 496 0", "161 496 0")


@dataclass(frozen=True, slots=True)
class FeedLead:
    """One lead the feed will post; ``repeat`` when it is a person already sent (dedup demo)."""

    seq: int
    payload: dict[str, Any]
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class FeedResult:
    """The API's answer to one post: ``outcome`` is accepted, duplicate, rejected or error."""

    seq: int
    outcome: str
    status: int | None
    lead_id: str | None
    company: str | None
    error: str | None
    sent_at: datetime
    elapsed_s: float


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


def _phone(rng: random.Random, country: str) -> str:
    if country == "GB":
        return "+44 " + rng.choice(_GB_RANGES) + f"{rng.randrange(1000):03d}"
    return f"+1{rng.choice(_US_AREAS)}55501{rng.randrange(100):02d}"


def _person(rng: random.Random, seq: int) -> dict[str, Any]:
    phone_only = rng.random() < 0.08
    country = rng.choice(("US", "GB")) if phone_only else rng.choice(COUNTRIES)
    firsts, lasts = _NAMES[country]
    first, last, company = rng.choice(firsts), rng.choice(lasts), rng.choice(_COMPANIES)
    source, campaign = rng.choice(_SOURCES)
    lead: dict[str, Any] = {
        "first_name": first, "last_name": last, "company": company, "title": rng.choice(_TITLES),
        "country": country, "source": source, "campaign": campaign,
    }
    if not phone_only:
        # A sequence suffix keeps people distinct: only deliberate repeats share an identity.
        domain = f"{_ascii(company)}.example" if rng.random() < 0.8 else rng.choice(_PERSONAL_DOMAINS)
        lead["email"] = f"{_ascii(first)}.{_ascii(last)}{seq}@{domain}"
    if phone_only or (country in ("US", "GB") and rng.random() < 0.3):
        lead["phone"] = _phone(rng, country)
    if message := rng.choice(_MESSAGES):
        lead["message"] = message
    return lead


def generate_leads(seed: int) -> Iterator[FeedLead]:
    """An endless, deterministic stream of demo leads for ``seed`` (about 1 in 8 a repeat)."""
    rng = random.Random(seed)
    people: list[dict[str, Any]] = []
    seq = 0
    while True:
        seq += 1
        if len(people) >= 5 and rng.random() < 0.12:
            # The same person again through another channel: the engine dedups or reopens.
            earlier = rng.choice(people)
            source, campaign = rng.choice(_SOURCES)
            yield FeedLead(seq, {**earlier, "source": source, "campaign": campaign}, repeat=True)
            continue
        lead = _person(rng, seq)
        people.append(lead)
        yield FeedLead(seq, lead)


def _gaps(rng: random.Random, rate: float) -> Iterator[float]:
    """Bursty arrivals averaging ``rate``/s: Poisson gaps, and now and then a burst then a lull."""
    while True:
        if rng.random() < 0.1:
            burst = rng.randint(3, 6)
            yield from [0.05] * (burst - 1)
            yield burst / rate  # the lull pays the burst back, so the mean rate holds
        else:
            yield rng.expovariate(rate)


class DemoFeed:
    """Post ``count`` leads (forever when ``None``) at ``rate``/s to ``{api_url}/v1/leads``."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        count: int | None = None,
        rate: float = 2.0,
        seed: int = 7,
        session: aiohttp.ClientSession | None = None,
        on_result: Callable[[FeedResult], None] | None = None,
        clock: Clock | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._url = api_url.rstrip("/") + "/v1/leads"
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._count = count
        self._rate = rate
        self._seed = seed
        self._session = session
        self._on_result = on_result
        self._clock: Clock = clock or SystemClock()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.results: list[FeedResult] = []

    async def run(self) -> list[FeedResult]:
        """Post until ``count`` leads are sent (or forever); cancel to stop early."""
        own = self._session is None
        session = self._session or aiohttp.ClientSession()
        try:
            loop = asyncio.get_running_loop()
            gaps = _gaps(random.Random(self._seed + 1), self._rate)
            due = loop.time()
            for lead in generate_leads(self._seed):
                if self._count is not None and lead.seq > self._count:
                    break
                # Absolute schedule: a slow answer does not slow the feed down over time.
                await asyncio.sleep(max(0.0, due - loop.time()))
                self._note(await self._post(session, lead))
                due += next(gaps)
        finally:
            if own:
                await session.close()
        return self.results

    def _note(self, result: FeedResult) -> None:
        self.results.append(result)
        if self._on_result is not None:
            self._on_result(result)

    async def _post(self, session: aiohttp.ClientSession, lead: FeedLead) -> FeedResult:
        loop = asyncio.get_running_loop()
        started, sent_at = loop.time(), self._clock.now()
        company = lead.payload.get("company")
        headers = {**self._headers, "Idempotency-Key": f"demo-{self._seed}-{lead.seq}"}
        try:
            async with session.post(self._url, data=orjson.dumps(lead.payload), headers=headers,
                                    timeout=self._timeout) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
            return FeedResult(lead.seq, "error", None, None, company, error, sent_at, loop.time() - started)
        body = _json(raw)
        elapsed = loop.time() - started
        if status == 202:
            outcome = "duplicate" if body.get("status") == "duplicate" else "accepted"
            lead_id = body.get("lead_id")
            return FeedResult(lead.seq, outcome, status, lead_id if isinstance(lead_id, str) else None,
                              company, None, sent_at, elapsed)
        outcome = "rejected" if 400 <= status < 500 else "error"
        return FeedResult(lead.seq, outcome, status, None, company, _error_text(status, body), sent_at, elapsed)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_text(status: int, body: dict[str, Any]) -> str:
    # Only the error code and field names: messages may echo the submitted (personal) values.
    error = body.get("error")
    if not isinstance(error, dict):
        return f"HTTP {status}"
    fields = [f.get("field") for f in error.get("fields") or () if isinstance(f, dict)]
    named = ", ".join(str(f) for f in fields if f)
    return f"{error.get('code', status)}" + (f" ({named})" if named else "")

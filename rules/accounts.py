"""Accounts (lead-to-account matching): which company domain belongs to which owner, team and tier.

An account is keyed by the company's *registrable* domain (``acme.co.uk``, never
``mail.acme.co.uk`` or ``www.acme.co.uk``), computed with the Public Suffix List that
``publicsuffixlist`` bundles (no network). A lead's candidate domains are its corporate e-mail
domain and its website's domain, reduced the same way, so ``ana@emea.acme.co.uk`` and
``https://www.acme.co.uk/about`` both match the account ``acme.co.uk``. Free and disposable
mail providers never match an account, and cannot be one (``account_domain_problem``); a website
on a host where anyone has a page (``SHARED_HOSTS``: a LinkedIn profile, a Google Site) is not
the company's domain either.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final

import idna
from publicsuffixlist import PublicSuffixList

from rules.capture import CapturedLead, attribute
from rules.enrichment import Enrichment, enrich, mail_provider

__all__ = ["Account", "MAX_DOMAINS", "WEBSITE_ATTRIBUTES", "SHARED_HOSTS", "registrable_domain", "normalize_domain",
           "account_domain_problem", "lead_domains"]

#: How many candidate domains one lead is matched on (e-mail, website).
MAX_DOMAINS: Final = 2
#: Lead attributes that may hold the company's website.
WEBSITE_ATTRIBUTES: Final = ("website", "company_website", "domain", "company_domain")

#: Registrable domains where anyone may have a page: a lead's ``website`` there (a profile, a free
#: site builder's page) names the host, not the lead's company, so it matches no account. Hosts
#: that give each site its own registrable domain (``*.github.io``, ``*.wixsite.com``: on the
#: Public Suffix List's private section) need no entry. Kept short on purpose: a company's own
#: domain is in its e-mail, and each entry also stops a real customer's website from matching
#: (an account ``google.com`` still matches ``@google.com`` e-mail, not the website google.com).
SHARED_HOSTS: Final = frozenset({
    "linkedin.com", "facebook.com", "instagram.com", "twitter.com", "x.com", "youtube.com", "tiktok.com",
    "google.com", "github.com", "medium.com", "linktr.ee", "about.me",
})

_PSL: Final = PublicSuffixList()


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A company RevOps knows: its owner (a rep id), the owner's team, and its tier."""

    domain: str
    name: str = ""
    #: The rep who owns the account: preferred for its leads when eligible.
    owner: str | None = None
    #: The team the account's leads go to (the owner's team).
    team: str | None = None
    #: A label such as ``strategic``; ``routing.tier_priorities`` turns it into a queue priority.
    tier: str | None = None
    updated_at: datetime

    def label(self) -> str:
        return f"{self.domain} ({self.name})" if self.name else self.domain


@lru_cache(maxsize=4096)
def registrable_domain(host: str) -> str | None:
    """The registrable domain of ``host`` (``mail.acme.co.uk`` -> ``acme.co.uk``), or ``None``.

    ``None`` for a bare public suffix (``co.uk``), a single label (``localhost``) or an IP address.
    """
    host = host.strip().strip(".").lower()
    if not host or "." not in host or host.replace(".", "").isdigit() or ":" in host:
        return None
    try:
        host = idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None
    found = _PSL.privatesuffix(host)
    return found if isinstance(found, str) else None


def normalize_domain(raw: str) -> str:
    """The account key for ``raw`` (a domain, a host or a URL); ``ValueError`` naming the problem."""
    text = raw.strip()
    if not text:
        raise ValueError("a domain is required, such as acme.com")
    host = _host_of(text)
    if host is None:
        raise ValueError(f"{raw!r} is not a domain name such as acme.com")
    domain = registrable_domain(host)
    if domain is None:
        raise ValueError(f"{raw!r} is not a company's domain (a public suffix, an IP or a single label)")
    return domain


def account_domain_problem(domain: str) -> str | None:
    """Why ``domain`` (a registrable domain) cannot be an account's, or ``None`` when it can.

    A free or disposable mail provider's domain belongs to its users, not to one company: as an
    account, its owner would be offered every lead that gave it as a website.
    """
    kind = mail_provider(domain)
    if kind is None:
        return None
    return (f"{domain} is a {kind} e-mail provider's domain: its addresses belong to anyone, not to one "
            "company; give the company's own domain")


def _host_of(text: str) -> str | None:
    """The host of a URL or of a bare domain (``https://www.acme.com:443/x`` -> ``www.acme.com``)."""
    text = text.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    text = text.rsplit("@", 1)[-1]  # user info
    text = text.split(":", 1)[0]    # port
    text = text.strip().strip(".")
    if not text or any(c.isspace() for c in text):
        return None
    return text


def lead_domains(lead: CapturedLead, enrichment: Enrichment | None = None) -> tuple[str, ...]:
    """The registrable domains a lead could match an account on: corporate e-mail first, then website."""
    enrichment = enrichment if enrichment is not None else enrich(lead)
    found: list[str] = []
    if enrichment.email_type in ("corporate", "role") and enrichment.email_domain:
        domain = registrable_domain(enrichment.email_domain)
        if domain:
            found.append(domain)
    for name in WEBSITE_ATTRIBUTES:
        raw = attribute(lead.attributes, name) or ""  # "Website" and "website" alike
        host = _host_of(raw) if raw.strip() else None
        domain = registrable_domain(host) if host else None
        if domain in SHARED_HOSTS or (domain and mail_provider(domain)):
            continue  # a profile or a mailbox provider: not the company's own site; another attribute may be
        if domain and domain not in found:
            found.append(domain)
            break
    return tuple(found[:MAX_DOMAINS])

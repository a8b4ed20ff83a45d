"""What an enrichment provider is: given a lookup key (a company domain or an e-mail), an answer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from leadflow.errors import TransientError
from rules.accounts import lead_domains
from rules.capture import CapturedLead

__all__ = ["Answer", "EnrichmentProvider", "LookupKind", "ProviderError", "lookup_key"]

#: What a provider looks a lead up by: its company domain (corporate e-mail domain, else website),
#: or its e-mail address (person lookups).
LookupKind = Literal["domain", "email"]


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's answer: ``found`` with the mapped fields, or not (no record for that key)."""

    found: bool
    fields: dict[str, str] = field(default_factory=dict)


class ProviderError(TransientError):
    """The provider failed (HTTP error, bad body, refused connection). The message never holds the
    lookup key or the API key: it is logged and counted."""


class EnrichmentProvider(Protocol):
    """One outside source of lead data. ``lookup`` may take as long as it likes: the enricher
    cancels it when the time budget runs out."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> LookupKind: ...

    async def lookup(self, key: str) -> Answer: ...


def lookup_key(lead: CapturedLead, kind: LookupKind) -> str | None:
    """The value ``lead`` is looked up by for a provider of ``kind`` (``None``: nothing to ask)."""
    if kind == "email":
        return lead.email or None
    domains = lead_domains(lead)
    return domains[0] if domains else None

"""HTTP enrichment providers for the intake: a provider protocol, a configurable HTTP provider,
People Data Labs' company API as a preset, a Redis cache and the time-budgeted batch enricher.

Configuration is the ``enrichment:`` section of the YAML config (``EnrichmentConfig``); API keys
are only ever read from the environment variables it names, and never logged.
"""
from __future__ import annotations

from connectors.enrichment.cache import EnrichmentCache
from connectors.enrichment.config import EnrichmentConfig, HttpProviderConfig
from connectors.enrichment.enricher import Enricher, EnrichedBatch
from connectors.enrichment.http import HttpProvider
from connectors.enrichment.provider import Answer, EnrichmentProvider, LookupKind, ProviderError, lookup_key

__all__ = [
    "Answer", "EnrichmentProvider", "LookupKind", "ProviderError", "lookup_key",
    "HttpProvider", "EnrichmentCache", "Enricher", "EnrichedBatch", "EnrichmentConfig", "HttpProviderConfig",
]

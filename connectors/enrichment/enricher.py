"""Enrich a batch of leads from the HTTP providers within one strict time budget.

For a batch (the intake's ``take_events``): every distinct ``(provider, lookup key)`` is asked
once — the Redis cache first, in one round trip, then the providers with at most
``parallelism`` requests in flight. Whatever has not answered when the budget runs out is
cancelled and counted as a timeout: the leads go on without it, so routing never waits longer
than the budget. New answers are written to the cache afterwards (``remember``), once the
batch's commands are on their way.

Every lookup is counted once by ``on_lookup(provider, outcome)``:

* ``hit`` — answered from the cache (a found record or a cached "no record");
* ``miss`` — not cached: the provider answered (found or not);
* ``timeout`` — the provider did not answer within the budget;
* ``error`` — the provider failed (HTTP error, bad body, unreachable);
* ``degraded`` — Redis was down and the provider answered without the cache, or the provider
  was skipped because its circuit is open after ``failure_threshold`` failures in a row
  (it is tried again after ``cooldown_s``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from connectors.enrichment.cache import CacheUnavailable, EnrichmentCache
from connectors.enrichment.provider import Answer, EnrichmentProvider, ProviderError, lookup_key
from rules.capture import CapturedLead
from rules.enrichment import LookupStatus, ProviderFindings

__all__ = ["Enricher", "EnrichedBatch", "Outcome"]

log = logging.getLogger(__name__)

Outcome = Literal["hit", "miss", "timeout", "error", "degraded"]
_Pair = tuple[str, str]  # (provider name, lookup key)


@dataclass(slots=True)
class EnrichedBatch:
    """Per lead (in order), what each provider said; and the fresh answers to cache."""

    findings: list[tuple[ProviderFindings, ...]]
    to_cache: dict[_Pair, Answer] = field(default_factory=dict)


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    open_until: float = 0.0


class Enricher:
    """The providers, the cache and the budget; one per worker process."""

    def __init__(self, providers: Sequence[EnrichmentProvider], cache: EnrichmentCache | None, *,
                 budget_s: float, parallelism: int = 16, failure_threshold: int = 5, cooldown_s: float = 30.0,
                 on_lookup: Callable[[str, Outcome], None] = lambda provider, outcome: None,
                 on_cache_degraded: Callable[[str], None] = lambda operation: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if budget_s <= 0 or parallelism < 1:
            raise ValueError("budget_s must be > 0 and parallelism >= 1")
        self._providers = {p.name: p for p in providers}
        self._cache = cache
        self.budget_s = budget_s
        self._parallelism = parallelism
        self._threshold = failure_threshold
        self._cooldown = cooldown_s
        self._on_lookup = on_lookup
        self._on_cache_degraded = on_cache_degraded
        self._clock = clock
        self._circuits = {name: _Circuit() for name in self._providers}

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._providers)

    async def enrich(self, leads: Sequence[CapturedLead]) -> EnrichedBatch:
        """Look every lead up; returns within the budget (plus the cancellation of what was late)."""
        deadline = self._clock() + self.budget_s
        keys = [{name: lookup_key(lead, p.kind) for name, p in self._providers.items()} for lead in leads]
        wanted = list(dict.fromkeys((name, key) for per_lead in keys for name, key in per_lead.items() if key))
        answers: dict[_Pair, tuple[LookupStatus, bool, Answer | None]] = {}
        cached, cache_down = await self._cached(wanted, deadline)
        for pair, hit in cached.items():
            answers[pair] = ("found" if hit.found else "not_found", True, hit)
            self._on_lookup(pair[0], "hit")
        to_ask = [pair for pair in wanted if pair not in cached]
        batch = EnrichedBatch(findings=[])
        for pair, (status, fresh) in (await self._ask_all(to_ask, deadline, cache_down)).items():
            answers[pair] = (status, False, fresh)
            if fresh is not None and self._cache is not None and not cache_down:
                batch.to_cache[pair] = fresh
        for per_lead in keys:
            findings = []
            for name, key in per_lead.items():
                if key and (name, key) in answers:
                    status, from_cache, answer = answers[(name, key)]
                    findings.append(ProviderFindings(provider=name, status=status, cached=from_cache,
                                                     fields=dict(answer.fields) if answer is not None else {}))
            batch.findings.append(tuple(findings))
        return batch

    async def remember(self, batch: EnrichedBatch) -> None:
        """Cache the batch's fresh answers (bounded by the cache's own timeout; never raises)."""
        if self._cache is None or not batch.to_cache:
            return
        try:
            await self._cache.put_many(batch.to_cache)
        except CacheUnavailable as exc:
            log.warning("enrichment cache unavailable for writes, continuing without it: %s", exc)
            self._on_cache_degraded("enrichment_cache_put")

    # --- internals ----------------------------------------------------------------------

    async def _cached(self, wanted: list[_Pair], deadline: float) -> tuple[dict[_Pair, Answer], bool]:
        """The cached answers, and whether the cache is down (degraded mode) for this batch."""
        if self._cache is None or not wanted:
            return {}, False
        try:
            # At most half the budget for the cache: a slow Redis must leave the providers time.
            return await self._cache.get_many(wanted, (deadline - self._clock()) / 2), False
        except CacheUnavailable as exc:
            log.warning("enrichment cache unavailable, asking providers directly: %s", exc)
            self._on_cache_degraded("enrichment_cache_get")
            return {}, True

    async def _ask_all(self, pairs: list[_Pair], deadline: float,
                       cache_down: bool) -> dict[_Pair, tuple[LookupStatus, Answer | None]]:
        results: dict[_Pair, tuple[LookupStatus, Answer | None]] = {}
        runnable: list[_Pair] = []
        for pair in pairs:
            if self._circuit_open(pair[0]):
                results[pair] = ("skipped", None)
                self._on_lookup(pair[0], "degraded")
            else:
                runnable.append(pair)
        if not runnable:
            return results
        gate = asyncio.Semaphore(self._parallelism)
        tasks = {asyncio.ensure_future(self._ask(pair, gate)): pair for pair in runnable}
        done, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - self._clock()))
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)  # let the cancellations land
        for task, pair in tasks.items():
            name = pair[0]
            if task in late or task.cancelled():
                results[pair] = ("timeout", None)
                self._failed(name)
                self._on_lookup(name, "timeout")
                continue
            error = task.exception()
            if error is not None:
                if not isinstance(error, ProviderError):
                    log.error("enrichment provider %s raised %s", name, type(error).__name__)
                else:
                    log.warning("enrichment: %s", error)
                results[pair] = ("error", None)
                self._failed(name)
                self._on_lookup(name, "error")
                continue
            answer = task.result()
            results[pair] = ("found" if answer.found else "not_found", answer)
            self._circuits[name] = _Circuit()
            self._on_lookup(name, "degraded" if cache_down else "miss")
        return results

    async def _ask(self, pair: _Pair, gate: asyncio.Semaphore) -> Answer:
        async with gate:
            return await self._providers[pair[0]].lookup(pair[1])

    def _circuit_open(self, name: str) -> bool:
        return self._circuits[name].open_until > self._clock()

    def _failed(self, name: str) -> None:
        circuit = self._circuits[name]
        circuit.failures += 1
        if circuit.failures >= self._threshold:
            circuit.open_until = self._clock() + self._cooldown
            circuit.failures = 0
            log.warning("enrichment provider %s failed %d times in a row: skipped for %.0f s",
                        name, self._threshold, self._cooldown)

"""Demo reps "work" the leads delivered to them, so capacity frees up and the demo keeps flowing."""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from ops.demo.receiver import Delivery

__all__ = ["Disposition", "DemoDisposer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Disposition:
    """One disposition posted: the API's status (``None`` when it could not be reached)."""

    lead_id: str
    rep_id: str
    outcome: str
    status: int | None


class DemoDisposer:
    """After 3–10 s, close each lead a rep received: ``POST /v1/leads/{lead_id}/disposition``."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        session: aiohttp.ClientSession | None = None,
        min_delay_s: float = 3.0,
        max_delay_s: float = 10.0,
        nurture_share: float = 0.6,
        seed: int | None = None,
        timeout_s: float = 5.0,
        on_result: Callable[[Disposition], None] | None = None,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._session = session
        self._own_session = False
        self._delays = (min_delay_s, max_delay_s)
        self._nurture_share = nurture_share
        self._random = random.Random(seed)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduled: set[tuple[str, str]] = set()
        self._on_result = on_result
        self.results: list[Disposition] = []

    async def start(self) -> None:
        if self._session is None:
            self._session, self._own_session = aiohttp.ClientSession(), True

    async def stop(self) -> None:
        """Cancel the leads still being "worked" and wait for them; close an owned session."""
        tasks, self._tasks = set(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session, self._own_session = None, False

    def on_delivery(self, delivery: Delivery) -> None:
        """The receiver's callback: schedule work for each first, verified assignment."""
        if (delivery.event_type != "lead.assigned" or not delivery.verified or delivery.duplicate
                or delivery.status != 204 or delivery.lead_id is None or self._session is None):
            return
        key = (delivery.lead_id, delivery.webhook_id)
        if key in self._scheduled:
            return
        self._scheduled.add(key)
        task = asyncio.get_running_loop().create_task(self._work(delivery.lead_id, delivery.rep_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, lead_id: str, rep_id: str) -> None:
        await asyncio.sleep(self._random.uniform(*self._delays))
        outcome = "nurture" if self._random.random() < self._nurture_share else "disqualified"
        url = f"{self._api_url}/v1/leads/{lead_id}/disposition"
        status: int | None = None
        assert self._session is not None
        try:
            async with self._session.post(url, json={"status": outcome, "reason": "demo"},
                                          headers=self._headers, timeout=self._timeout) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Debug only: the live view counts failures; a log line per lead would scroll it away.
            log.debug("disposition of %s failed: %s", lead_id, type(exc).__name__)
        result = Disposition(lead_id, rep_id, outcome, status)
        self.results.append(result)
        if self._on_result is not None:
            self._on_result(result)

"""What the HTTP API needs from the stream processor, as a protocol (connectors never import streams)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from aiohttp import web

from rules.account_book import AccountCommand
from rules.accounts import Account
from rules.commands import LeadCommand, RepCommand
from rules.lead import LeadState
from rules.reps import RepEntry
from rules.team import TeamState

__all__ = ["Entity", "EnginePort", "Readiness"]

Entity = Literal["lead", "team", "rep", "account"]


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    detail: str


class EnginePort(Protocol):
    """The stream processor as the API sees it: send commands, read local state, find owners."""

    async def capture(self, records: list[tuple[str, bytes]]) -> None:
        """Put raw inbound records ``(key, json bytes)`` on ``leads.inbound`` and wait for Kafka's ack.

        Raises ``TransientError`` when Kafka cannot take them now.
        """

    async def send_lead_command(self, lead_id: str, command: LeadCommand) -> None: ...

    async def send_rep_command(self, rep_id: str, command: RepCommand) -> None: ...

    async def send_account_command(self, domain: str, command: AccountCommand) -> None: ...

    async def forward_to_owner(self, entity: Entity, key: str, request: web.Request) -> web.Response | None:
        """Relay the request to the worker owning ``key``; ``None`` when this worker owns it."""

    def lead(self, lead_id: str) -> LeadState | None: ...

    def team(self, team_id: str) -> TeamState | None: ...

    def rep(self, rep_id: str) -> RepEntry | None: ...

    def account(self, domain: str) -> Account | None: ...

    def team_sla(self, team_id: str) -> dict[str, dict[str, object]]:
        """Windowed SLA counts of a team owned here: ``{"minute": {...}, "hour": {...}}``."""
        ...

    def readiness(self) -> Readiness: ...

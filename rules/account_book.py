"""The account book: one writer per account domain, and the lead-to-account match on the way in.

Accounts live in a table keyed by domain, owned by the partition of ``account.commands`` that the
domain hashes to (like leads and teams: single writer, no locks). A new capture that has a
candidate domain takes one hop through that owner before it reaches the lead agent:

    intake --MatchAccount(domain)--> account agent --CaptureLead(account=...)--> lead agent

Why a hop and not a Faust GlobalTable read from the lead agent: GlobalTables have a record of
workers silently missing updates (faust-streaming #283, #212; robinhood/faust #541, #716) and
would answer with whatever a worker happens to have replicated; here the match is read by the
table's owner in the same ordered partition as the account writes, so a lead captured after a
``PUT /v1/accounts`` was acknowledged sees it, and the account travels inside ``CaptureLead``,
so replaying the command after a crash decides the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeAlias

from rules.accounts import Account, lead_domains
from rules.commands import CaptureLead, Outgoing

__all__ = ["PutAccount", "RemoveAccount", "MatchAccount", "AccountCommand", "AccountTransition", "apply",
           "capture_outgoing"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PutAccount:
    """Create or replace the account of ``domain``."""

    domain: str
    account: Account
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveAccount:
    """Forget the account of ``domain``."""

    domain: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchAccount:
    """Look ``domain`` up for this capture; ``then`` are the lead's other domains, tried next."""

    domain: str
    capture: CaptureLead
    then: tuple[str, ...] = ()


AccountCommand: TypeAlias = PutAccount | RemoveAccount | MatchAccount


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountTransition:
    account: Account | None
    outgoing: tuple[Outgoing, ...] = ()


def _to_lead(capture: CaptureLead) -> Outgoing:
    return Outgoing(channel="lead.commands", key=capture.lead_id, value=capture)


def _match(domains: tuple[str, ...], capture: CaptureLead) -> Outgoing:
    return Outgoing(channel="account.commands", key=domains[0],
                    value=MatchAccount(domain=domains[0], capture=capture, then=domains[1:]))


def capture_outgoing(capture: CaptureLead) -> Outgoing:
    """Where a fresh capture goes first: the owner of its first candidate domain, else straight to the lead."""
    domains = lead_domains(capture.lead)
    return _match(domains, capture) if domains else _to_lead(capture)


def apply(account: Account | None, command: AccountCommand, now: datetime) -> AccountTransition:
    """Apply one command to the account of ``command.domain`` (``account``: its current value)."""
    if isinstance(command, PutAccount):
        return AccountTransition(account=replace(command.account, domain=command.domain))
    if isinstance(command, RemoveAccount):
        return AccountTransition(account=None)
    if account is not None:
        return AccountTransition(account=account, outgoing=(_to_lead(replace(command.capture, account=account)),))
    if command.then:
        return AccountTransition(account=None, outgoing=(_match(command.then, command.capture),))
    return AccountTransition(account=None, outgoing=(_to_lead(command.capture),))

"""Own the account book (domain -> owner, team, tier) and match new captures to accounts on the way in.

The lead-to-account match is a hop through this agent, not a GlobalTable read from the lead
agent: see ``rules/account_book.py`` for why.
"""
from __future__ import annotations

import logging
from typing import Any

from rules.account_book import PutAccount, apply
from rules.commands import Outgoing
from streams.agents._batch import BATCH, WITHIN_S, acting_for, readable
from streams.app import app, runtime
from streams.tables.accounts import accounts
from streams.topics import account_commands, publish

__all__ = ["run_accounts", "seed_accounts_from_config"]

log = logging.getLogger(__name__)


@app.agent(account_commands, concurrency=1)
async def run_accounts(commands: Any) -> None:
    async for events in commands.take_events(BATCH, within=WITHIN_S):
        # domain -> (account before the batch, account now, the last event of that domain)
        touched: dict[str, tuple[Any, Any, Any]] = {}
        outgoing: list[Outgoing] = []
        names: list[str] = []
        for event in readable(events, "account"):
            domain, command = event.key, event.value
            name = type(command).__name__
            if domain in touched:
                before, current, _ = touched[domain]
            else:
                with acting_for(event):
                    before = current = accounts.get(domain)
            try:
                transition = apply(current, command, runtime.clock.now())
            except Exception:
                runtime.metrics.command_failures.labels("account").inc()
                log.exception("account agent could not apply %s to an account", name)
                continue
            touched[domain] = (before, transition.account, event)
            outgoing += transition.outgoing
            names.append(name)
        # Messages first, acknowledged; then the table (see ``publish`` for why this order).
        await publish(outgoing)
        for domain, (before, account, event) in touched.items():
            with acting_for(event):
                if account is None:
                    if before is not None:
                        del accounts[domain]
                elif account is not before:
                    accounts[domain] = account
        for name in names:
            runtime.metrics.commands_processed.labels("account", name).inc()


@app.task
async def seed_accounts_from_config() -> None:
    """The YAML's accounts are applied at every worker start (API changes last until then)."""
    now = runtime.clock.now()
    listed = runtime.config.account_list(now)
    for account in listed:
        await account_commands.send(key=account.domain, value=PutAccount(domain=account.domain, account=account, at=now))
    if listed:
        log.info("seeded %d account(s) from the config", len(listed))

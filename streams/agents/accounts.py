"""Own the account book (domain -> owner, team, tier) and match new captures to accounts on the way in.

The lead-to-account match is a hop through this agent, not a GlobalTable read from the lead
agent: see ``rules/account_book.py`` for why.
"""
from __future__ import annotations

import logging
from typing import Any

from rules.account_book import PutAccount, apply
from streams.app import app, runtime
from streams.tables.accounts import accounts
from streams.topics import account_commands, publish

__all__ = ["run_accounts", "seed_accounts_from_config"]

log = logging.getLogger(__name__)


@app.agent(account_commands, concurrency=1)
async def run_accounts(commands: Any) -> None:
    async for domain, command in commands.items():
        name = type(command).__name__
        current = accounts.get(domain)
        try:
            transition = apply(current, command, runtime.clock.now())
        except Exception:
            runtime.metrics.command_failures.labels("account").inc()
            log.exception("account agent could not apply %s to an account", name)
            continue
        # Messages first, acknowledged; then the table (see ``publish`` for why this order).
        await publish(transition.outgoing)
        if transition.account is None:
            if current is not None:
                del accounts[domain]
        elif transition.account is not current:
            accounts[domain] = transition.account
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

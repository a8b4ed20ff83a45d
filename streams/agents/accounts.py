"""Own the account book (domain -> owner, team, tier) and match new captures to accounts on the way in.

The lead-to-account match is a hop through this agent, not a GlobalTable read from the lead
agent: see ``rules/account_book.py`` for why.
"""
from __future__ import annotations

import logging
from typing import Any

from rules.account_book import PutAccount, apply
from rules.commands import Outgoing
from streams.agents._batch import acting_for, apply_batch, take_ready
from streams.app import app, runtime
from streams.tables.accounts import accounts
from streams.topics import account_commands, publish

__all__ = ["run_accounts", "seed_accounts_from_config"]

log = logging.getLogger(__name__)


@app.agent(account_commands, concurrency=1)
async def run_accounts(commands: Any) -> None:
    async for events in take_ready(commands):
        now = runtime.clock.now()

        def step(current: Any, command: Any) -> tuple[Any, Any]:
            transition = apply(current, command, now)
            return transition.account, transition

        # Domains stay out of the log (log_key=False): the account book is the customer's data.
        domains, applied = apply_batch(events, "account", accounts.get, step, log_key=False)
        outgoing: list[Outgoing] = [message for _, transition in applied for message in transition.outgoing]
        # Messages first, acknowledged; then the table (see ``publish`` for why this order).
        await publish(outgoing)
        for domain, account in domains.items():
            with acting_for(account.event):
                if account.state is None:
                    if account.before is not None:
                        del accounts[domain]
                elif account.state is not account.before:
                    accounts[domain] = account.state
        for name, _ in applied:
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

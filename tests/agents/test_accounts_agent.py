"""The account agent through Faust's ``test_context()``: the table is written after the publish, a match
forwards the capture with the account, a removal deletes the row."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from rules.account_book import MatchAccount, PutAccount, RemoveAccount
from rules.accounts import Account
from rules.capture import CapturedLead
from rules.commands import CaptureLead
from streams.agents import accounts as agent_module
from streams.tables.accounts import accounts
from tests.agents.conftest import Published, until

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


async def test_put_match_remove(published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "publish", published)
    domain = f"{uuid.uuid4().hex[:10]}.example"
    account = Account(domain=domain, name="Acme", owner="ana", team="strategic", tier="strategic", updated_at=NOW)
    capture = CaptureLead(lead_id="ld_x", capture_id="c1", captured_at=NOW,
                          lead=CapturedLead(email=f"kim@{domain}", source="web"))
    seen_at_publish: list[Any] = []
    published.on_publish = lambda _batch: seen_at_publish.append(accounts.get(domain))
    async with agent_module.run_accounts.test_context() as agent:
        await agent.put(key=domain, value=PutAccount(domain=domain, account=account, at=NOW))
        await until(lambda: accounts.get(domain) is not None)
        assert accounts[domain] == account
        await agent.put(key=domain, value=MatchAccount(domain=domain, capture=capture))
        await until(lambda: len(published.messages) == 1)
        await agent.put(key=domain, value=RemoveAccount(domain=domain, at=NOW))
        await until(lambda: accounts.get(domain) is None)
        await agent.put(key=domain, value=MatchAccount(domain=domain, capture=capture))
        await until(lambda: len(published.messages) == 2)
    # The match forwarded the capture to the lead with the account; after the removal, without.
    forwarded = [m for m in published.messages if m.channel == "lead.commands"]
    assert [(m.key, m.value) for m in forwarded] == [
        ("ld_x", CaptureLead(lead_id="ld_x", capture_id="c1", captured_at=NOW, lead=capture.lead, account=account)),
        ("ld_x", capture),
    ]
    # Each publish happened before the table changed: not yet stored at the put, still stored at the removal.
    assert seen_at_publish == [None, account, account, None]

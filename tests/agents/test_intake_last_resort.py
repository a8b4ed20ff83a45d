"""The intake's last resort: a record it fails on for an unforeseen reason is dead-lettered, not its batch."""
from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from connectors import lead_input
from rules.commands import CaptureLead
from streams.agents import intake
from tests.agents.conftest import FakeTopic, Published, until


async def test_a_record_the_intake_fails_on_is_dead_lettered_and_the_batch_goes_on(
    published: Published, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Review s16-b H1: a TypeError out of open_meta crashed the agent; take_ready had acked the
    # batch, so every other record of it was committed and never captured nor dead-lettered.
    # Any bug of that kind stands in here: validate_lead failing on one lead.
    rejected = FakeTopic()
    monkeypatch.setattr(intake, "publish", published)
    monkeypatch.setattr(intake, "leads_rejected", rejected)

    def buggy(data: Any, **kwargs: Any) -> lead_input.ValidLead:
        if data.get("company") == "Bug":
            raise TypeError("an unforeseen failure quoting bug@feed.example")
        return lead_input.validate_lead(data, **kwargs)

    monkeypatch.setattr(intake, "validate_lead", buggy)
    caplog.set_level(logging.ERROR, logger=intake.log.name)
    records = [orjson.dumps({"email": f"good.{i}@feed.example"}) for i in range(3)]
    poison = orjson.dumps({"email": "bug@feed.example", "company": "Bug"})
    async with intake.capture_leads.test_context() as agent:
        for value in [records[0], poison, *records[1:]]:
            await agent.put(key="k", value=value)
        await until(lambda: len(published.messages) + len(rejected.sent) >= 4)
    captured = [m.value.capture if hasattr(m.value, "capture") else m.value for m in published.messages]
    assert sorted(c.lead.email for c in captured if isinstance(c, CaptureLead)) == [
        f"good.{i}@feed.example" for i in range(3)]
    ((_, value, headers),) = rejected.sent
    assert value == poison and headers["leadflow-reason"] == b"internal_error"
    detail = orjson.loads(headers["leadflow-detail"])
    assert "TypeError" in detail["message"] and "bug@" not in detail["message"]
    lines = [r.getMessage() for r in caplog.records if "internal_error" in r.getMessage()]
    assert len(lines) == 1 and "TypeError" in lines[0] and "bug@" not in caplog.text


async def test_an_unsealed_meta_of_the_previous_version_keeps_its_source_and_lead_id(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review s16-b M1: a worker of the previous version writes _meta without a seal during a
    # rolling upgrade, after answering 202 with the lead_id of its API key's name. The intake took
    # source kafka instead: a lead with only an external_id landed under another id.
    monkeypatch.setattr(intake, "publish", published)
    monkeypatch.setattr(intake, "leads_rejected", FakeTopic())
    record = orjson.dumps({"external_id": "crm-7", "_meta": {
        "default_source": "partner-x", "channel": "api", "capture_id": "c-1",
        "received_at": "2020-01-01T00:00:00+00:00"}})
    async with intake.capture_leads.test_context() as agent:
        await agent.put(key="k", value=record)
        await until(lambda: len(published.messages) >= 1)
    (message,) = published.messages
    capture = message.value.capture if hasattr(message.value, "capture") else message.value
    answered = lead_input.validate_lead({"external_id": "crm-7"}, default_source="partner-x", channel="api")
    assert (capture.lead_id, capture.lead) == (answered.lead_id, answered.lead)
    assert capture.capture_id.startswith("kafka:")  # its capture id and time are not taken unsealed

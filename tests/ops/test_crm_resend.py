"""ops/crm_resend: which dead letters it picks, and the upsert it puts back (the Kafka round trip is in
tests/integration/test_crm_quota.py)."""
from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson

from ops.crm_resend import DeadLetter, parse_dead_letter, select, upsert_for

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def _letter(opp: str, minutes: int, reason: str = "refused: HubSpot refused the deal", lead: str = "ld_1") -> DeadLetter:
    return DeadLetter(opportunity_id=opp, lead_id=lead, crm="hubspot", attempts=1, reason=reason,
                      at=T0 + timedelta(minutes=minutes), payload={"created_at": T0.isoformat(), "name": "n"})


def test_a_dead_letter_as_the_crm_agent_writes_it_is_read_back() -> None:
    raw = orjson.dumps({"opportunity_id": "op_1", "lead_id": "ld_1", "crm": "salesforce", "attempts": 7,
                        "reason": "gave up after 7 attempts: Salesforce timed out", "at": T0,
                        "payload": {"name": "n"}})
    letter = parse_dead_letter(raw)
    assert letter is not None and letter.kind == "gave_up" and letter.at == T0 and letter.attempts == 7
    assert parse_dead_letter(b"not json") is None and parse_dead_letter(b'{"lead_id": "ld_1"}') is None


def test_the_newest_letter_of_each_opportunity_passing_the_filters() -> None:
    letters = [_letter("op_1", 0), _letter("op_1", 5, "gave up after 6 attempts: HTTP 503"), _letter("op_2", 1),
               _letter("op_3", 2, lead="ld_3")]
    assert [(d.opportunity_id, d.kind) for d in select(letters)] == [
        ("op_2", "refused"), ("op_3", "refused"), ("op_1", "gave_up")]
    assert [d.opportunity_id for d in select(letters, kind="refused")] == ["op_2", "op_3"]
    assert [d.opportunity_id for d in select(letters, lead_ids=["ld_3"])] == ["op_3"]
    assert [d.opportunity_id for d in select(letters, reason_contains="http 503")] == ["op_1"]
    assert [d.opportunity_id for d in select(letters, since=T0 + timedelta(minutes=2))] == ["op_3", "op_1"]
    assert select(letters, opportunity_ids=["op_9"]) == []


def test_the_upsert_put_back_starts_afresh_with_its_original_created_at() -> None:
    upsert = upsert_for(_letter("op_1", 30))
    assert upsert.attempt == 0 and upsert.created_at == T0 and upsert.payload["name"] == "n"
    assert upsert.lead_id == "ld_1" and upsert.opportunity_id == "op_1"


def test_help_says_it_is_a_dry_run_without_send() -> None:
    out = subprocess.run([sys.executable, "-m", "ops.crm_resend", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "dry run unless --send" in out and "examples:" in out and "LEADFLOW_BROKER" in out

"""A CRM out of API quota is waited for without using up the retry schedule, bounded by time instead."""
from __future__ import annotations

from datetime import timedelta

from rules.commands import UpsertOpportunity
from rules.crm_retry import plan_upsert, retry_after_failure, wait_for_quota
from rules.opportunity import PendingCrm
from tests.rules._sim import T0

#: The shipped schedule: 5 s … 1 h, about 1 h 43 m in all.
DELAYS = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
DAY = 86400.0
MAX_WAIT = 3 * DAY


def _upsert(attempt: int = 0) -> UpsertOpportunity:
    return UpsertOpportunity(opportunity_id="op_1", lead_id="ld_1", payload={"name": "n"}, created_at=T0,
                             attempt=attempt)


def _due(row: PendingCrm) -> UpsertOpportunity:
    assert isinstance(row.message, UpsertOpportunity)
    # The timer re-sends the row's message; the agent attempts it (it is the pending row's own).
    assert plan_upsert(row, row.message) == row.message
    return row.message


def test_seven_daily_quota_refusals_leave_the_upsert_pending_not_dead_lettered() -> None:
    """HubSpot's DAILY 429 seven times: before, each used a delay and the sixth failure dead-lettered it."""
    message, now, row = _upsert(), T0, None
    for _ in range(7):
        row = wait_for_quota(message, now, 3600.0, MAX_WAIT, row)
        assert row is not None, "dead-lettered while waiting for the quota"
        assert row.due_at == now + timedelta(hours=1) and row.since == T0
        now, message = row.due_at, _due(row)
    assert row is not None and row.waits == 7 and message.attempt == 7
    # The quota came back but the CRM then fails: the whole schedule is still there, from its first delay.
    for delay in DELAYS:
        row = retry_after_failure(message, now, DELAYS, row)
        assert row is not None and row.due_at == now + timedelta(seconds=delay) and row.waits == 7
        now, message = row.due_at, _due(row)
    assert retry_after_failure(message, now, DELAYS, row) is None  # now it gives up, as before


def test_quota_waits_end_after_the_max_wait_from_the_first_refusal() -> None:
    message, now, row = _upsert(), T0, None
    waits = 0
    while True:
        nxt = wait_for_quota(message, now, DAY / 2, MAX_WAIT, row)
        if nxt is None:
            break
        row, waits = nxt, waits + 1
        now, message = row.due_at, _due(row)
    assert waits == 6 and now == T0 + timedelta(days=3)  # a seventh half-day would end past 3 days


def test_failures_before_the_quota_ran_out_still_count() -> None:
    row = retry_after_failure(_upsert(), T0, DELAYS)
    assert row is not None and row.since is None and row.waits == 0
    row = wait_for_quota(_due(row), T0 + timedelta(seconds=5), 60.0, MAX_WAIT, row)
    assert row is not None and row.waits == 1 and row.since == T0 + timedelta(seconds=5)
    row = retry_after_failure(_due(row), T0 + timedelta(seconds=65), DELAYS, row)
    # Two failed attempts and one quota wait: the second delay (30 s) is next.
    assert row is not None and row.due_at == T0 + timedelta(seconds=95) and row.waits == 1


def test_a_row_of_another_opportunity_carries_nothing() -> None:
    other = PendingCrm(key="ld_1|op_2", due_at=T0, message=_upsert(), since=T0, waits=5)
    assert retry_after_failure(_upsert(attempt=5), T0, DELAYS, other) == PendingCrm(
        key="ld_1|op_1", due_at=T0 + timedelta(seconds=3600), message=_upsert(attempt=6))

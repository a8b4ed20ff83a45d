"""Durable webhook delivery, the pure part: schedule, verdicts, backlog bound, circuit breaker, reassignment."""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules import lead
from rules.commands import Notify, RecordDelivery, ReleaseLead, RouteLead, SetPresence
from rules.delivery import (
    MAX_PENDING_PER_LEAD,
    STANDARD_SCHEDULE,
    CircuitBreaker,
    DeliveryBacklog,
    PendingDelivery,
    deadline,
    endpoint_of,
    judge,
    parse_schedule,
)
from rules.lead import webhook_id_for
from tests.rules._sim import T0
from tests.rules.test_lead import LEAD_ID, POLICY, assigned, capture, run


def test_the_default_is_the_standard_webhooks_schedule() -> None:
    # https://www.standardwebhooks.com "Retry schedule": immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    assert parse_schedule("5s,5m,30m,2h,5h,10h,10h") == STANDARD_SCHEDULE
    assert len(STANDARD_SCHEDULE) + 1 == 8 and sum(STANDARD_SCHEDULE) == 99_305  # about 27.6 hours


@pytest.mark.parametrize("text,expected", [("0.2, 0.5,1", (0.2, 0.5, 1.0)), ("250ms,1s", (0.25, 1.0)), ("", ())])
def test_parse_schedule(text: str, expected: tuple[float, ...]) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize("text", ["5x", "1,,2", "-1", "nan", "1e400"])
def test_parse_schedule_names_the_bad_item(text: str) -> None:
    with pytest.raises(ValueError, match="item"):
        parse_schedule(text)


def test_judge_walks_the_schedule_then_dead_letters() -> None:
    schedule = (5.0, 300.0)
    first = judge(delivered=False, gave_up_reason=None, error="HTTP 503", attempts=1, now=T0, schedule=schedule)
    assert first.outcome == "retry" and first.next_at == T0 + timedelta(seconds=5)
    second = judge(delivered=False, gave_up_reason=None, error="HTTP 503", attempts=2, now=T0, schedule=schedule)
    assert second.outcome == "retry" and second.next_at == T0 + timedelta(seconds=300)
    last = judge(delivered=False, gave_up_reason=None, error="HTTP 503", attempts=3, now=T0, schedule=schedule)
    assert last.outcome == "dead_letter" and last.reason is not None and "3 attempt(s): HTTP 503" in last.reason
    assert judge(delivered=True, gave_up_reason=None, error=None, attempts=3, now=T0, schedule=schedule).outcome \
        == "delivered"


def test_410_gone_is_dead_lettered_at_once() -> None:
    verdict = judge(delivered=False, gave_up_reason="endpoint gone (410)", error="HTTP 410", attempts=1, now=T0,
                    schedule=STANDARD_SCHEDULE)
    assert (verdict.outcome, verdict.reason) == ("dead_letter", "endpoint gone (410)")


def test_a_deferred_message_waits_at_most_the_schedule_span() -> None:
    assert deadline(T0, (1.0, 2.0)) == T0 + timedelta(seconds=3)


@pytest.mark.parametrize("url,endpoint", [
    ("https://Hooks.Example:8443/a/b?token=s3cr3t", "https://hooks.example:8443"),
    ("http://user:pw@h.example/x", "http://h.example"),
    ("http://127.0.0.1:9/hooks/ana", "http://127.0.0.1:9"),
])
def test_endpoint_leaves_out_path_query_and_credentials(url: str, endpoint: str) -> None:
    assert endpoint_of(url) == endpoint


def _notify(webhook_id: str) -> Notify:
    return Notify(webhook_id=webhook_id, event_type="lead.assigned", lead_id=LEAD_ID, rep_id="a",
                  url="https://x.test/a", secret="whsec_a", payload={}, created_at=T0)


def test_the_backlog_is_bounded_and_replaces_by_id() -> None:
    backlog = DeliveryBacklog(lead_id=LEAD_ID)
    for i in range(MAX_PENDING_PER_LEAD):
        backlog, overflow = backlog.put(PendingDelivery(notify=_notify(f"m{i}"), attempts=1, first_attempt_at=T0,
                                                        next_at=T0))
        assert overflow == ()
    backlog, overflow = backlog.put(PendingDelivery(notify=_notify("m0"), attempts=2, first_attempt_at=T0, next_at=T0))
    assert overflow == () and len(backlog.pending) == MAX_PENDING_PER_LEAD
    assert backlog.find("m0") is not None and backlog.find("m0").attempts == 2  # type: ignore[union-attr]
    backlog, overflow = backlog.put(PendingDelivery(notify=_notify("new"), attempts=1, first_attempt_at=T0,
                                                    next_at=T0))
    assert [p.notify.webhook_id for p in overflow] == ["m1"] and len(backlog.pending) == MAX_PENDING_PER_LEAD
    assert backlog.without("new").find("new") is None


def test_breaker_opens_after_threshold_defers_then_lets_one_probe_through() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_s=10.0)
    for t in range(3):
        assert breaker.allow("e", float(t))
        breaker.record("e", False, float(t))
    assert breaker.is_open("e") and not breaker.allow("e", 5.0)
    assert breaker.retry_at("e", 5.0) == 12.0
    assert breaker.allow("e", 12.0)  # the half-open probe
    assert not breaker.allow("e", 12.0)  # only one at a time
    breaker.record("e", False, 12.0)  # the probe failed: open again for a cooldown
    assert not breaker.allow("e", 21.0) and breaker.allow("e", 22.0)
    breaker.record("e", True, 22.0)  # the probe succeeded: closed
    assert not breaker.is_open("e") and breaker.allow("e", 22.0) and len(breaker) == 0


def test_other_endpoints_are_not_affected() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown_s=10.0)
    breaker.record("bad", False, 0.0)
    assert not breaker.allow("bad", 1.0) and breaker.allow("good", 1.0) and breaker.open_endpoints() == 1


@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0, max_value=100)), max_size=60))
def test_breaker_never_lets_two_probes_fly_at_once(events: list[tuple[bool, float]]) -> None:
    breaker = CircuitBreaker(threshold=2, cooldown_s=5.0)
    in_flight = 0
    now = 0.0
    for ok, step in events:
        now += step
        was_open = breaker.is_open("e")
        if breaker.allow("e", now):
            if was_open:
                in_flight += 1
                assert in_flight == 1
            breaker.record("e", ok, now)
            in_flight = 0


# --- the lead's side: a dead-lettered assignment is reassigned ---------------------------------


def _dead(webhook_id: str, event_type: str = "lead.assigned") -> RecordDelivery:
    return RecordDelivery(lead_id=LEAD_ID, webhook_id=webhook_id, event_type=event_type, rep_id="rep-a",
                          delivered=False, attempts=8, status=None, error="retries exhausted", at=T0,
                          dead_lettered=True)


def test_dead_lettered_assignment_moves_the_lead_to_another_rep() -> None:
    webhook_id = webhook_id_for(f"{LEAD_ID}:1:1", "lead.assigned")
    state, outgoing = run(capture(), assigned(), _dead(webhook_id))
    assert state is not None and state.routing == "routing" and state.assignment is None
    assert state.route_id == f"{LEAD_ID}:1:2"
    release = [m.value for m in outgoing if isinstance(m.value, ReleaseLead)]
    route = [m.value for m in outgoing if isinstance(m.value, RouteLead)]
    assert [(r.rep_id, r.route_id) for r in release] == [("rep-a", f"{LEAD_ID}:1:1")]
    assert [(r.route_id, r.excluded_reps) for r in route] == [(f"{LEAD_ID}:1:2", ("rep-a",))]
    # The unreachable rep goes offline in the team before the lead is routed again there.
    to_team = [type(m.value).__name__ for m in outgoing if m.channel == "team.commands"]
    assert to_team == ["ReleaseLead", "SetPresence", "RouteLead"]
    (offline,) = [m for m in outgoing if isinstance(m.value, SetPresence)]
    assert offline.key == offline.value.team_id == release[0].team_id
    assert (offline.value.rep_id, offline.value.status) == ("rep-a", "offline")
    kinds = [m.value["type"] for m in outgoing if m.channel == "lead.events"]
    assert kinds == ["lead.notification_dead_lettered", "lead.reassigned"]
    assert [e.kind for e in state.timeline][-2:] == ["notification_dead_lettered", "reassigned"]


def test_a_replayed_dead_letter_changes_nothing() -> None:
    webhook_id = webhook_id_for(f"{LEAD_ID}:1:1", "lead.assigned")
    state, _ = run(capture(), assigned(), _dead(webhook_id))
    assert state is not None
    again = lead.apply(state, _dead(webhook_id), T0, POLICY)
    assert again.state == state and again.outgoing == ()


@pytest.mark.parametrize("report", [
    _dead("msg_other"),  # an older assignment's webhook
    _dead(webhook_id_for(f"{LEAD_ID}:1:1", "lead.reminder.1"), "lead.reminder"),  # not the assignment itself
])
def test_other_dead_letters_keep_the_assignment(report: RecordDelivery) -> None:
    state, outgoing = run(capture(), assigned(), report)
    assert state is not None and state.routing == "assigned"
    assert [m.value["type"] for m in outgoing] == ["lead.notification_dead_lettered"]
    assert not any(isinstance(m.value, SetPresence) for m in outgoing), "the rep stays as they are"


def test_a_first_failure_is_recorded_and_keeps_the_assignment() -> None:
    webhook_id = webhook_id_for(f"{LEAD_ID}:1:1", "lead.assigned")
    failure = RecordDelivery(lead_id=LEAD_ID, webhook_id=webhook_id, event_type="lead.assigned", rep_id="rep-a",
                             delivered=False, attempts=1, status=503, error="HTTP 503", at=T0)
    state, outgoing = run(capture(), assigned(), failure)
    assert state is not None and state.routing == "assigned"
    assert [m.value["type"] for m in outgoing] == ["lead.notification_failed"]


# --- a rep without a webhook: the lead is theirs, and the timeline says nobody told them --------


@pytest.mark.parametrize(("url", "secret", "why"), [
    (None, "whsec_a", "rep rep-a has no webhook_url"),
    ("https://x.test/a", None, "rep rep-a has no webhook secret"),
])
def test_an_assignment_to_a_rep_without_a_webhook_says_they_were_not_notified(
        url: str | None, secret: str | None, why: str) -> None:
    state, outgoing = run(capture(), assigned(url=url, secret=secret))
    assert state is not None and state.routing == "assigned" and state.assignment is not None
    assert not [m for m in outgoing if isinstance(m.value, Notify)]
    entry = state.timeline[-1]
    assert (entry.kind, entry.detail) == ("not_notified", {"rep_id": "rep-a", "event_type": "lead.assigned",
                                                          "why": why})
    (published,) = [m.value for m in outgoing if m.channel == "lead.events" and m.value["type"] == "lead.not_notified"]
    assert published["data"]["why"] == why


def test_a_rep_with_a_webhook_gets_no_not_notified_entry() -> None:
    state, outgoing = run(capture(), assigned())
    assert state is not None and all(e.kind != "not_notified" for e in state.timeline)
    assert [m.value.event_type for m in outgoing if isinstance(m.value, Notify)] == ["lead.assigned"]

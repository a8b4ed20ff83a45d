"""Three gaps earlier sessions noted: a recycled lead's status, a merged lead's e-mail, a replayed CRM upsert (pure)."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import lead
from rules.capture import CapturedLead, derive_lead_id
from rules.commands import CaptureLead, DeferCommand, Notify, RouteLead, UpsertOpportunity
from rules.crm_retry import pending_key, plan_upsert, retry_after_failure
from rules.lead import LeadPolicy, LeadState
from rules.opportunity import PendingCrm
from rules.scoring import ScoringModel
from tests.rules._sim import T0
from tests.rules.test_lead import POLICY, assigned, dispose
from tests.rules.test_lead_crm import AE, GATED, converted, crm_event, step, types

# --- 1. a recycled lead starts its new cycle as a fresh lead ---------------------------------


def _lost_and_due(policy: LeadPolicy) -> tuple[LeadState, DeferCommand]:
    state, _ = converted()
    state, out = step(state, crm_event("lost", reason="no budget"), policy)
    (defer,) = [m.value for m in out if isinstance(m.value, DeferCommand)]
    return state, defer


def test_without_an_mql_threshold_a_recycled_lead_returns_as_new_not_mql() -> None:
    policy = LeadPolicy(default_team="inbound", recycle_after_s=3600.0, account_executives={"*": AE})
    assert policy.scoring.mql_threshold is None
    state, defer = _lost_and_due(policy)
    again, out = step(state, defer.command, policy, minutes=60 * 24 * 4)
    assert (again.cycle, again.status, again.routing) == (2, "new", "routing")
    assert types(out) == ["lead.recycled", "lead.scored", "RouteLead"]  # no lead.mql without a gate
    assert isinstance(out[-1].value, RouteLead) and out[-1].value.route_id == f"{again.lead_id}:2:1"
    assert "mql" not in [e.kind for e in again.timeline if e.at > state.timeline[-1].at]


@pytest.mark.parametrize("threshold, status, last", [(40, "mql", "RouteLead"), (100, "nurture", "lead.nurture")])
def test_with_an_mql_threshold_a_recycled_lead_is_gated_by_its_new_score(threshold: int, status: str,
                                                                         last: str) -> None:
    policy = replace(GATED, recycle_after_s=3600.0, scoring=ScoringModel(mql_threshold=threshold))
    state, defer = _lost_and_due(policy)
    again, out = step(state, defer.command, policy, minutes=60 * 24 * 4)
    assert (again.cycle, again.status) == (2, status)
    assert types(out)[-1] == last


def test_an_ungated_recycled_lead_from_a_hot_source_is_still_new() -> None:
    # Without a threshold a hot source does not make an MQL at capture either (docs/QUALIFICATION.md).
    policy = LeadPolicy(default_team="inbound", recycle_after_s=60.0)
    state, defer = _lost_and_due(policy)
    state = replace(state, lead=replace(state.lead, source="demo-request"))
    again, out = step(state, defer.command, policy, minutes=60 * 24 * 4)
    assert again.status == "new" and "lead.mql" not in types(out)


# --- 2. a merged lead keeps the e-mail it was first captured with ------------------------------

FIRST = "ana.diaz@gmail.com"
SPELLINGS = ("anadiaz+ads@googlemail.com", "ana.diaz+webinar@gmail.com", "a.na.diaz@gmail.com")
ANA = derive_lead_id(email=FIRST, phone=None, source="webform", external_id=None)


def _ana(capture_id: str, email: str, minutes: int, **fields: object) -> CaptureLead:
    lead = CapturedLead(email=email, source="webform", **fields)  # type: ignore[arg-type]
    return CaptureLead(lead_id=ANA, capture_id=capture_id, captured_at=T0 + timedelta(minutes=minutes), lead=lead)


def _apply(state: LeadState | None, command: object, minutes: int) -> tuple[LeadState, list[Any]]:
    t = lead.apply(state, command, T0 + timedelta(minutes=minutes), POLICY)  # type: ignore[arg-type]
    assert t.state is not None
    return t.state, list(t.outgoing)


def test_every_spelling_is_the_same_lead() -> None:
    assert {derive_lead_id(email=e, phone=None, source="webform", external_id=None) for e in SPELLINGS} == {ANA}


@pytest.mark.parametrize("later", SPELLINGS)
def test_a_new_touch_keeps_the_first_email_and_records_the_spelling_on_the_timeline(later: str) -> None:
    state, _ = _apply(None, _ana("c1", FIRST, 0), 0)
    state, out = _apply(state, _ana("c2", later, 5, company="Northwind", phone="+34600000001"), 5)
    assert state.lead.email == FIRST  # the address the rep and the CRM already have
    assert state.lead.company == "Northwind" and state.lead.phone == "+34600000001"  # other fields: newer wins
    touched = state.timeline[-1] if state.timeline[-1].kind == "touched" else state.timeline[-2]
    assert touched.kind == "touched" and touched.detail["email_as_captured"] == later
    (event,) = [m.value for m in out if m.channel == "lead.events" and m.value["type"] == "lead.touched"]
    assert event["data"]["email_as_captured"] == later


def test_the_same_spelling_again_adds_nothing_to_the_touch() -> None:
    state, _ = _apply(None, _ana("c1", FIRST, 0), 0)
    state, out = _apply(state, _ana("c2", FIRST, 5), 5)
    assert state.lead.email == FIRST
    assert all("email_as_captured" not in e.detail for e in state.timeline)
    assert all("email_as_captured" not in m.value["data"] for m in out if m.channel == "lead.events")


def test_the_owner_is_told_the_kept_address() -> None:
    state, _ = _apply(None, _ana("c1", FIRST, 0), 0)
    route_id = state.route_id
    state, _ = _apply(state, replace(assigned(route_id=route_id), lead_id=ANA), 1)
    state, out = _apply(state, _ana("c2", SPELLINGS[0], 5), 5)
    (notify,) = [m.value for m in out if isinstance(m.value, Notify)]
    assert notify.payload["data"]["lead"]["email"] == FIRST


def test_a_reopened_lead_keeps_the_first_email_too() -> None:
    state, _ = _apply(None, _ana("c1", FIRST, 0), 0)
    state, _ = _apply(state, replace(dispose("nurture"), lead_id=ANA), 1)
    state, out = _apply(state, _ana("c2", SPELLINGS[1], 60), 60)
    assert (state.cycle, state.lead.email) == (2, FIRST)
    reopened = [e for e in state.timeline if e.kind == "reopened"]
    assert reopened and reopened[-1].detail["email_as_captured"] == SPELLINGS[1]
    (event,) = [m.value for m in out if m.channel == "lead.events" and m.value["type"] == "lead.reopened"]
    assert event["data"]["lead"]["email"] == FIRST and event["data"]["email_as_captured"] == SPELLINGS[1]


# --- 3. a replayed CRM upsert keeps its pending retry schedule ----------------------------------

DELAYS = (5.0, 30.0, 120.0)
OPP_ID = "op_1"


def _upsert(attempt: int = 0, *, created: int = 0, name: str = "v1") -> UpsertOpportunity:
    return UpsertOpportunity(opportunity_id=OPP_ID, lead_id=ANA, payload={"name": name},
                             created_at=T0 + timedelta(minutes=created), attempt=attempt)


def _fail(message: UpsertOpportunity, minutes: float) -> PendingCrm | None:
    return retry_after_failure(message, T0 + timedelta(minutes=minutes), DELAYS)


def _waiting(row: PendingCrm | None) -> UpsertOpportunity:
    assert row is not None and isinstance(row.message, UpsertOpportunity)
    return row.message


def test_a_failed_upsert_waits_for_the_next_delay_then_gives_up() -> None:
    row = _fail(_upsert(), 1)
    assert row is not None and row.key == pending_key(_upsert()) == f"{ANA}|{OPP_ID}"
    assert row.due_at == T0 + timedelta(minutes=1, seconds=5) and row.message == _upsert(attempt=1)
    assert _fail(_upsert(attempt=2), 1) == PendingCrm(key=row.key, due_at=T0 + timedelta(minutes=1, seconds=120),
                                                      message=_upsert(attempt=3))
    assert _fail(_upsert(attempt=3), 1) is None  # the last delay used: dead-letter


def test_with_nothing_pending_an_upsert_is_attempted() -> None:
    assert plan_upsert(None, _upsert()) == _upsert()


def test_a_replay_while_a_retry_is_pending_keeps_the_attempt_count_and_due_time() -> None:
    row = _fail(_upsert(attempt=1), 1)  # two attempts made; the third is due later
    assert row is not None and _waiting(row).attempt == 2
    for replay in (_upsert(), _upsert(attempt=1)):  # the original, and the first retry's re-send
        assert plan_upsert(row, replay) == row, replay  # not called again, nothing reset


def test_the_due_retry_itself_is_attempted() -> None:
    row = _fail(_upsert(), 1)
    assert row is not None
    assert plan_upsert(row, _waiting(row)) == row.message


def test_newer_content_replaces_what_the_pending_retry_sends_without_restarting_it() -> None:
    row = _fail(_upsert(), 1)
    assert row is not None
    newer = _upsert(created=3, name="v2")
    kept = plan_upsert(row, newer)
    assert isinstance(kept, PendingCrm) and isinstance(kept.message, UpsertOpportunity)
    assert (kept.due_at, kept.message.attempt) == (row.due_at, _waiting(row).attempt)
    assert kept.message.payload == {"name": "v2"} and kept.message.created_at == newer.created_at
    # ... and the older content, replayed after it, does not come back.
    assert plan_upsert(kept, _upsert()) == kept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=50)), max_size=60))
def test_replays_in_any_order_never_allow_more_attempts_than_the_schedule(steps: list[tuple[bool, int]]) -> None:
    """A CRM that always fails: replays of anything already delivered, between the due retries."""
    delivered = [_upsert()]
    pending: PendingCrm | None = None
    calls = 0
    dead = False

    def deliver(message: UpsertOpportunity, minutes: float) -> None:
        nonlocal pending, calls, dead
        plan = plan_upsert(pending, message)
        if isinstance(plan, PendingCrm):
            assert pending is not None
            assert (plan.due_at, _waiting(plan).attempt) == (pending.due_at, _waiting(pending).attempt)
            pending = plan
            return
        calls += 1
        pending = _fail(plan, minutes)
        dead = pending is None

    deliver(delivered[0], 0)
    clock = 0.0
    for timer_fires, pick in steps:
        if dead:
            break
        clock += 1
        if timer_fires and pending is not None:
            delivered.append(_waiting(pending))
            deliver(_waiting(pending), clock)
        else:
            deliver(delivered[pick % len(delivered)], clock)  # a crash replays an earlier delivery
        assert calls <= len(DELAYS) + 1
    assert calls <= len(DELAYS) + 1 and (dead or pending is not None)

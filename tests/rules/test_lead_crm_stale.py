"""A CRM event that happened before the deal's last close, correction or reopen is stale: a
redelivery out of order changes nothing (review s18-b F1; pure).

Salesforce: "Messages are retried independent of their order in the queue. As a result, messages
can be delivered out of order." ``RecordCrmEvent.at`` is the CRM's own time when the relay sends
it (Salesforce's ``LastModifiedDate``, HubSpot's stage time).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from rules.commands import RecordCrmEvent
from rules.lead_crm import stale_crm_event
from rules.outcomes import RecordOutcome
from tests.rules._sim import T0
from tests.rules.test_lead import LEAD_ID
from tests.rules.test_lead_crm import converted, step, types
from tests.rules.test_lead_crm_corrections import RECYCLING, published


def happened(kind: str, eid: str, hours: float, **fields: Any) -> RecordCrmEvent:
    """A CRM event that happened ``hours`` after T0 in the CRM, which says so (``crm_at``)."""
    at = T0 + timedelta(hours=hours)
    return RecordCrmEvent(lead_id=LEAD_ID, event_id=eid, kind=kind, at=at, crm_at=at,  # type: ignore[arg-type]
                          **fields)


def arrived(kind: str, eid: str, hours: float, **fields: Any) -> RecordCrmEvent:
    """A CRM event sent without its time: stamped on arrival, ``hours`` after T0 (no ``crm_at``)."""
    return RecordCrmEvent(lead_id=LEAD_ID, event_id=eid, kind=kind, at=T0 + timedelta(hours=hours),  # type: ignore[arg-type]
                          **fields)


def lost_at_50h() -> Any:
    state, _ = converted()
    state, _ = step(state, happened("lost", "sfdc_2", 50, reason="No budget"), RECYCLING, minutes=60 * 51)
    return state


def test_a_stage_change_that_happened_before_the_close_does_not_reopen_it() -> None:
    """The Negotiation move (49 h) redelivered after the Closed Lost (50 h) went through."""
    state = lost_at_50h()
    after, out = step(state, happened("stage_changed", "sfdc_1", 49, stage="Negotiation"), RECYCLING,
                      minutes=60 * 52)
    assert types(out) == ["opportunity.event_ignored"]
    assert after == state  # no state change at all (the opportunity stays lost, the lead recycled)
    data = published(out, "opportunity.event_ignored")
    assert data["why"].startswith("stale: it happened at") and "(now lost, at stage closed_lost)" in data["why"]
    assert (data["kind"], data["event_id"], data["at"], data["moved_at"]) == (
        "stage_changed", "sfdc_1", T0 + timedelta(hours=49), T0 + timedelta(hours=50))


def test_a_won_that_happened_before_the_lost_does_not_overturn_it() -> None:
    """Won at 49 h, corrected to lost at 50 h in the CRM; the lost arrives first, the won second."""
    state = lost_at_50h()
    after, out = step(state, happened("won", "sfdc_1", 49, amount=48000.0), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.event_ignored"] and after == state
    assert not any(isinstance(m.value, RecordOutcome) for m in out)  # the board keeps the loss, no revenue


def test_a_close_that_happened_before_a_reopen_does_not_close_it_again() -> None:
    """Won (49 h), lost (50 h), reopened (52 h); the lost is redelivered last: the deal stays open."""
    state, _ = converted()
    state, _ = step(state, happened("won", "e1", 49, amount=100.0), RECYCLING, minutes=60 * 49)
    state, _ = step(state, happened("stage_changed", "e3", 52, stage="Negotiation"), RECYCLING, minutes=60 * 52)
    assert state.opportunity is not None and state.opportunity.crm_moved_at == T0 + timedelta(hours=52)
    after, out = step(state, happened("lost", "e2", 50, reason="bad fit"), RECYCLING, minutes=60 * 53)
    assert types(out) == ["opportunity.event_ignored"] and after == state
    assert "(now open, at stage Negotiation)" in published(out, "opportunity.event_ignored")["why"]
    # An older stage change of the reopened deal is stale too: its stage would go back.
    _, out = step(state, happened("stage_changed", "e0", 51, stage="Proposal"), RECYCLING, minutes=60 * 53)
    assert types(out) == ["opportunity.event_ignored"]


def test_events_after_the_last_move_still_apply_and_move_it_on() -> None:
    state = lost_at_50h()
    state, out = step(state, happened("won", "e3", 51, amount=10.0), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.won", "RecordOutcome"]
    assert state.opportunity is not None and state.opportunity.crm_moved_at == T0 + timedelta(hours=51)
    # Now the 50 h loss itself, redelivered under another id, is stale as well.
    _, out = step(state, happened("lost", "e2b", 50), RECYCLING, minutes=60 * 53)
    assert types(out) == ["opportunity.event_ignored"]


def test_an_event_at_the_same_time_as_the_close_is_not_stale() -> None:
    """Ties of another kind apply in arrival order: time cannot order them."""
    state = lost_at_50h()
    assert stale_crm_event(state, T0 + timedelta(hours=50), None, "won") is None
    state, out = step(state, happened("won", "e3", 50, amount=10.0), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.won", "RecordOutcome"]


def test_a_close_that_happened_before_a_later_stage_change_does_not_close_the_open_deal() -> None:
    """Closed Won at 49 h fails to deliver; the rep moves the deal on to Negotiation at 50 h (a
    stage change of the open deal, delivered); the won is redelivered at 52 h. It closed the deal
    won (board, revenue) while the CRM holds it open: stage changes of an open deal set no order
    (review s18-e E2). An older stage is not put back either."""
    state, _ = converted()
    state, _ = step(state, happened("stage_changed", "e2", 50, stage="Negotiation"), RECYCLING, minutes=60 * 50)
    assert state.opportunity is not None and state.opportunity.crm_moved_at == T0 + timedelta(hours=50)
    after, out = step(state, happened("won", "e1", 49, amount=48000.0), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.event_ignored"] and after == state
    _, out = step(state, happened("stage_changed", "e0", 49, stage="Proposal"), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.event_ignored"]


def test_only_the_crms_own_times_are_compared() -> None:
    """A close sent without its time is stamped on arrival (51 h, a retry after the CRM made it at
    50 h); the rep reopened at 50.5 h and that event carries the CRM's time. It is newer in the
    CRM, older than the close's arrival: it applies (it was ignored, and never sent again;
    review s18-e E3). Events without a CRM time apply in arrival order."""
    state, _ = converted()
    state, _ = step(state, happened("stage_changed", "e1", 49, stage="Proposal"), RECYCLING, minutes=60 * 49)
    state, _ = step(state, arrived("lost", "e2", 51, reason="No budget"), RECYCLING, minutes=60 * 51)
    assert state.opportunity is not None and state.opportunity.crm_moved_at == T0 + timedelta(hours=49)
    reopened, out = step(state, happened("stage_changed", "e3", 50.5, stage="Negotiation"), RECYCLING,
                         minutes=60 * 52)
    assert types(out)[0] == "opportunity.reopened" and reopened.status == "converted"
    # Still ordered against the CRM times it has: an event older than 49 h is stale.
    _, out = step(state, happened("won", "e0", 48, amount=10.0), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.event_ignored"]
    # Without a CRM time: arrival order (a won stamped at 50 h, before the lost's 51 h, is a correction).
    _, out = step(state, arrived("won", "e4", 50, amount=10.0), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.won", "RecordOutcome"]


def test_an_opportunity_kept_before_crm_moved_at_applies_in_arrival_order() -> None:
    """A state from an older worker (``moved_at`` and ``closed_at`` on leadflow's clock, no
    ``crm_moved_at``): nothing to order by, so events apply as they arrive, as before 597e6f6."""
    state = lost_at_50h()
    assert state.opportunity is not None
    older = replace(state, opportunity=replace(state.opportunity, crm_moved_at=None))
    _, out = step(older, happened("stage_changed", "sfdc_1", 49, stage="Negotiation"), RECYCLING, minutes=60 * 52)
    assert types(out)[0] == "opportunity.reopened"


def test_an_event_about_another_opportunity_is_refused_not_ignored() -> None:
    state = lost_at_50h()
    assert stale_crm_event(state, T0, "op_" + "0" * 24) is None
    _, out = step(state, happened("won", "e9", 49, opportunity_id="op_" + "0" * 24), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.event_rejected"]


def test_a_hubspot_retry_delivered_after_a_later_close_does_not_reopen_it() -> None:
    """Review s18-b F2: the first attempt of 'contractsent' reached leadflow but the relay answered
    HubSpot 502 (leadflow slower than its 10 s); the rep closed the deal lost; HubSpot's retry of
    'contractsent' comes a day later. Without HubSpot's dates the relay gives the retry the first
    attempt's webhook-id (da1d517 gave it a new one, from the request's timestamp), so the lead
    drops it as a replay; with them, it carries the stage's time and is stale."""
    from ops.crm_relay import leadflow_event

    deal = {"hs_object_id": "1234567", "dealstage": "contractsent", "leadflow_lead_id": LEAD_ID}
    first_id, _ = leadflow_event(deal)
    retry_id, _ = leadflow_event(deal)
    state, _ = converted()
    state, _ = step(state, happened("stage_changed", f"crm:{first_id}", 49, stage="contractsent"), RECYCLING,
                    minutes=60 * 49)
    state, _ = step(state, happened("lost", "crm:hubspot_1234567_closedlost_x", 50), RECYCLING, minutes=60 * 50)
    after, out = step(state, happened("stage_changed", f"crm:{retry_id}", 74, stage="contractsent"), RECYCLING,
                      minutes=60 * 74)  # no time from HubSpot: as late as its arrival, but the same id
    assert out == [] and after.status == "recycled"
    stage_set_ms = int((T0 + timedelta(hours=49)).timestamp() * 1000)  # when HubSpot set the stage
    dated = {"properties": {**{k: {"value": v} for k, v in deal.items()},
                            "dealstage": {"value": "contractsent", "timestamp": stage_set_ms}}}
    _, event = leadflow_event(dated)
    _, out = step(state, RecordCrmEvent(lead_id=LEAD_ID, event_id="crm:other-id", kind="stage_changed",
                                        stage="contractsent", at=datetime.fromisoformat(event["timestamp"]),
                                        crm_at=datetime.fromisoformat(event["timestamp"])),
                  RECYCLING, minutes=60 * 74)
    assert types(out) == ["opportunity.event_ignored"]


def test_a_repeat_of_the_close_at_its_own_time_is_ignored_not_rejected() -> None:
    """Salesforce redelivers a failed notification with the record's latest data: the Closed Lost
    leadflow holds, at the close's own time. Ignored (a 2xx at the API, so not redelivered for
    24 h), not rejected (a 409) (review s18-e E1)."""
    state = lost_at_50h()
    after, out = step(state, happened("lost", "sfdc_3", 50, reason="No budget"), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.event_ignored"] and after == state
    assert published(out, "opportunity.event_ignored")["why"].startswith("already lost")
    # A tie of another kind still applies in arrival order (a correction at the same time).
    _, out = step(state, happened("won", "sfdc_4", 50, amount=10.0), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.won", "RecordOutcome"]


def test_the_close_held_sent_with_a_later_time_moves_the_order_on() -> None:
    """Won (49 h), lost (50 h, delayed), won again (51 h): the second won arrives before the lost.
    It changes nothing but the CRM time held, so the late lost is stale and the deal ends won, as
    in the CRM. (A 409 retried would have applied the lost once it arrived, or never for HubSpot.)"""
    state, _ = converted()
    state, _ = step(state, happened("won", "e1", 49, amount=100.0), RECYCLING, minutes=60 * 49)
    again, out = step(state, happened("won", "e3", 51, amount=100.0), RECYCLING, minutes=60 * 51)
    assert out == [] and again.opportunity is not None and again.opportunity.crm_moved_at == T0 + timedelta(hours=51)
    assert again.status == "won" and replace(again.opportunity, crm_moved_at=None, moved_at=None) == replace(
        state.opportunity, crm_moved_at=None, moved_at=None)  # type: ignore[arg-type]
    after, out = step(again, happened("lost", "e2", 50, reason="bad fit"), RECYCLING, minutes=60 * 52)
    assert types(out) == ["opportunity.event_ignored"] and after == again
    # Without the CRM's time it cannot be placed: rejected, as before.
    _, out = step(state, arrived("won", "e4", 51, amount=100.0), RECYCLING, minutes=60 * 51)
    assert types(out) == ["opportunity.event_rejected"]

"""A deal the CRM reopens (a stage change after its close): open again, the lead back in it, the
close off the board, and its next won or lost an ordinary close (pure)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from ops.metrics import funnel_move
from rules.commands import DeferCommand, RouteLead
from rules.lead import LeadState
from rules.lead_crm import can_take_crm_event
from rules.outcomes import CountedOutcome, LearningPolicy, OutcomeBoard, RecordOutcome, Tally, record_outcome
from tests.rules.test_lead_crm import OPP, converted, crm_event, step, types
from tests.rules.test_lead_crm_corrections import DAY, RECYCLING, outcome_of, published, recycled_to_cycle_2

POLICY = LearningPolicy()


def board_of(*outs: list[Any]) -> OutcomeBoard:
    board = None
    for out in outs:
        for m in out:
            if isinstance(m.value, RecordOutcome):
                board = record_outcome(board, m.value, POLICY)
    return board or OutcomeBoard()


def test_a_lost_deal_moved_back_into_a_stage_is_open_again_and_its_loss_comes_off() -> None:
    state, _ = converted()
    state, lost = step(state, crm_event("lost", reason="No budget this year"), RECYCLING)
    defer = next(m.value for m in lost if isinstance(m.value, DeferCommand))
    state, out = step(state, crm_event("stage_changed", eid="e2", stage="Negotiation"), RECYCLING, minutes=DAY)
    assert types(out) == ["opportunity.reopened", "RecordOutcome"]
    assert state.status == "converted" and state.opportunity is not None
    opp = state.opportunity
    assert (opp.status, opp.stage, opp.closed_at, opp.lost_reason, opp.lost_weight) == (
        "open", "Negotiation", None, None, None)
    data = published(out, "opportunity.reopened")
    assert (data["stage"], data["from"], data["previous"], data["opportunity_id"]) == (
        "Negotiation", "lost", "closed_lost", OPP)
    # leadflow_lifecycle_transitions_total{from="lost",to="reopened"}
    assert funnel_move("opportunity.reopened", data) == ("lost", "reopened")
    withdraw = outcome_of(out)
    assert withdraw.reopened and withdraw.outcome_id == f"{OPP}:reopened:1"
    assert withdraw.corrects == CountedOutcome(won=False, source="webform", segment="large/software", rep_id="rep-a",
                                               reason="No budget this year", weight=2.0)
    assert board_of(lost, out).tallies == {k: Tally() for k in board_of(lost).tallies}
    assert state.timeline[-1].kind == "opportunity_reopened"

    # The return to routing the loss planned finds a lead in its deal: no new cycle, no SDR.
    after, routed = step(state, defer.command, RECYCLING, minutes=4 * DAY)
    assert routed == [] and after == state
    # A capture now is a touch on the open deal, not a new cycle.
    assert can_take_crm_event(state, "won") is None

    # Then won: an ordinary close (no correction), counted once on the board.
    state, won = step(state, crm_event("won", eid="e3", amount=48000.0), RECYCLING, minutes=5 * DAY)
    assert state.status == "won" and types(won) == ["opportunity.won", "RecordOutcome"]
    data = published(won, "opportunity.won")
    assert "corrects" not in data and funnel_move("opportunity.won", data) == ("opportunity", "won")
    close = outcome_of(won)
    assert (close.outcome_id, close.corrects, close.reopened) == (f"{OPP}:won:1", None, False)
    board = board_of(lost, out, won)
    assert board.tallies["segment:large/software"] == Tally(won=1, lost=0)
    assert board.tallies["source:webform"] == Tally(won=1, lost=0)


def test_a_won_deal_reopened_and_won_again_counts_one_won() -> None:
    """The second won's id is not the first's, or the board would drop it as a replay."""
    state, _ = converted()
    state, first = step(state, crm_event("won", amount=1000.0), RECYCLING)
    state, reopen = step(state, crm_event("stage_changed", eid="e2", stage="contractsent"), RECYCLING, minutes=DAY)
    assert state.status == "converted" and published(reopen, "opportunity.reopened")["from"] == "won"
    assert funnel_move("opportunity.reopened", published(reopen, "opportunity.reopened")) == ("won", "reopened")
    assert board_of(first, reopen).tallies["source:webform"] == Tally()
    state, again = step(state, crm_event("won", eid="e3", amount=1200.0), RECYCLING, minutes=2 * DAY)
    ids = [outcome_of(o).outcome_id for o in (first, reopen, again)]
    assert ids == [f"{OPP}:won", f"{OPP}:reopened:1", f"{OPP}:won:1"]
    assert board_of(first, reopen, again).tallies == board_of(first).tallies
    assert state.opportunity is not None and state.opportunity.amount == 1200.0


def test_reopened_then_lost_takes_the_lost_path_with_a_fresh_recycle_timer() -> None:
    state, _ = converted()
    state, first = step(state, crm_event("won"), RECYCLING)
    state, reopen = step(state, crm_event("stage_changed", eid="e2", stage="proposal"), RECYCLING, minutes=DAY)
    state, lost = step(state, crm_event("lost", eid="e3", reason="bad fit"), RECYCLING, minutes=2 * DAY)
    assert types(lost) == ["opportunity.lost", "RecordOutcome", "DeferCommand", "lead.recycled"]
    assert state.status == "recycled" and "from" not in published(lost, "opportunity.lost")
    assert outcome_of(lost).outcome_id == f"{OPP}:lost:1"
    assert board_of(first, reopen, lost).tallies["segment:large/software"] == Tally(won=0, lost=2)
    # And reopened once more: a third number, the loss (with its weight) off again.
    state, again = step(state, crm_event("stage_changed", eid="e4", stage="proposal"), RECYCLING, minutes=3 * DAY)
    assert outcome_of(again).outcome_id == f"{OPP}:reopened:2"
    assert board_of(first, reopen, lost, again).tallies["segment:large/software"] == Tally()


def test_a_replayed_reopen_changes_nothing() -> None:
    state, _ = converted()
    state, lost = step(state, crm_event("lost"), RECYCLING)
    state, out = step(state, crm_event("stage_changed", eid="e2", stage="proposal"), RECYCLING, minutes=DAY)
    again, replayed = step(state, crm_event("stage_changed", eid="e2", stage="proposal"), RECYCLING, minutes=DAY)
    assert replayed == [] and again == state
    # The board drops a redelivered outcome by its id.
    board = board_of(lost, out)
    assert record_outcome(board, outcome_of(out), POLICY) is board


def test_a_stage_change_to_the_stage_it_closed_at_reopens_nothing() -> None:
    state, _ = converted()
    state, _ = step(state, crm_event("lost", stage="Closed Lost"), RECYCLING)
    assert can_take_crm_event(state, "stage_changed", stage="Closed Lost") == (
        "the opportunity is already lost at stage Closed Lost")
    after, out = step(state, crm_event("stage_changed", eid="e2", stage="Closed Lost"), RECYCLING)
    assert types(out) == ["opportunity.event_rejected"] and after == state


@pytest.mark.parametrize("status", ["disqualified", "nurture"])
def test_a_lead_moved_on_since_the_close_is_not_reopened(status: str) -> None:
    state, _ = converted()
    state, _ = step(state, crm_event("lost"), RECYCLING)
    moved = replace(state, status=status)
    assert can_take_crm_event(moved, "stage_changed", stage="proposal") == (
        f"the lost opportunity cannot be reopened: a {status} lead cannot become converted "
        f"(from {status}: {'nothing (final)' if status == 'disqualified' else 'disqualified, mql'})")


def test_once_the_lead_is_routed_again_the_old_deal_is_not_reopened() -> None:
    state: LeadState = recycled_to_cycle_2()
    after, out = step(state, crm_event("stage_changed", eid="e2", stage="proposal", opportunity_id=OPP), RECYCLING,
                      minutes=5 * DAY)
    assert types(out) == ["opportunity.event_rejected"] and after == state
    assert can_take_crm_event(state, "stage_changed", stage="proposal") == "the lead has no opportunity (it is mql)"
    assert not any(isinstance(m.value, RouteLead) for m in out)


def test_an_older_outcomes_agent_leaves_the_close_counted() -> None:
    """Rolling upgrade: a 7d86791 worker, which knows ``corrects`` but not ``reopened``, counts the
    fields and takes ``corrects`` off; the lead repeats the close in both, so that step leaves the
    board as it was. (It does not take the close off, so the deal's next close counts a second
    deal; an agent older than 7d86791 drops ``corrects`` and counts another close: README,
    "Deploying", says to pause the CRM relays during such a rollout.)"""
    state, _ = converted()
    state, lost = step(state, crm_event("lost", reason="No budget this year"), RECYCLING)
    _, out = step(state, crm_event("stage_changed", eid="e2", stage="proposal"), RECYCLING, minutes=DAY)
    as_old = replace(outcome_of(out), reopened=False)
    before = board_of(lost)
    assert record_outcome(before, as_old, POLICY).tallies == before.tallies

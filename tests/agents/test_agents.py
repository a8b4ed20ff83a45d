"""The agents, driven through Faust's ``test_context()``: thin wiring around the pure transitions."""
from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from connectors.webhooks import DeliveryResult
from rules.capture import CapturedLead
from rules.commands import (
    CaptureLead, ChangePresence, LeadAssigned, LeadQueued, Notify, PutRep, RecordDelivery, ReleaseLead,
    RepProfile, RouteLead, RoutingDecision, UpsertRep,
)
from rules.lead import LeadState
from rules.team import QueueSlot, lane_base
from streams.agents import intake, lead, notifier, reps, team
from streams.tables.lead_state import lead_state
from streams.tables.rep_directory import rep_directory
from streams.tables.team_record import holding_key, queue_key, route_key
from streams.tables.team_state import read_team, team_state
from tests.agents.conftest import FakeTopic, Published, until

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _route(team_id: str, n: int) -> RouteLead:
    return RouteLead(team_id=team_id, lead_id=f"l{n}", route_id=f"l{n}:1:1", requested_at=NOW)


async def test_team_agent_assigns_queues_and_drains(published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(team, "publish", published)
    team_id = _id("team")
    profile = RepProfile(rep_id="a", team_id=team_id, capacity=1, webhook_url="https://hooks.example/a")
    async with team.run_teams.test_context() as agent:
        await agent.put(key=team_id, value=UpsertRep(team_id=team_id, profile=profile, at=NOW))
        await agent.put(key=team_id, value=_route(team_id, 1))
        await agent.put(key=team_id, value=_route(team_id, 2))
        await until(lambda: team_state.get(route_key(team_id, "l2:1:1")) is not None)
        assert [type(v).__name__ for v in (m.value for m in published.messages)] == ["LeadAssigned", "LeadQueued"]
        # The waiting lead is in the queue table, with its route index.
        seq = lane_base(_route(team_id, 2).priority)
        assert team_state[queue_key(team_id, seq)] == _route(team_id, 2)
        assert team_state[route_key(team_id, "l2:1:1")] == QueueSlot(seq=seq)
        assert read_team(team_id).queue_depth == 1

        await agent.put(key=team_id, value=ReleaseLead(team_id=team_id, lead_id="l1", route_id="l1:1:1",
                                                       rep_id="a", reason="test", at=NOW))
    assigned = published.values(LeadAssigned)
    assert [a.lead_id for a in assigned] == ["l1", "l2"] and {a.rep_id for a in assigned} == {"a"}
    state = read_team(team_id)
    assert state.queue_depth == 0 and state.reps["a"].load == 1
    assert team_state[holding_key(team_id, "l2:1:1")].rep_id == "a" and holding_key(team_id, "l1:1:1") not in team_state
    assert queue_key(team_id, seq) not in team_state and route_key(team_id, "l2:1:1") not in team_state


async def test_team_agent_answers_a_replayed_route_without_a_second_queue_entry(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(team, "publish", published)
    team_id = _id("team")
    async with team.run_teams.test_context() as agent:
        await agent.put(key=team_id, value=_route(team_id, 1))  # no reps: queued
        await agent.put(key=team_id, value=_route(team_id, 1))  # replay
    assert len(published.values(LeadQueued)) == 2
    assert read_team(team_id).queue_depth == 1


def _capture(lead_id: str, capture_id: str = "c1") -> CaptureLead:
    return CaptureLead(lead_id=lead_id, capture_id=capture_id, captured_at=NOW,
                       lead=CapturedLead(email=f"{lead_id}@buyer.example", source="web"))


async def test_lead_agent_publishes_before_it_writes_the_state(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lead, "publish", published)
    lead_id = _id("ld")
    seen_at_publish: list[Any] = []
    published.on_publish = lambda _batch: seen_at_publish.append(lead_state.get(lead_id))
    async with lead.run_leads.test_context() as agent:
        await agent.put(key=lead_id, value=_capture(lead_id))
    # When the messages went out, the table did not hold the new state yet.
    assert seen_at_publish == [None]
    state = lead_state[lead_id]
    assert isinstance(state, LeadState) and state.routing == "routing"
    channels = [m.channel for m in published.messages]
    # captured, scored, the route, and an arrival for the team windows
    assert channels == ["lead.events", "lead.events", "team.commands", "team.signals"]
    route = published.values(RouteLead)[0]
    assert route.lead_id == lead_id and route.team_id == "default"


async def test_lead_agent_notifies_the_assigned_rep(published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lead, "publish", published)
    lead_id = _id("ld")
    async with lead.run_leads.test_context() as agent:
        await agent.put(key=lead_id, value=_capture(lead_id))
        await until(lambda: lead_state.get(lead_id) is not None)
        route = published.values(RouteLead)[0]
        decision = RoutingDecision(team_id="default", strategy="weighted_round_robin", candidates=(),
                                   winner="a", reason="test", decided_at=NOW)
        await agent.put(key=lead_id, value=LeadAssigned(
            lead_id=lead_id, route_id=route.route_id, team_id="default", rep_id="a", rep_name="Ana",
            webhook_url="https://hooks.example/a", webhook_secret="whsec_" + "A" * 43 + "=",
            decision=decision, assigned_at=NOW))
    (notify,) = published.values(Notify)
    assert notify.rep_id == "a" and notify.payload["type"] == "lead.assigned"
    assert lead_state[lead_id].routing == "assigned"
    # The public event never carries the rep's webhook secret.
    events = [m.value for m in published.messages if m.channel == "lead.events"]
    assert "whsec_" not in orjson.dumps(events).decode()


async def test_rep_agent_routes_rep_commands_to_the_team(published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reps, "publish", published)
    rep_id = _id("rep")
    profile = RepProfile(rep_id=rep_id, team_id="t-a")
    async with reps.run_reps.test_context() as agent:
        await agent.put(key="ghost", value=ChangePresence(rep_id="ghost", status="busy", at=NOW))
        assert published.messages == []
        await agent.put(key=rep_id, value=PutRep(rep_id=rep_id, profile=profile, at=NOW))
    entry = rep_directory[rep_id]
    # In no team until t-a answers (rules.reps): the question waits, under number 1.
    assert (entry.team_id, entry.member, entry.profile, entry.origin, entry.moves) == ("t-a", False, None, "api", 1)
    assert entry.asked is not None and (entry.asked.team_id, entry.asked.profile) == ("t-a", profile)
    (upsert,) = published.values(UpsertRep)
    assert upsert.team_id == "t-a" and upsert.join == 1 and published.messages[0].key == "t-a"


async def test_intake_dead_letters_bad_records_and_captures_good_ones(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    rejected = FakeTopic()
    monkeypatch.setattr(intake, "publish", published)
    monkeypatch.setattr(intake, "leads_rejected", rejected)
    async with intake.capture_leads.test_context() as agent:
        await agent.put(key="k", value=b"\xff not json")
        await agent.put(key="k", value=None)  # a tombstone
        await agent.put(key="k", value=b'{"email": ')
        await agent.put(key="k", value=b'{"email": "nope"}')
        await agent.put(key="k", value=orjson.dumps({"email": "Feed@Partner.example", "source": "feed"}))
    reasons = [headers["leadflow-reason"] for _, _, headers in rejected.sent]
    assert reasons == [b"not_utf8", b"empty", b"malformed_json", b"invalid_lead"]
    details = [orjson.loads(headers["leadflow-detail"]) for _, _, headers in rejected.sent]
    assert details[:3] == [{"message": "not UTF-8 at byte 1 of 10; a lead is JSON, encoded as UTF-8"},
                           {"message": "empty record (a tombstone: no value): no lead"},
                           {"message": "not valid JSON: unexpected end of data at position 10"}]
    assert [value for _, value, _ in rejected.sent] == [b"\xff not json", b"", b'{"email": ', b'{"email": "nope"}']
    (message,) = published.messages
    # A corporate domain visits the account book first (lead-to-account match), keyed by that domain.
    assert message.channel == "account.commands" and message.key == "partner.example"
    capture = message.value.capture
    assert isinstance(capture, CaptureLead) and message.value.domain == "partner.example"
    assert capture.lead.email == "feed@partner.example" and capture.lead.channel == "kafka"
    assert capture.capture_id.startswith("kafka:")  # positional: a replay is recognized


async def test_notifier_reports_each_delivery_to_the_lead(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifier, "publish", published)

    async def deliver(message: Notify, gate: Any) -> DeliveryResult:
        ok = message.rep_id == "a"
        return DeliveryResult(webhook_id=message.webhook_id, delivered=ok, attempts=1 if ok else 4,
                              status=204 if ok else 503, error=None if ok else "HTTP 503",
                              duration_s=0.01, gave_up_reason=None)

    monkeypatch.setattr(notifier, "_deliver", deliver)

    def notify(rep_id: str) -> Notify:
        return Notify(webhook_id=f"msg_{rep_id}", event_type="lead.assigned", lead_id=f"lead-{rep_id}",
                      rep_id=rep_id, url="https://hooks.example/x", secret="whsec_x", payload={}, created_at=NOW)

    async with notifier.deliver_notifications.test_context() as agent:
        await agent.put(key="lead-a", value=notify("a"))
        await agent.put(key="lead-b", value=notify("b"))
        for _ in range(50):
            if len(published.messages) == 2:
                break
            await asyncio.sleep(0.05)
    outcomes = {m.value.rep_id: m.value for m in published.messages}
    assert isinstance(outcomes["a"], RecordDelivery) and outcomes["a"].delivered
    assert not outcomes["b"].delivered and outcomes["b"].attempts == 4 and outcomes["b"].error == "HTTP 503"


@pytest.mark.parametrize("key, value, reason", [
    (b"ld_1", b"\xff\xfe not a leadflow message", "not a leadflow message"),
    (b"ld_1", b'{"type": "CaptureLead", "data": {"lead_id": 7}}', "invalid CaptureLead"),
    (b"ld_1", b'{"type": "DropTables", "data": {}}', "unknown message type"),
    (b"\xff\xfe", None, "not UTF-8"),
])
def test_a_command_topic_reads_bad_bytes_as_unreadable_instead_of_raising(
    key: bytes, value: bytes | None, reason: str
) -> None:
    """Faust would ack an undecodable record and stall a take_events agent; our readers never raise."""
    from streams.app import app
    from streams.codec import encode
    from streams.topics import Unreadable, lead_commands

    serializers = app.serializers
    read_key = serializers.loads_key(lead_commands.key_type, key, serializer=lead_commands.key_serializer)
    read_value = serializers.loads_value(lead_commands.value_type, value or encode(_capture("ld_1")),
                                         serializer=lead_commands.value_serializer)
    problem = read_key if value is None else read_value
    assert isinstance(problem, Unreadable) and reason in problem.reason
    # What we send still reads back as itself, under the same key bytes as Faust's raw str keys.
    assert serializers.loads_value(lead_commands.value_type, encode(_capture("ld_1")),
                                   serializer=lead_commands.value_serializer) == _capture("ld_1")
    assert serializers.dumps_key(lead_commands.key_type, "ld_é", serializer=lead_commands.key_serializer) == "ld_é".encode()


@pytest.mark.parametrize("unreadable_key", [False, True])
async def test_an_unreadable_command_is_counted_and_skipped_and_the_next_one_is_applied(
    published: Published, monkeypatch: pytest.MonkeyPatch, unreadable_key: bool
) -> None:
    from streams.app import runtime
    from streams.topics import Unreadable

    def failures() -> float:
        return runtime.metrics.registry.get_sample_value("leadflow_command_failures_total", {"agent": "lead"}) or 0.0

    monkeypatch.setattr(lead, "publish", published)
    lead_id = _id("ld")
    before = failures()
    async with lead.run_leads.test_context() as agent:
        if unreadable_key:
            await agent.put(key=Unreadable("the key is not UTF-8"), value=_capture(lead_id))
        else:
            await agent.put(key=lead_id, value=Unreadable("invalid CaptureLead"))
        await agent.put(key=lead_id, value=_capture(lead_id, "c2"))
        await until(lambda: lead_state.get(lead_id) is not None)
    assert failures() == before + 1
    assert lead_state[lead_id].recent_captures == ("c2",)

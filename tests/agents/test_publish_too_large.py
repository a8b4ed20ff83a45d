"""``publish`` and a message Kafka refuses for its size: refused by the producer (it never passes), left
out, logged and counted; refused by the broker or the topic (a setting that can be raised), retried."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError, NotLeaderForPartitionError
from faust.exceptions import ProducerSendError

from rules.commands import Outgoing
from streams import topics
from streams.app import runtime

LIMIT = 100


class Kafka:
    """Stands in for the producer and broker: a value over ``LIMIT`` bytes is refused for its size,
    by the producer (raised from ``send``, wrapped by Faust) or by the broker (on the future)."""

    def __init__(self, *, client_side: bool = False, flaky: int = 0, limit: int = LIMIT) -> None:
        self.client_side, self.flaky, self.limit = client_side, flaky, limit
        self.stored: list[Outgoing] = []
        self.attempts = 0

    async def send(self, message: Outgoing) -> asyncio.Future[None]:
        self.attempts += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(str(message.value)) > self.limit:
            if self.client_side:
                try:
                    raise MessageSizeTooLargeError("The message is 1234567 bytes when serialized")
                except MessageSizeTooLargeError as exc:
                    raise ProducerSendError(f"Error while sending: {exc!r}") from exc
            future.set_exception(MessageSizeTooLargeError())
        elif self.flaky > 0:
            self.flaky -= 1
            future.set_exception(NotLeaderForPartitionError())
        else:
            self.stored.append(message)
            future.set_result(None)
        return future


def _batch() -> list[Outgoing]:
    return [Outgoing(channel="lead.events", key="lead-1", value={"type": "small"}),
            Outgoing(channel="notifications", key="lead-2", value={"big": "x" * 500}),
            Outgoing(channel="account.commands", key="vanity-domain.example", value={"big": "y" * 500}),
            Outgoing(channel="team.commands", key="team-1", value={"type": "small too"})]


def _refused(channel: str) -> float:
    return runtime.metrics.registry.get_sample_value("leadflow_messages_too_large_total", {"channel": channel}) or 0.0


async def test_a_message_the_producer_refuses_for_its_size_is_left_out_and_the_rest_stored(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Before: publish retried the batch every 10 s for ever, and the agent's partition stalled.
    kafka = Kafka(client_side=True)
    monkeypatch.setattr(topics, "send", kafka.send)
    before = _refused("notifications"), _refused("account.commands")
    with caplog.at_level(logging.ERROR, logger="streams.topics"):
        await asyncio.wait_for(topics.publish(_batch()), 2.0)
    assert [m.value for m in kafka.stored] == [{"type": "small"}, {"type": "small too"}]
    assert kafka.attempts == 4  # sent once: no retry of a refusal that cannot change
    assert (_refused("notifications"), _refused("account.commands")) == (before[0] + 1, before[1] + 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "the producer refused a dict message for notifications key lead-2 for its size" in errors[0]
    assert "account.commands key (not logged)" in errors[1] and "vanity" not in caplog.text
    assert "xxxx" not in caplog.text


async def test_another_refusal_beside_a_message_too_large_is_retried_as_before(
        monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = Kafka(client_side=True, flaky=1)  # the first small message is refused once (a leader moving)
    monkeypatch.setattr(topics, "send", kafka.send)
    await asyncio.wait_for(topics.publish(_batch()), 5.0)
    assert [m.value for m in kafka.stored] == [{"type": "small too"}, {"type": "small"}, {"type": "small too"}]
    assert kafka.attempts == 8  # the whole batch once more, after the 0.5 s back-off


def test_too_large_sees_through_faust_s_wrapper() -> None:
    assert topics.too_large(MessageSizeTooLargeError())
    try:
        try:
            raise MessageSizeTooLargeError("client side")
        except MessageSizeTooLargeError as exc:
            raise ProducerSendError("Error while sending") from exc
    except ProducerSendError as wrapped:
        assert topics.too_large(wrapped)
    assert not topics.too_large(NotLeaderForPartitionError())


def test_the_metric_names_every_channel_publish_writes_to_at_zero() -> None:
    from ops.metrics import PUBLISHED_CHANNELS
    assert set(PUBLISHED_CHANNELS) == set(topics.CHANNELS)


@pytest.mark.parametrize("channel", ["team.commands", "notifications"])
async def test_a_size_refusal_from_the_broker_is_retried_and_nothing_is_taken_as_sent_until_stored(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, channel: str) -> None:
    # Review C, P1: a topic's max.message.bytes (an operator's setting) refused a RouteLead on
    # team.commands; publish left it out and returned, and the lead agent wrote its state as routed
    # while the team never got the command. Now publish does not return until the broker took it.
    kafka = Kafka()
    monkeypatch.setattr(topics, "send", kafka.send)
    monkeypatch.setattr(topics, "_STOP_POLL_S", 0.05)
    route = Outgoing(channel=channel, key="team-1", value={"RouteLead": "z" * 300})
    outgoing = [Outgoing(channel="lead.events", key="lead-1", value={"type": "small"}), route]
    before = _refused(channel)
    with caplog.at_level(logging.WARNING, logger="streams.topics"):
        publishing = asyncio.ensure_future(topics.publish(outgoing))
        await asyncio.sleep(1.0)  # the first attempt and a retry after 0.5 s, both refused
        assert not publishing.done(), "publish returned: its caller would write a state whose message was never sent"
        assert route not in kafka.stored
        assert kafka.attempts >= 4
        kafka.limit = 1000  # the operator raises the topic's limit again
        await asyncio.wait_for(publishing, 3.0)
    assert kafka.stored[-2:] == outgoing
    assert _refused(channel) == before, "nothing counted as left out"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("(MessageSizeTooLargeError); retrying" in w for w in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

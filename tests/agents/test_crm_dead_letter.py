"""The CRM agent's dead letter: one too large for Kafka goes without its payload; a stop ends its retries."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError, NotLeaderForPartitionError

from rules.commands import RecordCrmSync, UpsertOpportunity
from streams import stopping
from streams.agents import crm
from streams.app import app, runtime

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
LIMIT = 10_000


class DeadTopic:
    """``crm.outbox.dead`` as Kafka answers it: a record over ``LIMIT`` bytes refused for its size (on the
    future, as the broker answers), and with ``down`` every record refused (a leader moving, for ever)."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.stored: list[dict[str, Any]] = []
        self.attempts = 0

    async def send(self, *, key: Any = None, value: bytes = b"") -> asyncio.Future[None]:
        self.attempts += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.down:
            future.set_exception(NotLeaderForPartitionError())
        elif len(value) > LIMIT:
            future.set_exception(MessageSizeTooLargeError())
        else:
            self.stored.append(orjson.loads(value))
            future.set_result(None)
        return future


class _Exited(Exception):
    pass


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the lead hears (``RecordCrmSync``), instead of publishing it."""
    sent: list[Any] = []

    async def publish(outgoing: Any) -> None:
        sent.extend(m.value for m in outgoing)

    monkeypatch.setattr(crm, "publish", publish)
    return sent


def _opportunity(payload_chars: int) -> UpsertOpportunity:
    return UpsertOpportunity(opportunity_id="opp-1", lead_id="lead-1", created_at=NOW,
                             payload={"lead": {"message": "m" * payload_chars}, "timeline": []})


def _dead(kind: str) -> float:
    return runtime.metrics.registry.get_sample_value("leadflow_crm_dead_letters_total", {"reason": kind}) or 0.0


async def test_a_dead_letter_too_large_for_kafka_goes_without_its_payload(
        monkeypatch: pytest.MonkeyPatch, told: list[Any]) -> None:
    # Before: the same record was sent every second for ever and the CRM agent's partition stalled.
    topic = DeadTopic()
    monkeypatch.setattr(crm, "crm_dead", topic)
    before = _dead("refused")
    await asyncio.wait_for(crm._dead_letter(_opportunity(20_000), "hubspot", 1, "refused: 400", NOW,
                                            kind="refused"), 2.0)
    assert topic.attempts == 2
    [stored] = topic.stored
    assert stored["opportunity_id"] == "opp-1" and stored["lead_id"] == "lead-1" and stored["payload"] is None
    assert stored["payload_omitted"] > 20_000 and stored["reason"] == "refused: 400"
    assert _dead("refused") == before + 1
    assert [type(value) for value in told] == [RecordCrmSync] and told[0].synced is False


async def test_a_dead_letter_that_fits_keeps_its_payload(monkeypatch: pytest.MonkeyPatch, told: list[Any]) -> None:
    topic = DeadTopic()
    monkeypatch.setattr(crm, "crm_dead", topic)
    await crm._dead_letter(_opportunity(100), "hubspot", 3, "gave up", NOW, kind="gave_up")
    assert topic.stored[0]["payload"] == {"lead": {"message": "m" * 100}, "timeline": []}
    assert "payload_omitted" not in topic.stored[0]


@pytest.fixture
def stopping_app() -> Iterator[None]:
    yield
    app._stopped.clear()


async def test_a_stop_ends_the_retries_of_a_dead_letter_kafka_refuses(
        monkeypatch: pytest.MonkeyPatch, told: list[Any], stopping_app: None) -> None:
    # Before: the loop retried every second whatever the stop; only a second signal ended the worker.
    topic = DeadTopic(down=True)
    monkeypatch.setattr(crm, "crm_dead", topic)
    reasons: list[str] = []

    def exit_now(reason: str, status: int | None = None) -> NoReturn:
        reasons.append(reason)
        raise _Exited(reason)

    monkeypatch.setattr(stopping, "exit_now", exit_now)
    task = asyncio.ensure_future(crm._dead_letter(_opportunity(100), "hubspot", 1, "refused", NOW, kind="refused"))
    await asyncio.sleep(0.2)
    assert not task.done()  # Kafka may come back: the partition waits
    app._stopped.set()
    with pytest.raises(_Exited):
        await asyncio.wait_for(task, 2.0)
    assert len(reasons) == 1 and "not stored" in reasons[0]
    assert told == []  # the lead never hears of a dead letter that was not stored

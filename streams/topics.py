"""Every topic, declared once. Public names are a contract (DESIGN §2.2); the prefix is configurable."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, NoReturn

import faust
import orjson
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from aiokafka.partitioner import murmur2
from faust.serializers import codecs

from rules.commands import Outgoing
from streams import stopping
from streams.app import app, runtime
from streams.codec import CODEC, decode, encode

__all__ = [
    "Unreadable", "leads_inbound", "leads_rejected", "lead_commands", "team_commands", "rep_commands",
    "account_commands", "notifications", "webhooks_dead", "lead_events", "team_signals", "crm_outbox", "crm_dead", "outcomes", "outcome_snapshots", "CHANNELS", "send", "acknowledged", "publish", "declare_topics",
    "partition_of", "too_large", "unless_stopping", "sleep_unless_stopping", "give_up",
]

_settings = runtime.settings
log = logging.getLogger(__name__)
_ACK_TIMEOUT_S = 30.0
#: How often a waiting ``publish`` looks whether the worker is stopping.
_STOP_POLL_S = 0.25
#: Kafka's refusals of a record for its size: the producer's ``max_request_size`` (raised from ``send``,
#: wrapped by Faust in ``ProducerSendError``), or the broker's ``message.max.bytes`` / the topic's
#: ``max.message.bytes`` (on the send's future).
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)
#: Channels whose keys may be personal data (a domain can be a vanity e-mail domain): not logged.
_UNLOGGED_KEYS = frozenset({"account.commands"})


def too_large(exc: BaseException) -> bool:
    """Whether Kafka refused a record for its size (the error itself or one it wraps)."""
    seen: BaseException | None = exc
    for _ in range(4):  # Faust wraps aiokafka's error once; a loop of causes must not hang here
        if seen is None:
            return False
        if isinstance(seen, _TOO_LARGE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Unreadable:
    """What a reader sees for a key or value it cannot decode; agents count and skip it (``_batch.readable``)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unreadable({self.reason!r})"


class _ReaderCodec(codecs.Codec):
    """Our codec on the way out; on the way in, an undecodable value becomes ``Unreadable``.

    Faust handles a record it cannot decode by acking it (lost, no dead letter) and throwing the
    error into the stream, where an agent taking ``take_events`` batches stops for good, silently
    (found on ``leads.inbound`` by the poison test). Decoding never fails here, so the agent sees
    the bad record, counts it and moves on, and the record stays in the topic to be looked at.
    """

    def _dumps(self, obj: Any) -> bytes:
        return encode(obj)

    def _loads(self, s: bytes) -> Any:
        try:
            return decode(s)
        except ValueError as exc:
            return Unreadable(str(exc)[:200])


class _ReaderKeyCodec(codecs.Codec):
    """UTF-8 keys (the same bytes as Faust's ``raw`` for ``str``); a key that is not UTF-8 is ``Unreadable``."""

    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        try:
            return s.decode() if isinstance(s, bytes) else s
        except UnicodeDecodeError:
            return Unreadable("the key is not UTF-8")


_READER, _READER_KEY = "leadflow-reader", "leadflow-reader-key"
codecs.register(_READER, _ReaderCodec())
codecs.register(_READER_KEY, _ReaderKeyCodec())


def _topic(name: str, *, raw: bool = False, key_type: type = str) -> faust.TopicT:
    # internal=True: Faust creates the topic with our partition count instead of relying on
    # the broker's auto-create (1 partition), which would break co-partitioning.
    return app.topic(
        _settings.topic_prefix + name, key_type=key_type, value_serializer="raw" if raw else _READER,
        key_serializer=_READER_KEY if key_type is str else "raw",
        partitions=_settings.partitions, replicas=_settings.replication, internal=True,
    )


# Keys stay bytes: outside producers may write any key, and Faust answers a key it cannot
# decode as str by dropping the record and stalling the agent's batches (found by a poison test).
leads_inbound = _topic("leads.inbound", raw=True, key_type=bytes)
leads_rejected = _topic("leads.rejected", raw=True)
lead_commands = _topic("lead.commands")
team_commands = _topic("team.commands")
rep_commands = _topic("rep.commands")
#: Accounts by domain (PutAccount, RemoveAccount) and the lead-to-account match on the way in.
account_commands = _topic("account.commands")
notifications = _topic("notifications")
lead_events = _topic("lead.events", raw=True)
#: Webhooks that will never be delivered, with the reason (JSON; the secret is left out).
webhooks_dead = _topic("notifications.dead", raw=True)
#: Internal: SLA signals re-keyed by team for the windowed team counters.
team_signals = _topic("team.signals", raw=True)
#: Opportunities for the CRM agent (UpsertOpportunity) and its durable timers (DeferCommand), by lead_id.
crm_outbox = _topic("crm.outbox")
#: Opportunities the CRM never took after the retry schedule (JSON, with the reason).
crm_dead = _topic("crm.outbox.dead", raw=True)
#: Won/lost outcomes, all under one key: one owner folds them into the win-rate board.
outcomes = _topic("outcomes")
#: The whole won/lost board after each change, one key, compacted: every worker follows it into memory.
outcome_snapshots = app.topic(
    _settings.topic_prefix + "outcomes.board", key_type=str, value_serializer=CODEC, partitions=1,
    replicas=_settings.replication, internal=True, compacting=True,
)

CHANNELS: dict[str, faust.TopicT] = {
    "lead.commands": lead_commands,
    "team.commands": team_commands,
    "rep.commands": rep_commands,
    "account.commands": account_commands,
    "notifications": notifications,
    "lead.events": lead_events,
    "team.signals": team_signals,
    "crm.outbox": crm_outbox,
    "crm.outbox.dead": crm_dead,
    "outcomes": outcomes,
    "outcomes.board": outcome_snapshots,
    "notifications.dead": webhooks_dead,
}


async def send(outgoing: Outgoing) -> Any:
    """Send what a transition returned to the topic its channel names."""
    value = outgoing.value
    if outgoing.channel in ("lead.events", "team.signals", "notifications.dead"):
        value = orjson.dumps(value)
    return await CHANNELS[outgoing.channel].send(key=outgoing.key, value=value)


async def acknowledged(futures: Sequence[Any], timeout_s: float) -> None:
    """Return once Kafka acknowledged every send's future; else raise its error, or ``TimeoutError``.

    The futures are waited for, never cancelled. Faust reads each one's result in a done-callback
    (``Topic._on_published``) that catches ``Exception`` only: a future cancelled by a timeout (the
    former ``wait_for(gather(...))``) made it raise ``CancelledError`` inside the event loop, an ERROR
    "Exception in callback Topic._on_published … CancelledError" with a traceback for each publish
    that outlived the bound in a Kafka outage, and it left Faust's ``FutureMessage`` pending for
    ever. Nothing was lost (``publish`` sends again), so it was noise; a record not acknowledged in
    time stays in the producer's buffer and may still be stored besides the retry's copy, which every
    command's deterministic id makes harmless.
    """
    if not futures:
        return
    _, pending = await asyncio.wait(futures, timeout=timeout_s)
    if pending:
        raise TimeoutError(f"{len(pending)} of {len(futures)} message(s) not acknowledged in {timeout_s:.0f} s")
    for future in futures:
        if future.cancelled():
            raise TimeoutError("a send was cancelled before Kafka acknowledged it")
        error = future.exception()
        if error is not None:
            raise error


async def publish(outgoing: Sequence[Outgoing]) -> None:
    """Send a transition's messages and wait until Kafka has acknowledged every one.

    Agents call this *before* writing the new state to their table. A crash in between then
    replays the command against the old state, which re-sends the same (idempotent) messages;
    the other order could persist a state whose messages were lost, and a replay would see
    "already done" and never send them. While Kafka cannot take them, retry: a stalled
    partition is better than a lost assignment.

    A message the producer refuses for its size (over its ``max_request_size``, raised from ``send``:
    it never reaches a broker) is never stored, however often it is sent: retrying it stalled its
    agent's partition for good. It is left out (the others are stored as usual), logged as an ERROR
    by its channel, kind and key (ids; not the key of ``account.commands``, a domain) and counted in
    ``leadflow_messages_too_large_total{channel}``. The command that made it stays in its topic.
    Values are bounded where they are made; this is the last line.

    A size refusal from the broker (``message.max.bytes``, or the topic's ``max.message.bytes``) is
    retried like any other refusal, on every channel: it is an operator's setting that can be
    raised again, it may refuse a small message that shared a producer batch with a large one, and
    the caller writes its state as if every message went out (a ``RouteLead`` never received, an
    ``Assign`` never arriving, a ``ReportJoin`` pending for ever). The stall is visible: a WARNING
    per retry naming the error, and the consumer lag; it heals once the limit is raised. Event and
    notification channels are no exception: they go out in the same ``publish`` as the commands,
    and a lost webhook, CRM sync or timer (``crm.outbox``) is as permanent.

    Except once the worker is stopping: Faust's stop waits for this batch, so retrying for ever
    made a SIGTERM during a Kafka outage hang until SIGKILL. Then an attempt that Kafka has not
    acknowledged within ``stopping.STOPPING_GRACE_S`` (or a retry still to come) ends the
    process, with nothing of the batch acked or written: its commands are read again after a
    restart (``streams/stopping.py`` says why exiting, not raising).
    """
    if not outgoing:
        return
    delay = 0.5
    while True:
        attempt = asyncio.ensure_future(_send_acknowledged(outgoing))
        try:
            if await unless_stopping(attempt):
                for index, error in attempt.result():
                    _refused(outgoing[index], error)
                return
        except asyncio.CancelledError:  # the agent is cancelled (a rebalance): so are its sends, as before
            attempt.cancel()
            raise
        except Exception as exc:  # aiokafka's KafkaError family, or the timeout
            log.warning("sending %d message(s) failed (%s); retrying in %.1f s",
                        len(outgoing), type(exc).__name__, delay)
        else:
            attempt.cancel()  # tests only: in a worker the process ends on the next line
            give_up(len(outgoing), f"Kafka has not acknowledged them {stopping.STOPPING_GRACE_S:.0f} s into the stop")
        await sleep_unless_stopping(delay, len(outgoing))
        delay = min(delay * 2, 10.0)


async def _send_acknowledged(outgoing: Sequence[Outgoing]) -> list[tuple[int, BaseException]]:
    """Send every message and wait for Kafka's acks; returns the messages the producer refused for their
    size (by index, with the refusal). Any other refusal (the broker's for a size too), or no ack in
    time, raises as ``acknowledged``."""
    futures: list[Any] = []
    refused: list[tuple[int, BaseException]] = []
    for index, message in enumerate(outgoing):
        try:
            futures.append(await send(message))  # Faust's producer refuses a record over max_request_size here
        except Exception as exc:
            if not too_large(exc):
                raise
            refused.append((index, exc))
    await acknowledged(futures, _ACK_TIMEOUT_S)  # a broker's size refusal raises here: retried
    return refused


def _refused(message: Outgoing, error: BaseException) -> None:
    runtime.metrics.messages_too_large.labels(message.channel).inc()
    key = "(not logged)" if message.channel in _UNLOGGED_KEYS else message.key
    log.error("the producer refused a %s message for %s key %s for its size, and always will (%s: %s); it is left "
              "out so that the partition goes on", type(message.value).__name__, message.channel, key,
              type(error).__name__, str(error)[:200])


async def unless_stopping(attempt: asyncio.Future[Any]) -> bool:
    """True once ``attempt`` succeeded (its error raised); False when the worker has been stopping for
    ``STOPPING_GRACE_S`` and the attempt has not ended.

    Polled: a check every ``_STOP_POLL_S`` costs nothing next to Kafka's ack, and a publish that
    Kafka acknowledges returns the moment it does.
    """
    loop = asyncio.get_running_loop()
    give_up_at: float | None = None
    while True:
        done, _ = await asyncio.wait({attempt}, timeout=_STOP_POLL_S)
        if done:
            attempt.result()
            return True
        if app.should_stop:
            now = loop.time()
            if give_up_at is None:
                give_up_at = now + stopping.STOPPING_GRACE_S
            elif now >= give_up_at:
                return False


async def sleep_unless_stopping(delay: float, count: int) -> None:
    """Sleep ``delay`` before a retry of ``count`` message(s); once the worker is stopping, ``give_up``."""
    loop = asyncio.get_running_loop()
    until = loop.time() + delay
    while (left := until - loop.time()) > 0:
        if app.should_stop:
            give_up(count, "Kafka refused them and a retry would hold up the stop")
        await asyncio.sleep(min(left, _STOP_POLL_S))
    if app.should_stop:
        give_up(count, "Kafka refused them and a retry would hold up the stop")


def give_up(count: int, why: str) -> NoReturn:
    """End the process (``stopping.exit_now``): ``count`` message(s) of a stopping worker not stored."""
    stopping.exit_now(f"the worker is stopping and an agent's {count} message(s) are not stored: {why}")


@app.task
async def declare_topics() -> None:
    """Create every topic with our partition count at start-up, including those we only write.

    Faust creates the topics its agents consume; a topic only produced to (``lead.events``,
    ``leads.rejected``) would otherwise be auto-created by the broker with its default of one
    partition on the first send.
    """
    for topic in (*CHANNELS.values(), leads_inbound, leads_rejected):
        delay = 0.5
        while True:
            try:
                await topic.maybe_declare()
                break
            except Exception as exc:  # e.g. the broker restarting: an app task that raises crashes the worker
                log.warning("declaring topic %s failed (%s); retrying in %.1f s",
                            topic.get_topic_name(), type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def partition_of(key: str, partitions: int | None = None) -> int:
    """The partition the producer's default partitioner (murmur2 of the raw key) puts ``key`` in,
    over the deployment's partition count (the producer's metadata may not know a topic yet)."""
    count = runtime.settings.partitions if partitions is None else partitions
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % count

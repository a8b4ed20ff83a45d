"""Re-send dead-lettered CRM upserts from ``crm.outbox.dead`` to ``crm.outbox``: a dry run unless ``--send``.

An opportunity lands in ``crm.outbox.dead`` when the CRM refused it (``refused``: bad credentials,
a missing property, a validation error) or kept failing (``gave_up``: the retry schedule, or
``crm.rate_limit_max_wait`` of quota waits, ran out). Once the cause is fixed, this puts the same
upserts back on ``crm.outbox``; the CRM agent attempts them afresh, on the whole schedule, and the
lead hears the CRM's id (``opportunity.synced``) as for any upsert.

It is safe to run twice: every adapter upserts by leadflow's opportunity id, so a second send
updates the same record, never makes another. A re-sent upsert carries the content it had when
it was dead-lettered and its original ``created_at``, so while a newer upsert of the same
opportunity waits for a retry, the newer content wins (``rules/crm_retry.py``). It does set the
fields leadflow writes (name, stage, description) again on a record that exists in the CRM.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from rules.commands import UpsertOpportunity

__all__ = ["DeadLetter", "parse_dead_letter", "select", "upsert_for", "main"]

_EPILOG = """\
what it reads and writes:
  Kafka at LEADFLOW_BROKER, the topics <LEADFLOW_TOPIC_PREFIX>crm.outbox.dead (read from the start,
  outside any consumer group: nothing is consumed or committed) and <prefix>crm.outbox (written
  only with --send), as the worker names them.

examples:
  python -m ops.crm_resend                                 # list every dead letter, newest per opportunity
  python -m ops.crm_resend --kind gave_up --since 2026-03-02T00:00:00+00:00
  python -m ops.crm_resend --reason-contains PROPERTY_DOESNT_EXIST --send   # after creating the property
  python -m ops.crm_resend --opportunity-id op_0123456789abcdef01234567 --send

Fix the cause first (credentials, a missing CRM property, the quota): a re-sent upsert that
fails the same way is dead-lettered again. Without --send nothing is written.
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of ``crm.outbox.dead`` (JSON written by the CRM agent's ``_dead_letter``)."""

    opportunity_id: str
    lead_id: str
    crm: str
    attempts: int
    reason: str
    at: datetime
    payload: dict[str, Any]

    @property
    def kind(self) -> str:
        """``refused`` or ``gave_up``, as ``leadflow_crm_dead_letters_total`` counts it."""
        return "refused" if self.reason.startswith("refused") else "gave_up"


def parse_dead_letter(raw: bytes) -> DeadLetter | None:
    """The dead letter in ``raw``, or ``None`` for a record that is not one (skipped, counted)."""
    try:
        body = orjson.loads(raw)
        at = datetime.fromisoformat(str(body["at"]))
        letter = DeadLetter(opportunity_id=str(body["opportunity_id"]), lead_id=str(body["lead_id"]),
                            crm=str(body.get("crm") or ""), attempts=int(body.get("attempts") or 0),
                            reason=str(body.get("reason") or ""),
                            at=at if at.tzinfo is not None else at.replace(tzinfo=UTC),
                            payload=dict(body.get("payload") or {}))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return letter if letter.opportunity_id and letter.lead_id else None


def select(letters: Iterable[DeadLetter], *, opportunity_ids: Sequence[str] = (), lead_ids: Sequence[str] = (),
           kind: str | None = None, reason_contains: str | None = None,
           since: datetime | None = None) -> list[DeadLetter]:
    """The newest dead letter of each opportunity that passes every filter, oldest first."""
    newest: dict[str, DeadLetter] = {}
    for letter in letters:
        if letter.opportunity_id not in newest or letter.at >= newest[letter.opportunity_id].at:
            newest[letter.opportunity_id] = letter
    chosen = [
        d for d in newest.values()
        if (not opportunity_ids or d.opportunity_id in opportunity_ids) and (not lead_ids or d.lead_id in lead_ids)
        and (kind is None or d.kind == kind) and (since is None or d.at >= since)
        and (reason_contains is None or reason_contains.lower() in d.reason.lower())
    ]
    return sorted(chosen, key=lambda d: d.at)


def upsert_for(letter: DeadLetter) -> UpsertOpportunity:
    """The upsert to put back on ``crm.outbox``: attempt 0, its content and original ``created_at``."""
    created = letter.payload.get("created_at")
    try:
        created_at = datetime.fromisoformat(created) if isinstance(created, str) else letter.at
    except ValueError:
        created_at = letter.at
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return UpsertOpportunity(opportunity_id=letter.opportunity_id, lead_id=letter.lead_id, payload=letter.payload,
                             created_at=created_at)


async def _read_topic(servers: list[str], topic: str) -> tuple[list[DeadLetter], int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    letters, unreadable = [], 0
    try:
        if topic not in await asyncio.wait_for(consumer.topics(), 30):
            raise SystemExit(f"no topic {topic} on {','.join(servers)} (check LEADFLOW_BROKER and "
                             "LEADFLOW_TOPIC_PREFIX)")
        # Subscribed only so the client fetches the topic's metadata (as ops/report does); the
        # partitions are then assigned by hand and read from the start, with no group and no commit.
        consumer.subscribe([topic])
        numbers = await asyncio.wait_for(_partitions(consumer, topic), 30)
        consumer.unsubscribe()
        tps = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(*tps, timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    letter = parse_dead_letter(record.value or b"")
                    if letter is None:
                        unreadable += 1
                    else:
                        letters.append(letter)
    finally:
        await consumer.stop()
    return letters, unreadable


async def _partitions(consumer: Any, topic: str) -> set[int]:
    while not (found := consumer.partitions_for_topic(topic)):
        await asyncio.sleep(0.1)
    return set(found)


async def _send(servers: list[str], topic: str, letters: Sequence[DeadLetter]) -> None:
    from aiokafka import AIOKafkaProducer

    from streams.codec import encode

    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(topic, key=letter.lead_id.encode(), value=encode(upsert_for(letter)))
    finally:
        await producer.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.crm_resend", description=(
            "Re-send dead-lettered CRM upserts from crm.outbox.dead to crm.outbox (a dry run unless --send).\n\n"
            "Lists the newest dead letter of each opportunity that passes the filters (all of them by default);\n"
            "--send puts those upserts back on crm.outbox, where the CRM agent tries them afresh. Safe to run\n"
            "twice: upserts are keyed by leadflow's opportunity id, so a second send updates the same record."),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--send", action="store_true", help="really re-send them (without it: a dry run)")
    parser.add_argument("--opportunity-id", action="append", default=[], metavar="op_…",
                        help="only this opportunity (repeatable)")
    parser.add_argument("--lead-id", action="append", default=[], metavar="ld_…", help="only this lead (repeatable)")
    parser.add_argument("--kind", choices=("refused", "gave_up"),
                        help="refused: the CRM said no; gave_up: it kept failing")
    parser.add_argument("--reason-contains", metavar="TEXT", help="only reasons containing TEXT (case-blind)")
    parser.add_argument("--since", type=datetime.fromisoformat, metavar="ISO-TIME",
                        help="only dead letters from then on (e.g. 2026-03-02T00:00:00+00:00)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from streams.settings import Settings

    settings = Settings.from_env()
    servers = settings.bootstrap_servers
    dead_topic, outbox = settings.topic_prefix + "crm.outbox.dead", settings.topic_prefix + "crm.outbox"
    since = args.since.replace(tzinfo=UTC) if args.since and args.since.tzinfo is None else args.since
    letters, unreadable = asyncio.run(_read_topic(servers, dead_topic))
    chosen = select(letters, opportunity_ids=args.opportunity_id, lead_ids=args.lead_id, kind=args.kind,
                    reason_contains=args.reason_contains, since=since)
    for d in chosen:
        print(f"{d.at.isoformat()}  {d.opportunity_id}  {d.lead_id}  {d.crm}  {d.kind}  attempts={d.attempts}  "
              f"{d.reason}")
    skipped = f"; {unreadable} unreadable record(s) skipped" if unreadable else ""
    print(f"{len(chosen)} of {len(letters)} dead letter(s) in {dead_topic} selected{skipped}", file=sys.stderr)
    if not args.send:
        print("dry run: nothing sent (add --send to put them back on crm.outbox)", file=sys.stderr)
        return 0
    asyncio.run(_send(servers, outbox, chosen))
    print(f"sent {len(chosen)} upsert(s) to {outbox}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

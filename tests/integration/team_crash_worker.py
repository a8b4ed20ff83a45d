"""``leadflow worker`` that dies right after the first table write of one team batch reached Kafka.

A ``kill -9`` from outside lands between a batch's table writes only by chance (the restart
test's rare failure, docs/RELIABILITY.md). Run as ``python -m tests.integration.team_crash_worker N``:
when the team agent makes the first team-table write of the batch that routes the N-th lead it
sees, that changelog record is sent to Kafka and acknowledged synchronously, and the process
kills itself with SIGKILL before anything else happens: no other write of the batch reaches the
table or Kafka, and no offset is committed. The write goes through its own producer, on a thread
with its own event loop; the test sends the lead when the team is quiet, so no earlier write of
the same partition can be behind it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any

from aiokafka import AIOKafkaProducer
from faust.streams import current_event

log = logging.getLogger(__name__)

TEAM_TABLES = ("team_state", "team_queue")  # team_queue: the table of the code before one team table


def _send_and_wait(bootstrap: str, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
        finally:
            await producer.stop()

    thread = threading.Thread(target=asyncio.run, args=(send(),))
    thread.start()
    thread.join()


def crash_at_route(n: int) -> None:
    from rules.commands import RouteLead
    from streams.codec import encode
    from streams.tables._table import CodecTable

    original = CodecTable.send_changelog
    routed: list[str] = []

    def send_changelog(self: Any, partition: int | None, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        event = current_event()
        command = event.value if event is not None else None
        if self.name in TEAM_TABLES and isinstance(command, RouteLead):
            if command.lead_id not in routed:
                routed.append(command.lead_id)
                if len(routed) == n:
                    topic = self.changelog_topic.get_topic_name()
                    raw = value if value is None or isinstance(value, bytes) else encode(value)
                    broker = self.app.conf.broker[0]
                    _send_and_wait(f"{broker.host}:{broker.port}", topic, int(partition or 0),
                                   str(key).encode(), raw)
                    log.warning("team_crash_worker: %s %s written to %s; killing myself", type(value).__name__,
                                key, topic)
                    for handler in logging.getLogger().handlers:
                        handler.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
        return original(self, partition, key, value, *args, **kwargs)

    CodecTable.send_changelog = send_changelog  # type: ignore[method-assign]


if __name__ == "__main__":
    crash_at_route(int(sys.argv[1]))
    from leadflow.cli import main

    sys.argv = ["leadflow", "worker"]
    raise SystemExit(main())

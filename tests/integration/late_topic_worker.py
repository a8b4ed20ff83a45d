"""``leadflow worker`` with one topic created late: the race of a fresh deployment, made certain.

Faust declares the app's topics just before the worker joins its group, and a topic created a
moment earlier can be missing from the metadata the group joins with. Run as
``python -m tests.integration.late_topic_worker SUFFIX``: the topic whose name ends with SUFFIX
is created 1.5 s after Faust asks for it, so the first assignment never has it and a rebalance
adds it once a metadata refresh finds it (``consumer_metadata_max_age_ms``, streams/app.py).
Records written to it in between (the config's reps, for ``.rep.commands``) must still be read.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import faust.transport.drivers.aiokafka as faust_aiokafka

log = logging.getLogger(__name__)

DELAY_S = 1.5


def delay_creation(suffix: str) -> None:
    create = faust_aiokafka.Transport._create_topic
    delayed: set[str] = set()

    async def create_late(self: Any, owner: Any, client: Any, topic: str, *args: Any, **kwargs: Any) -> None:
        if not topic.endswith(suffix):
            await create(self, owner, client, topic, *args, **kwargs)
        elif topic not in delayed:
            delayed.add(topic)

            async def later() -> None:
                await asyncio.sleep(DELAY_S)
                log.warning("late_topic_worker: creating %s now", topic)
                await create(self, owner, client, topic, *args, **kwargs)

            asyncio.ensure_future(later())

    faust_aiokafka.Transport._create_topic = create_late  # type: ignore[method-assign]


if __name__ == "__main__":
    delay_creation(sys.argv[1])
    from leadflow.cli import main

    sys.argv = ["leadflow", "worker"]
    raise SystemExit(main())

"""Own the rep directory (rep → team) and turn rep commands into team commands; seed reps from config."""
from __future__ import annotations

import logging
from typing import Any

from rules.commands import PutRep
from rules.reps import apply
from streams.agents._batch import is_readable
from streams.app import app, runtime
from streams.tables.rep_directory import rep_directory
from streams.topics import publish, rep_commands

__all__ = ["run_reps", "seed_reps_from_config"]

log = logging.getLogger(__name__)


@app.agent(rep_commands, concurrency=1)
async def run_reps(commands: Any) -> None:
    async for event in commands.events():
        if not is_readable(event, "rep"):
            continue
        rep_id, command = event.key, event.value
        name = type(command).__name__
        current = rep_directory.get(rep_id)
        try:
            transition = apply(current, command, runtime.clock.now())
        except Exception:
            runtime.metrics.command_failures.labels("rep").inc()
            log.exception("rep agent could not apply %s to rep %s", name, rep_id)
            continue
        await publish(transition.outgoing)
        if transition.entry is not None and transition.entry is not current:
            rep_directory[rep_id] = transition.entry
        elif transition.entry is None and current is None:
            log.warning("%s for unknown rep %s ignored", name, rep_id)
        runtime.metrics.commands_processed.labels("rep", name).inc()


@app.task
async def seed_reps_from_config() -> None:
    """The YAML's reps are sent at every worker start; the directory applies a rep only when its
    YAML entry changed since it was last applied, so changes made through the API survive restarts."""
    profiles = runtime.config.rep_profiles()
    now = runtime.clock.now()
    for profile in profiles:
        await rep_commands.send(key=profile.rep_id, value=PutRep(rep_id=profile.rep_id, profile=profile, at=now,
                                                                          from_config=True))
    if profiles:
        log.info("seeded %d rep(s) from the config", len(profiles))

"""Own the rep directory (rep → team) and turn rep commands into team commands; seed reps from config."""
from __future__ import annotations

import logging
from typing import Any


from rules.commands import ApplyRoster, PutRep
from rules.reps import RepEntry, apply, latest_profile, profile_changes
from streams.agents._batch import is_readable
from streams.app import app, config_digest, runtime
from streams.tables.rep_directory import rep_directory
from streams.topics import partition_of, publish, rep_commands

__all__ = ["ROSTER_KEY", "run_reps", "seed_reps_from_config"]

log = logging.getLogger(__name__)

#: The key of the ``ApplyRoster`` records (sent to an explicit partition each): no rep id has a '~'.
ROSTER_KEY = "~roster"


@app.agent(rep_commands, concurrency=1)
async def run_reps(commands: Any) -> None:
    async for event in commands.events():
        if not is_readable(event, "rep"):
            continue
        if isinstance(event.value, ApplyRoster):
            await _apply_roster(event.value, event.message.partition)
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
            _count_retirement(current, transition.entry)
            if isinstance(command, PutRep) and command.from_config:
                _tell_seeded_changes(current, transition.entry)
        elif transition.entry is None and current is None:
            log.warning("%s for unknown rep %s ignored", name, rep_id)
        runtime.metrics.commands_processed.labels("rep", name).inc()


async def _apply_roster(roster: ApplyRoster, partition: int) -> None:
    """Retire this partition's reps the YAML seeded and no longer names.

    Only the keys of the roster's own partition: a table write goes to the changelog partition of
    the event being handled, and the other partitions get their own copy of the roster. The table
    may hold other partitions' keys (standbys, other active partitions of this worker).
    """
    partitions = runtime.settings.partitions
    mine = [(rep_id, entry) for rep_id, entry in list(rep_directory.items())
            if isinstance(entry, RepEntry) and partition_of(rep_id, partitions) == partition]
    retired: list[str] = []
    now = runtime.clock.now()
    for rep_id, entry in mine:
        try:
            transition = apply(entry, roster, now)
        except Exception:
            runtime.metrics.command_failures.labels("rep").inc()
            log.exception("rep agent could not apply the config roster to rep %s", rep_id)
            continue
        if transition.entry is entry:
            continue
        await publish(transition.outgoing)
        if transition.entry is not None:
            rep_directory[rep_id] = transition.entry
            if _count_retirement(entry, transition.entry):
                retired.append(rep_id)
    if retired:
        # Rep ids are not personal data; the names and addresses of the profile stay out.
        log.info("config %s: retired %d rep(s) the config no longer names (rep.commands partition %d): %s",
                 roster.config_digest, len(retired), partition, ", ".join(sorted(retired)))
    runtime.metrics.commands_processed.labels("rep", "ApplyRoster").inc()


def _tell_seeded_changes(before: RepEntry | None, after: RepEntry) -> None:
    """Log what a worker's config file changed in a rep the directory already held.

    A worker started with another file (a canary, a stale ConfigMap) changes the rep for the whole
    deployment, and the change stays after that worker stops: the deploy audit's canary with one
    rep's capacity at 3 gave every worker 3, and the log only said "seeded 6 rep(s) from the
    config". Rep ids and the changed fields' values (numbers, codes) only; personal data and
    secrets are named, never shown (``rules.reps.profile_changes``).

    A change waits for the team's answer (a move, the new team's; a change in the rep's team, that
    team's): the entry keeps the rep as they are and the new profile waits in ``joining`` (a move) or
    ``asked``, which is what the file asked for. It is told against what was asked last (``latest_profile``).
    """
    joining = after.moving or after.question_here
    wanted = joining.profile if joining is not None else after.profile
    asked = latest_profile(before)
    if asked is None or wanted is None:
        return
    changes = profile_changes(asked, wanted)
    if not changes:
        return
    told = "; ".join(changes)
    if joining is not None and joining is after.moving:
        told += f" (a move: in team {after.team_id} until team {joining.team_id} takes them in)"
    log.warning("rep %s changed by a worker's config file, for every worker of the deployment: %s",
                after.rep_id, told)


def _count_retirement(before: RepEntry | None, after: RepEntry) -> bool:
    """Count a rep retired by this transition (``leadflow_reps_retired_total``); whether it was one.

    Only the change from active to retired counts: a roster or a ``RetireRep`` read again (a worker
    restarted with the same YAML, a command re-read after a crash) finds the rep retired already,
    and a DELETE of a rep the roster retired moves them from ``config`` to ``api``, not out again.
    A rep no team held (a new rep still waiting for the team's answer, or refused) is retired but
    not counted: no team lost them (``RepEntry.member``).
    """
    if after.retired is None or (before is not None and before.retired is not None):
        return False
    if before is not None and before.member:
        runtime.metrics.reps_retired.labels(after.team_id, after.retired).inc()
    return True


@app.task
async def seed_reps_from_config() -> None:
    """The YAML's reps are sent at every worker start; the directory applies a rep only when its
    YAML entry changed since it was last applied, so changes made through the API survive restarts.

    Then the file's roster goes to every partition of ``rep.commands`` (after the reps, so each
    partition sees a rep's ``PutRep`` before the roster): each partition's directory retires the
    reps the YAML seeded that it no longer names. A worker without a file, or whose file defines
    no teams, sends no roster: it knows nothing of the reps and must retire nobody.
    """
    config = runtime.config
    profiles = config.rep_profiles()
    now = runtime.clock.now()
    for team in config.teams:  # at 0 from the start: rate() and increase() miss a series' first value
        for by in ("config", "api"):
            runtime.metrics.reps_retired.labels(team.id, by)
    for profile in profiles:
        await rep_commands.send(key=profile.rep_id, value=PutRep(rep_id=profile.rep_id, profile=profile, at=now,
                                                                          from_config=True))
    if profiles:
        log.info("seeded %d rep(s) from the config", len(profiles))
    if runtime.settings.config_path is None or not config.teams:
        return
    roster = ApplyRoster(rep_ids=tuple(sorted(p.rep_id for p in profiles)), config_digest=config_digest(config), at=now)
    for partition in range(runtime.settings.partitions):
        await rep_commands.send(key=ROSTER_KEY, value=roster, partition=partition)
    log.info("config %s: its roster of %d rep(s) sent to the rep directory; reps it seeded and no longer names "
             "are retired (each partition logs how many)", roster.config_digest, len(profiles))

"""Before Faust starts: the deployment's topics must have the partition counts this worker expects.

A deployment's entity topics and table changelogs are co-partitioned: a lead's commands, its state
and its SLA timer sit on the same partition number of each. Faust creates a missing topic with
the worker's ``LEADFLOW_PARTITIONS`` and never checks the ones that exist. A worker started with
another count than its deployment's (a changed default, a typo, a new table after an upgrade)
therefore ran "ready" while the topics it created disagreed with the others. Seen here: a worker
with ``LEADFLOW_PARTITIONS=4`` on an 8-partition deployment made a 4-partition
``sla_timers`` changelog beside an 8-partition ``lead.commands``, and its lead agent would then
write a timer to a partition that does not exist.

:func:`preflight` reads the cluster's topics once (a metadata request for *all* topics: naming
them would make a broker with auto-creation on create them) and refuses to start, naming every
topic that differs, before Faust creates anything. It also refuses a ``LEADFLOW_REPLICATION``
above the live brokers when topics are still to be created: Faust crashed on that with a
traceback about ``__assignor-__leader``.

A broker that does not answer is waited for, with a line every attempt naming ``LEADFLOW_BROKER``
and the time left, for ``BROKER_WAIT_S`` (Kafka starting beside the worker, a broker restarting);
then the worker stops with one line naming the setting (exit 2). It used to log "partition check
skipped: no metadata in 10 s" at once and leave the broker to Faust, which did not wait either:
the worker died two seconds later in a 30-line traceback through mode and aiokafka. A host name
that does not exist (``LEADFLOW_BROKER=garbage``: the resolver answers "no such name") is not
waited for: it will not start answering, so the worker stops at the first failed attempt, naming
the host. A resolver that fails for now (``EAI_AGAIN``), or a name that resolves but does not
answer, is waited for as above.

It then brings the changelogs of tables that set topic configs (``team_state``'s small
segments) up to those configs. Faust applies them only when it creates a topic, so a changelog
created by an older version kept Kafka's 1 GiB / 7 day segments, never compacted, and was read
whole at every start.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from leadflow.errors import ConfigError

__all__ = ["Cluster", "Mismatch", "expected_partitions", "mismatches", "describe", "read_cluster", "too_few_brokers",
           "wanted_configs", "topic_overrides", "config_changes", "align_configs", "preflight", "wait_for_cluster"]

log = logging.getLogger(__name__)

#: How long one attempt waits for the broker's metadata.
PREFLIGHT_TIMEOUT_S = 10.0
#: How long a starting worker waits for an unreachable broker before it stops.
BROKER_WAIT_S = 60.0
#: Pause between two attempts.
_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class Mismatch:
    topic: str
    expected: int
    actual: int


def expected_partitions(topics: Iterable[Any], tables: Iterable[Any], default: int) -> dict[str, int]:
    """Topic name → partitions, for Faust topics and tables (``partitions`` None: the app's default)."""
    expected = {topic.get_topic_name(): topic.partitions or default for topic in topics}
    for table in tables:
        expected[table.changelog_topic.get_topic_name()] = table.partitions or default
    return expected


def mismatches(expected: Mapping[str, int], actual: Mapping[str, int]) -> list[Mismatch]:
    """The topics that exist with another partition count than expected (missing ones are fine:
    Faust creates them), by name."""
    return [Mismatch(name, count, actual[name]) for name, count in sorted(expected.items())
            if name in actual and actual[name] != count]


def describe(found: list[Mismatch], partitions: int, expected: Mapping[str, int], actual: Mapping[str, int]) -> str:
    """The error a worker stops with: every topic that differs, and what to do about it."""
    lines = [f"the deployment's topics do not have the partition counts this worker expects "
             f"(LEADFLOW_PARTITIONS={partitions}):"]
    lines += [f"  {m.topic}: {m.actual} partition(s), expected {m.expected}" for m in found]
    # The topics that follow LEADFLOW_PARTITIONS: do the existing ones agree on another count?
    counts = Counter(actual[name] for name, count in expected.items() if count == partitions and name in actual)
    if len(counts) == 1:
        lines.append(f"A deployment's partition count cannot change in place: set LEADFLOW_PARTITIONS="
                     f"{next(iter(counts))} to match its topics, or start a new deployment with its own "
                     "LEADFLOW_APP_ID and LEADFLOW_TOPIC_PREFIX (docs/SCALING.md).")
    else:
        spread = ", ".join(f"{n} with {c}" for c, n in sorted(counts.items(), key=lambda item: -item[1]))
        lines.append(f"The deployment's topics disagree among themselves ({spread} partitions): a topic was "
                     "created with another count than the rest, and co-partitioning is broken. Keep the "
                     "count most of them have and see docs/SCALING.md, \"Partition counts\".")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Cluster:
    """What the check reads of the cluster: every topic's partition count, and the live brokers."""

    partitions: dict[str, int]
    brokers: int
    #: The own configs (``topic_overrides``) of the existing topics asked for by ``read_cluster``.
    configs: dict[str, dict[str, str]] = field(default_factory=dict)


async def read_cluster(bootstrap: list[str], config_topics: Iterable[str] = ()) -> Cluster:
    """One metadata request for all topics (naming them could create them), the brokers, and the
    own configs of those of ``config_topics`` that exist: one admin session for the whole check."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="leadflow-preflight")
    await admin.start()
    try:
        topics = await admin.describe_topics()
        brokers = len((await admin.describe_cluster())["brokers"])
        partitions = {t["topic"]: len(t["partitions"]) for t in topics if not t["error_code"]}
        configs: dict[str, dict[str, str]] = {}
        names = sorted(set(config_topics) & set(partitions))
        try:
            if names:
                for resource in _answers(await admin.describe_configs(
                        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])):
                    configs[resource["resource_name"]] = topic_overrides(resource["config_entries"])
        except Exception:  # not allowed to describe them, say: the partition check still counts
            log.debug("changelog configs not described", exc_info=True)
    finally:
        await admin.close()
    return Cluster(partitions, brokers, configs)


def _answers(responses: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """The per-topic answers of admin responses; the first error raised as a ``RuntimeError``."""
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                raise RuntimeError(f"{resource['resource_name']}: {resource['error_message']}")
            yield resource


def too_few_brokers(expected: Mapping[str, int], cluster: Cluster, replication: int) -> str | None:
    """Why the topics still missing cannot be created with ``replication`` copies, if they cannot."""
    missing = sorted(name for name in expected if name not in cluster.partitions)
    if not missing or replication <= cluster.brokers:
        return None
    return (f"LEADFLOW_REPLICATION={replication}, but the cluster has {cluster.brokers} broker(s) up: the "
            f"{len(missing)} topic(s) this deployment still needs ({missing[0]}, …) cannot be created with "
            f"{replication} copies of each partition. Set LEADFLOW_REPLICATION to at most {cluster.brokers}, "
            "or start the other brokers first.")


def wanted_configs(tables: Iterable[Any]) -> dict[str, dict[str, str]]:
    """Changelog topic → the configs its table creates it with (tables that set none are left out)."""
    return {table.changelog_topic.get_topic_name(): {k: str(v) for k, v in table.extra_topic_configs.items()}
            for table in tables if table.extra_topic_configs}


def topic_overrides(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """A topic's own configs (not the broker's defaults), from a DescribeConfigs answer of any version."""
    # Version 0 says ``is_default``; later ones name the source, 1 being DYNAMIC_TOPIC_CONFIG.
    return {e["config_names"]: e["config_value"] for e in entries
            if (e["config_source"] == 1 if "config_source" in e else not e["is_default"])}


def config_changes(wanted: Mapping[str, Mapping[str, str]],
                   current: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Topic → every config it should have, for the existing topics that lack one of ``wanted``.

    The whole set, because AlterConfigs (the version aiokafka speaks) replaces a topic's configs:
    one left out, ``cleanup.policy=compact`` say, would go back to the broker's default.
    """
    return {topic: {**current[topic], **configs} for topic, configs in wanted.items()
            if topic in current and any(current[topic].get(k) != v for k, v in configs.items())}


async def align_configs(bootstrap: list[str], changes: Mapping[str, Mapping[str, str]]) -> None:
    """Set ``changes`` (topic → every config it should have, from ``config_changes``)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="leadflow-preflight")
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, t, configs=dict(c)) for t, c in changes.items()]
        for _ in _answers(await admin.alter_configs(resources)):
            pass
    finally:
        await admin.close()


def _why(exc: BaseException) -> str:
    """An attempt's failure in a few words (aiokafka's messages can run long; the type says enough)."""
    if isinstance(exc, TimeoutError):
        return "no answer"
    text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


#: The resolver's answers that mean "this name does not exist", not "cannot tell now" (``EAI_AGAIN``).
_NO_SUCH_NAME = frozenset(code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
                          if code is not None)


def _host(server: str) -> str:
    """The host of a bootstrap server: ``h1:9092`` → ``h1``, ``[::1]:9092`` → ``::1``, ``h1`` → ``h1``."""
    if server.startswith("["):
        return server[1:].partition("]")[0]
    return server.rpartition(":")[0] if server.count(":") == 1 else server


def _no_such_name(host: str) -> str | None:
    """The resolver's reason when ``host`` is a name that does not exist; ``None`` when it resolves,
    or when the resolver cannot tell now (that is waited for, like a broker that does not answer)."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return (exc.strerror or str(exc)) if exc.errno in _NO_SUCH_NAME else None
    except (UnicodeError, ValueError) as exc:  # a label over 63 characters, say: not a name either
        return str(exc) or type(exc).__name__
    return None


def _unresolvable(bootstrap: list[str]) -> dict[str, str]:
    """Host → the resolver's reason, for each bootstrap host that names nothing."""
    reasons = {}
    for host in dict.fromkeys(_host(server) for server in bootstrap):
        reason = _no_such_name(host)
        if reason is not None:
            reasons[host] = reason
    return reasons


def wait_for_cluster(bootstrap: list[str], config_topics: Iterable[str] = (), *, timeout: float = PREFLIGHT_TIMEOUT_S,
                     wait: float = BROKER_WAIT_S, sleep: Any = time.sleep) -> Cluster:
    """``read_cluster``, tried until it answers or ``wait`` seconds have passed; then ``ConfigError``
    naming ``LEADFLOW_BROKER``. Each failed attempt is one warning with the time left. When no
    bootstrap host resolves (each is a name that does not exist), the first failed attempt raises
    ``ConfigError`` naming them: waiting would not make them exist."""
    where = ",".join(bootstrap)
    started = time.monotonic()
    quiet = logging.getLogger("aiokafka")  # its ERROR per failed connection says what our line says
    while True:
        # On a loop of its own in a thread: the main thread's event loop is left as Faust expects it.
        level, quiet.level = quiet.level, logging.CRITICAL
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preflight") as pool:
                future = pool.submit(asyncio.run, asyncio.wait_for(read_cluster(bootstrap, config_topics), timeout))
        finally:
            quiet.level = level
        try:
            return future.result()
        except Exception as exc:
            waited = time.monotonic() - started
            unresolvable = _unresolvable(bootstrap)
            if unresolvable and len(unresolvable) == len({_host(server) for server in bootstrap}):
                names = "; ".join(f"{host!r}: {reason}" for host, reason in unresolvable.items())
                raise ConfigError(f"Kafka at {where} (LEADFLOW_BROKER): no such host ({names}): "
                                  "set LEADFLOW_BROKER to a reachable broker") from None
            if waited + _RETRY_S > wait:
                raise ConfigError(f"Kafka at {where} (LEADFLOW_BROKER) did not answer in {waited:.0f} s "
                                  f"({_why(exc)}): start it (`leadflow stack up` starts the local one, on LEADFLOW_KAFKA_PORT, "
                                  "which a worker without LEADFLOW_BROKER follows), or set LEADFLOW_BROKER to a "
                                  "reachable broker") from None
            # Some hosts do not exist but others may answer: say which, and wait for the others.
            missing = f" (no such host: {', '.join(sorted(unresolvable))})" if unresolvable else ""
            log.warning("waiting for Kafka at %s (LEADFLOW_BROKER): %s%s; trying again for %.0f s more",
                        where, _why(exc), missing, wait - waited)
        sleep(_RETRY_S)


def preflight(expected: Mapping[str, int], bootstrap: list[str], partitions: int, replication: int = 1,
              timeout: float = PREFLIGHT_TIMEOUT_S, configs: Mapping[str, Mapping[str, str]] | None = None,
              wait: float = BROKER_WAIT_S) -> None:
    """Raise :class:`ConfigError` when the broker does not answer within ``wait`` seconds, when an
    existing topic has another partition count than expected, or when the topics still missing
    cannot be created with ``replication`` copies; then give the existing topics of ``configs``
    those configs (a warning, not a stop, when that fails)."""
    cluster = wait_for_cluster(bootstrap, configs or (), timeout=timeout, wait=wait)
    found = mismatches(expected, cluster.partitions)
    if found:
        raise ConfigError(describe(found, partitions, expected, cluster.partitions))
    problem = too_few_brokers(expected, cluster, replication)
    if problem:
        raise ConfigError(problem)
    if configs:
        _align(bootstrap, configs, cluster, timeout)


def _align(bootstrap: list[str], configs: Mapping[str, Mapping[str, str]], cluster: Cluster, timeout: float) -> None:
    changes = config_changes(configs, cluster.configs)
    existing = sorted(set(configs) & set(cluster.partitions))
    if not changes and len(cluster.configs) == len(existing):
        return  # every existing changelog has its configs (the usual start): nothing to alter
    try:
        if len(cluster.configs) != len(existing):
            raise RuntimeError("the cluster did not describe every changelog's configs")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preflight") as pool:
            pool.submit(asyncio.run, asyncio.wait_for(align_configs(bootstrap, changes), timeout)).result()
    except Exception as exc:  # no right to alter configs, say: the worker runs, only its restarts are slower
        commands = "; ".join(
            f"kafka-configs.sh --bootstrap-server {bootstrap[0]} --alter --entity-type topics --entity-name {topic} "
            f"--add-config {','.join(f'{k}={v}' for k, v in sorted(configs[topic].items()))}"
            for topic in existing)
        log.warning("could not check or set the topic configs of existing changelogs (%s: %s); restarts stay "
                    "slower until they are set: %s", type(exc).__name__, exc, commands)
        return
    for topic, wanted in sorted(configs.items()):
        for key, value in sorted(wanted.items()):
            if topic in changes and cluster.configs[topic].get(key) != value:
                before = cluster.configs[topic].get(key, "broker default")
                log.warning("topic config updated: %s: %s %s -> %s", topic, key, before, value)  # shows before Faust's logging

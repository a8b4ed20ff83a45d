"""Frozen, documented settings: the only reader of ``os.environ``."""
from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from connectors.api.client_address import TrustedProxies
from connectors.auth import SCOPES, Scope, key_problem, parse_scopes
from leadflow.errors import ConfigError
from rules.delivery import STANDARD_SCHEDULE, parse_schedule

__all__ = ["ApiKeySecret", "Secret", "Settings"]

_T = TypeVar("_T")


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


class ApiKeySecret(Secret):
    """A key from ``LEADFLOW_API_KEYS`` and its scopes (``None``: none given, so all of them)."""

    __slots__ = ("scopes",)

    def __init__(self, value: str, scopes: frozenset[Scope] | None = None) -> None:
        super().__init__(value)
        self.scopes = scopes


def _api_keys(env: Mapping[str, str]) -> tuple[ApiKeySecret, ...]:
    """``LEADFLOW_API_KEYS``: ``<key>[:<scope>+<scope>…]``, comma-separated. Errors name the item, never a key."""
    items = [item.strip() for item in env.get("LEADFLOW_API_KEYS", "").split(",")]
    keys, problems = [], []
    for n, item in enumerate((i for i in items if i), start=1):
        key, scopes = item, None
        if ":" in item:
            key, _, names = item.rpartition(":")
            scopes, unknown = parse_scopes(names.split("+"))
            if unknown or not key:
                problems.append(f"key {n}: after its last ':' expected scopes joined by '+' ({', '.join(SCOPES)}), "
                                "e.g. <key>:capture or <key>:read+work (a key itself cannot end in ':<word>')")
                continue
        problem = key_problem(key)
        if problem is not None:
            problems.append(f"key {n} {problem}")
            continue
        keys.append(ApiKeySecret(key, scopes))
    if problems:
        raise ConfigError("\n  ".join(f"environment variable LEADFLOW_API_KEYS: {p}" for p in problems))
    return tuple(keys)


#: A lead id key this short could be guessed from ids and known e-mails.
MIN_LEAD_ID_KEY_LENGTH = 32


def _lead_id_key(env: Mapping[str, str]) -> str | None:
    """``LEADFLOW_LEAD_ID_KEY``: the secret lead ids are an HMAC with; unset, plain SHA-256. Never quoted."""
    raw = env.get("LEADFLOW_LEAD_ID_KEY")
    if not raw:
        return None
    if len(raw) < MIN_LEAD_ID_KEY_LENGTH or not raw.isascii() or not raw.isprintable():
        raise ConfigError(f"environment variable LEADFLOW_LEAD_ID_KEY: expected at least {MIN_LEAD_ID_KEY_LENGTH} "
                          "printable ASCII characters (e.g. the output of `openssl rand -hex 32`)")
    return raw


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"environment variable {name}={raw!r}: expected true or false")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        if "://" in raw and name.endswith("_PORT"):
            # Kubernetes sets <SERVICE>_PORT=tcp://<ip>:<port> in every pod for each Service in the
            # namespace: a Service named leadflow-web sets LEADFLOW_WEB_PORT (review s18-d).
            service = name.removesuffix("_PORT").lower().replace("_", "-")
            raise ConfigError(f"environment variable {name}={raw!r} looks like a Kubernetes service variable (a "
                              f"Service named {service} gives every pod {name}=tcp://<ip>:<port>): set {name} "
                              f"to a number explicitly, or name that Service otherwise") from None
        raise ConfigError(f"environment variable {name}={raw!r}: expected an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        within = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"environment variable {name}={raw!r}: must be {within}")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A strictly positive, finite number of seconds (``10``, ``2.5``): a timeout."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise ConfigError(f"environment variable {name}={raw!r}: expected a positive number of seconds such as 10 "
                          "or 2.5")
    return value


def _schedule(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return parse_schedule(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={raw!r}: {exc}") from None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        (value,) = parse_schedule(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}: expected one delay such as 30s or 0.5") from None
    return value


#: Longest LEADFLOW_SHUTDOWN_DELAY: past it the delay is a typo, and Kubernetes' default grace
#: period (30 s) would SIGKILL the worker before it stopped cleanly.
MAX_SHUTDOWN_DELAY_S = 120.0


def _shutdown_delay(env: Mapping[str, str], default: float) -> float:
    raw = env.get("LEADFLOW_SHUTDOWN_DELAY")
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip().removesuffix("s"))
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_SHUTDOWN_DELAY_S:
        raise ConfigError(f"environment variable LEADFLOW_SHUTDOWN_DELAY={raw!r}: expected seconds from 0 to "
                          f"{MAX_SHUTDOWN_DELAY_S:.0f}, such as 5 or 2.5 (0: stop at once on SIGTERM)")
    return value


_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "warning": "warn", "error": "error",
               "crit": "crit", "critical": "crit"}


def _log_level(raw: str) -> str:
    level = _LOG_LEVELS.get(raw.strip().lower())
    if level is None:
        raise ConfigError(f"environment variable LEADFLOW_LOG_LEVEL={raw!r}: expected one of "
                          "debug, info, warning, error, critical")
    return level


#: What Kafka accepts as a ``group.instance.id`` (its topic-name rule: ``Topic.validate``).
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _instance_id(env: Mapping[str, str], web_host: str, web_port: int) -> str | None:
    """``LEADFLOW_INSTANCE_ID``: unset, empty or ``auto`` derives ``<host>-<web host>-<web port>``; ``none`` turns it off."""
    if env.get("CONSUMER_GROUP_INSTANCE_ID") is not None:
        # Faust reads this variable itself and it would silently override the setting below.
        raise ConfigError("environment variable CONSUMER_GROUP_INSTANCE_ID is set: use LEADFLOW_INSTANCE_ID "
                          "(or LEADFLOW_INSTANCE_ID=none for dynamic membership) and unset it")
    raw = env.get("LEADFLOW_INSTANCE_ID")
    if raw is None or raw.strip() == "" or raw.strip().lower() == "auto":
        # Unique per worker (two workers on a host cannot bind one web port) and the same after a
        # restart. The web host is part of it because Faust's assignment carries the worker's URL:
        # a static member that rejoined under another URL would get an assignment it rejects.
        # Characters Kafka refuses (in host names, IPv6 hosts) become "_".
        raw_id = f"{socket.gethostname()[:120]}-{web_host[:100]}-{web_port}"
        return re.sub(r"[^A-Za-z0-9._-]", "_", raw_id)
    value = raw.strip()
    if value.lower() == "none":
        return None
    if not _INSTANCE_ID.fullmatch(value) or value in (".", ".."):
        raise ConfigError(f"environment variable LEADFLOW_INSTANCE_ID={raw!r}: expected 1 to 249 letters, digits, "
                          "'.', '_' or '-' (Kafka's rule for a group.instance.id), or none")
    return value


#: Kafka's rule for a topic name (``Topic.validate``), which the app id and the prefix become part of.
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
#: Longest app id / topic prefix: Kafka allows 249 characters in a topic name, and leadflow
#: appends the topic's own name (``-team_state-changelog``, ``lead.commands.retries``, …) to them.
_NAME_PART_MAX = 180
_HOST = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])")


def _topic_part(env: Mapping[str, str], name: str, default: str, *, empty: bool) -> str:
    raw = env.get(name)
    value = default if raw is None or (raw == "" and not empty) else raw
    if not _TOPIC_CHARS.fullmatch(value) or len(value) > _NAME_PART_MAX or (not value and not empty):
        raise ConfigError(f"environment variable {name}={raw!r}: expected {'up to' if empty else '1 to'} "
                          f"{_NAME_PART_MAX} letters, digits, '.', '_' or '-' (it becomes part of Kafka topic "
                          "names, which allow only those)")
    return value


def _host_port(text: str) -> str | None:
    """Why ``host[:port]`` is not one, or ``None``."""
    host, _, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not host:
        host, port = text, ""
    if not _HOST.fullmatch(host):
        return f"{host!r} is not a host name or address"
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"port {port!r} is not a number from 1 to 65535"
    return None


def _broker(env: Mapping[str, str], default: str) -> str:
    raw = env.get("LEADFLOW_BROKER") or default
    hosts = [h.strip() for h in raw.replace(";", ",").split(",") if h.strip()]
    for host in hosts or [""]:
        scheme, sep, rest = host.rpartition("://")
        problem = (f"scheme {scheme + sep!r} (use kafka://)" if sep and scheme.lower() != "kafka"
                   else _host_port(rest) if rest else "no host")
        if problem is not None:
            raise ConfigError(f"environment variable LEADFLOW_BROKER={raw!r}: {problem}; expected "
                              "kafka://host:port, several separated by ';'")
    return raw


#: For each URL, the local stack's port variable read while that URL is unset, its default, the
#: URL it makes (as ``StackConfig.kafka_url`` / ``redis_url``), and the Kubernetes Service whose
#: injected variable has the same name.
_STACK_PORTS = {
    "LEADFLOW_BROKER": ("LEADFLOW_KAFKA_PORT", 9092, "kafka://127.0.0.1:{}", "leadflow-kafka"),
    "LEADFLOW_REDIS_URL": ("LEADFLOW_REDIS_PORT", 6379, "redis://127.0.0.1:{}/0", "leadflow-redis"),
}


def _local_stack(env: Mapping[str, str], url_variable: str) -> str:
    """The local stack's URL for ``url_variable``'s default, where ``leadflow stack up`` put it
    (``LEADFLOW_KAFKA_PORT`` for ``LEADFLOW_BROKER``, ``LEADFLOW_REDIS_PORT`` for
    ``LEADFLOW_REDIS_URL``), so that a worker next to a stack moved to other ports finds it instead of
    joining whatever Kafka answers on 9092; ``""`` when ``url_variable`` is set: then the port
    variable is not read at all, whatever it holds.

    Kubernetes gives every pod ``<SERVICE>_PORT=tcp://<ip>:<port>`` for each Service in its
    namespace: a Service named ``leadflow-kafka`` sets ``LEADFLOW_KAFKA_PORT`` (review s18-a,
    finding 3). Such a value, when it would be read, is refused with a line saying so."""
    if env.get(url_variable):
        return ""
    port_variable, default, template, service = _STACK_PORTS[url_variable]
    raw = env.get(port_variable, "").strip()
    if not raw:
        return template.format(default)
    if "://" in raw:
        raise ConfigError(
            f"environment variable {port_variable}={raw!r} looks like a Kubernetes service variable (a Service "
            f"named {service} gives every pod {port_variable}=tcp://<ip>:<port>), not the local stack's port: "
            f"set {url_variable} to the {'broker' if port_variable == 'LEADFLOW_KAFKA_PORT' else 'Redis'} "
            f"the worker should use, and {port_variable} is not read")
    if not (raw.isdigit() and 1 <= int(raw) <= 65535):
        raise ConfigError(f"environment variable {port_variable}={raw!r} (the local stack's port, read while "
                          f"{url_variable} is unset) is not a TCP port (1-65535): set it to the port "
                          f"`leadflow stack up` used, or set {url_variable}")
    return template.format(int(raw))


def _redis_url(env: Mapping[str, str], default: str) -> str:
    raw = env.get("LEADFLOW_REDIS_URL") or default
    expected = "expected redis://[:password@]host:port/db, rediss://… (TLS) or unix:///path/to/socket"
    try:
        url = urlsplit(raw)
        port = url.port  # ValueError when it is no port
    except ValueError:
        raise ConfigError(f"environment variable LEADFLOW_REDIS_URL: not a URL; {expected}") from None
    # The value is not repeated: a Redis URL may carry a password.
    if url.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"environment variable LEADFLOW_REDIS_URL: scheme {url.scheme + ':' if url.scheme else 'missing'}; "
                          f"{expected}")
    if url.scheme != "unix" and not url.hostname:
        raise ConfigError(f"environment variable LEADFLOW_REDIS_URL: no host; {expected}")
    if url.scheme == "unix" and not url.path:
        raise ConfigError(f"environment variable LEADFLOW_REDIS_URL: no socket path; {expected}")
    if url.scheme != "unix" and url.path.strip("/") and not url.path.strip("/").isdigit():
        raise ConfigError(f"environment variable LEADFLOW_REDIS_URL: database {url.path.strip('/')!r} is not a number; "
                          f"{expected}")
    del port
    return raw


def _trusted_proxies(env: Mapping[str, str]) -> TrustedProxies:
    try:
        return TrustedProxies.parse(env.get("LEADFLOW_TRUSTED_PROXIES", ""))
    except ValueError as exc:
        raise ConfigError(f"environment variable LEADFLOW_TRUSTED_PROXIES: {exc}") from None


class _Problems:
    """Every settings error at once: ``take`` runs one reader and keeps its error for the end."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def take(self, read: Callable[..., _T], *args: Any, fallback: _T, **kwargs: Any) -> _T:
        try:
            return read(*args, **kwargs)
        except ConfigError as exc:
            self.found.append(str(exc))
            return fallback

    def check(self) -> None:
        if len(self.found) == 1:
            raise ConfigError(self.found[0])
        if self.found:
            raise ConfigError("invalid settings:\n  " + "\n  ".join(self.found))


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How one worker runs. Every field has a ``LEADFLOW_*`` environment variable."""

    #: Kafka bootstrap URL(s), ``kafka://host:port[;host:port]`` (``LEADFLOW_BROKER``). Unset,
    #: ``from_env`` takes the local stack's, where ``leadflow stack up`` put it
    #: (``LEADFLOW_KAFKA_PORT``, this default without it).
    broker: str = "kafka://127.0.0.1:9092"
    #: Redis for caches, idempotency keys and rate limits; never the source of truth (``LEADFLOW_REDIS_URL``).
    #: Unset, ``from_env`` takes the local stack's (``LEADFLOW_REDIS_PORT``, this default without it).
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Optional YAML file with teams, reps, routing rules and API keys (``LEADFLOW_CONFIG``).
    config_path: Path | None = None
    #: Port of this worker's HTTP API (``LEADFLOW_WEB_PORT``); each worker on a host needs its own.
    web_port: int = 6066
    #: Host other workers use to reach this one when forwarding requests (``LEADFLOW_WEB_HOST``).
    web_host: str = "127.0.0.1"
    #: Kafka static membership: this worker's ``group.instance.id`` (``LEADFLOW_INSTANCE_ID``).
    #: A worker restarted after ``kill -9`` takes its partitions back without a rebalance instead
    #: of waiting for its old session to expire. ``from_env`` derives ``<host name>-<web host>-<web
    #: port>`` when unset or ``auto`` (unique per worker on a host, the same after a restart);
    #: ``none``: dynamic membership (``None`` here). Two live workers must never share one: see
    #: docs/RELIABILITY.md.
    instance_id: str | None = None
    #: Where RocksDB tables live (``LEADFLOW_DATA_DIR``); one folder per worker.
    data_dir: Path = Path(".state/worker")
    #: API keys accepted besides those in the config, comma-separated, each ``<key>[:<scope>+<scope>…]``
    #: (``LEADFLOW_API_KEYS``; named ``api``, scopes as in connectors/auth.py).
    api_keys: tuple[ApiKeySecret, ...] = ()
    #: The team a lead goes to when no routing rule matches (``LEADFLOW_DEFAULT_TEAM``).
    default_team: str = "default"
    #: Let webhooks target loopback and private addresses: local demos and tests only
    #: (``LEADFLOW_WEBHOOK_ALLOW_PRIVATE``).
    webhook_allow_private: bool = False
    #: The secret lead ids are an HMAC with (``LEADFLOW_LEAD_ID_KEY``); unset: plain SHA-256 of the
    #: identity, recomputable by anyone holding an e-mail. Set it before the first lead, the same on
    #: every worker, and never change it: a new key gives every person a new lead id.
    lead_id_key: str | None = field(default=None, repr=False)
    #: Faust app id: names the consumer group and the internal topics (``LEADFLOW_APP_ID``).
    app_id: str = "leadflow"
    #: Prefix of the public topics (``LEADFLOW_TOPIC_PREFIX``).
    topic_prefix: str = "leadflow."
    #: Partitions of the entity topics; co-partitioned topics share it (``LEADFLOW_PARTITIONS``).
    partitions: int = 8
    #: Table store: ``rocksdb`` for real runs, ``memory`` for agent tests (``LEADFLOW_STORE``).
    store: str = "rocksdb"
    #: Standby replicas per table, for fast failover (``LEADFLOW_STANDBY_REPLICAS``).
    standby_replicas: int = 1
    #: Replication factor of the topics leadflow creates (``LEADFLOW_REPLICATION``).
    replication: int = 1
    #: Largest accepted request body in bytes (``LEADFLOW_MAX_BODY_BYTES``).
    max_body_bytes: int = 1_048_576
    #: Most leads in one batch request (``LEADFLOW_MAX_BATCH``).
    max_batch: int = 500
    #: Most data rows in one CSV import (``LEADFLOW_MAX_IMPORT_ROWS``).
    max_import_rows: int = 100_000
    #: Hosts a browser form post may be redirected to, comma-separated (``LEADFLOW_ALLOWED_REDIRECT_HOSTS``).
    allowed_redirect_hosts: frozenset[str] = frozenset()
    #: The load balancers and reverse proxies in front of the API, comma-separated addresses and
    #: networks (``LEADFLOW_TRUSTED_PROXIES``). A request from one of them is taken to come from
    #: the right-most ``X-Forwarded-For`` address that is not one (what the API limits failed
    #: authentications by); empty, the default: no header is believed, the peer is the client.
    trusted_proxies: TrustedProxies = TrustedProxies()
    #: Per-attempt webhook timeout in seconds (``LEADFLOW_WEBHOOK_TIMEOUT``).
    webhook_timeout_s: float = 10.0
    #: Python log level of the worker (``LEADFLOW_LOG_LEVEL``).
    log_level: str = "info"
    #: Delays between webhook attempts, e.g. ``5s,5m,30m,2h,5h,10h,10h`` (Standard Webhooks'
    #: schedule, the default); after the last one the message is dead-lettered. Tests scale it
    #: down (``LEADFLOW_WEBHOOK_RETRY_SCHEDULE``).
    webhook_retry_schedule: tuple[float, ...] = STANDARD_SCHEDULE
    #: Consecutive failures that open an endpoint's circuit (``LEADFLOW_WEBHOOK_BREAKER_THRESHOLD``).
    webhook_breaker_threshold: int = 5
    #: Seconds an open circuit defers deliveries before one probe (``LEADFLOW_WEBHOOK_BREAKER_COOLDOWN``).
    webhook_breaker_cooldown_s: float = 30.0
    #: MiB of encoded ``LeadState``/``TeamState`` values each RocksDB table keeps decoded
    #: (``streams/tables/_cache.py``; resident memory is ~3.3× that); 0 turns the cache off
    #: (``LEADFLOW_STATE_CACHE_MB``).
    state_cache_mb: int = 8
    #: Milliseconds the Kafka producer waits to fill a request before sending it
    #: (``LEADFLOW_PRODUCER_LINGER_MS``). 0 (the default) sends at once: an agent publishes a
    #: whole batch in one go, so its messages already share requests, and any linger is paid at
    #: every stage of a lead's path. docs/PERFORMANCE.md measures 0 against 5.
    producer_linger_ms: int = 0
    #: Run Kafka's consumer in Faust's own thread (``LEADFLOW_CONSUMER_THREAD``). Off by default:
    #: the consumer runs on the worker's event loop (``streams/inline_consumer.py``), which saves
    #: a thread hand-off per fetch and the GIL contention between the two.
    consumer_thread: bool = False
    #: Fetch through Kafka's incremental fetch sessions (``LEADFLOW_FETCH_SESSIONS``, KIP-227,
    #: ``streams/fetch_sessions.py``): a fetch names only the partitions that changed, and its
    #: answer only those with records. On by default; it was off in session 7 while restart-test
    #: failures were blamed on it, which session 8 traced to Faust clearing the streams' queues
    #: (``streams/faust_fixes.py`` fix 6; seen with sessions off too, docs/RELIABILITY.md).
    fetch_sessions: bool = True
    #: Seconds between the first SIGTERM and the start of the stop (``LEADFLOW_SHUTDOWN_DELAY``,
    #: 0 to 120; ``streams/worker.py``). Meanwhile ``/readyz`` answers 503 "stopping" and the API
    #: keeps serving (captures, reads, commands), so that a load balancer takes the worker out of
    #: rotation before its port closes; without it, requests sent in the ~0.2 s between SIGTERM and
    #: the port closing were refused. Longer than the balancer needs to notice (a readiness probe's
    #: period × failure threshold, or the endpoint propagation of a Kubernetes Service), shorter
    #: than the grace period before SIGKILL (README, "Deploying"). A second SIGTERM, or SIGINT,
    #: stops at once. The tests' and the demo's workers run with 0.
    shutdown_delay_s: float = 5.0

    @property
    def bootstrap_servers(self) -> list[str]:
        """``broker`` as aiokafka takes it: ``kafka://h1:9092;h2:9092`` → ``["h1:9092", "h2:9092"]``."""
        return [h.strip().removeprefix("kafka://") for h in self.broker.replace(";", ",").split(",") if h.strip()]

    @property
    def canonical_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the environment, with errors that name the variable."""
        env = os.environ if env is None else env
        d = cls()  # the documented defaults (slots dataclasses have no class-level values)
        p = _Problems()
        config = env.get("LEADFLOW_CONFIG") or None
        keys: tuple[ApiKeySecret, ...] = p.take(_api_keys, env, fallback=())
        store = env.get("LEADFLOW_STORE", "rocksdb")
        if store not in ("rocksdb", "memory"):
            p.found.append(f"environment variable LEADFLOW_STORE={store!r}: expected rocksdb or memory")
        web_port = p.take(_int, env, "LEADFLOW_WEB_PORT", d.web_port, minimum=1, maximum=65535, fallback=d.web_port)
        web_host = env.get("LEADFLOW_WEB_HOST") or d.web_host
        stack_broker = p.take(_local_stack, env, "LEADFLOW_BROKER", fallback=d.broker)
        stack_redis = p.take(_local_stack, env, "LEADFLOW_REDIS_URL", fallback=d.redis_url)
        settings = cls(
            broker=p.take(_broker, env, stack_broker, fallback=d.broker),
            redis_url=p.take(_redis_url, env, stack_redis, fallback=d.redis_url),
            config_path=Path(config) if config else None,
            web_port=web_port,
            web_host=web_host,
            instance_id=p.take(_instance_id, env, web_host, web_port, fallback=None),
            data_dir=Path(env.get("LEADFLOW_DATA_DIR") or d.data_dir),
            api_keys=keys,
            default_team=env.get("LEADFLOW_DEFAULT_TEAM") or d.default_team,
            webhook_allow_private=p.take(_bool, env, "LEADFLOW_WEBHOOK_ALLOW_PRIVATE", False, fallback=False),
            lead_id_key=p.take(_lead_id_key, env, fallback=None),
            app_id=p.take(_topic_part, env, "LEADFLOW_APP_ID", d.app_id, empty=False, fallback=d.app_id),
            topic_prefix=p.take(_topic_part, env, "LEADFLOW_TOPIC_PREFIX", d.topic_prefix, empty=True,
                                fallback=d.topic_prefix),
            partitions=p.take(_int, env, "LEADFLOW_PARTITIONS", d.partitions, minimum=1, maximum=10_000,
                              fallback=d.partitions),
            store=store,
            standby_replicas=p.take(_int, env, "LEADFLOW_STANDBY_REPLICAS", d.standby_replicas, maximum=100,
                                    fallback=d.standby_replicas),
            replication=p.take(_int, env, "LEADFLOW_REPLICATION", d.replication, minimum=1, maximum=100,
                               fallback=d.replication),
            max_body_bytes=p.take(_int, env, "LEADFLOW_MAX_BODY_BYTES", d.max_body_bytes, minimum=1024,
                                  fallback=d.max_body_bytes),
            max_batch=p.take(_int, env, "LEADFLOW_MAX_BATCH", d.max_batch, minimum=1, fallback=d.max_batch),
            max_import_rows=p.take(_int, env, "LEADFLOW_MAX_IMPORT_ROWS", d.max_import_rows, minimum=1,
                                   fallback=d.max_import_rows),
            allowed_redirect_hosts=frozenset(
                h.strip().lower() for h in env.get("LEADFLOW_ALLOWED_REDIRECT_HOSTS", "").split(",") if h.strip()),
            trusted_proxies=p.take(_trusted_proxies, env, fallback=d.trusted_proxies),
            webhook_timeout_s=p.take(_positive_seconds, env, "LEADFLOW_WEBHOOK_TIMEOUT", d.webhook_timeout_s,
                                     fallback=d.webhook_timeout_s),
            log_level=p.take(_log_level, env.get("LEADFLOW_LOG_LEVEL") or d.log_level, fallback=d.log_level),
            webhook_retry_schedule=p.take(_schedule, env, "LEADFLOW_WEBHOOK_RETRY_SCHEDULE", d.webhook_retry_schedule,
                                          fallback=d.webhook_retry_schedule),
            webhook_breaker_threshold=p.take(_int, env, "LEADFLOW_WEBHOOK_BREAKER_THRESHOLD",
                                             d.webhook_breaker_threshold, minimum=1,
                                             fallback=d.webhook_breaker_threshold),
            webhook_breaker_cooldown_s=p.take(_seconds, env, "LEADFLOW_WEBHOOK_BREAKER_COOLDOWN",
                                              d.webhook_breaker_cooldown_s, fallback=d.webhook_breaker_cooldown_s),
            state_cache_mb=p.take(_int, env, "LEADFLOW_STATE_CACHE_MB", d.state_cache_mb, maximum=100_000,
                                  fallback=d.state_cache_mb),
            # More than a minute would hold every message that long: a typo, not a tuning.
            producer_linger_ms=p.take(_int, env, "LEADFLOW_PRODUCER_LINGER_MS", d.producer_linger_ms,
                                      maximum=60_000, fallback=d.producer_linger_ms),
            consumer_thread=p.take(_bool, env, "LEADFLOW_CONSUMER_THREAD", d.consumer_thread,
                                   fallback=d.consumer_thread),
            fetch_sessions=p.take(_bool, env, "LEADFLOW_FETCH_SESSIONS", d.fetch_sessions, fallback=d.fetch_sessions),
            shutdown_delay_s=p.take(_shutdown_delay, env, d.shutdown_delay_s, fallback=d.shutdown_delay_s),
        )
        p.check()
        return settings

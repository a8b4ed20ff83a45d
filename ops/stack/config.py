"""Where the local stack lives and which ports it uses: one frozen, validated StackConfig."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ops.stack.errors import StackError

__all__ = ["StackConfig", "find_repo_root"]


def find_repo_root(start: Path | None = None) -> Path:
    """Return the leadflow checkout: the nearest directory holding pyproject.toml above `start`.

    `start` defaults to this file, so an editable install finds the checkout it came from
    whatever the working directory is; a non-editable install falls back to the CWD.
    """
    here = (start or Path(__file__)).resolve()
    for directory in (here, *here.parents):
        if (directory / "pyproject.toml").is_file() and (directory / "ops").is_dir():
            return directory
    return Path.cwd()


def _default_state_dir() -> Path:
    return find_repo_root() / ".state"


def _default_cache_dir() -> Path:
    return find_repo_root() / ".cache"


@dataclass(frozen=True)
class StackConfig:
    """The local Kafka + Redis stack: its directories, ports and Kafka version.

    Build it with `StackConfig.from_env()` for the CLI, or directly (tests pass a temp
    `state_dir` and their own ports so they never touch the developer's stack).
    """

    #: Pid files, rendered configs, Kafka's data and both services' logs. Safe to delete
    #: when the stack is down; it is recreated (and Kafka reformatted) on the next `stack_up`.
    state_dir: Path = field(default_factory=_default_state_dir)
    #: Downloaded artefacts shared by every state dir (Kafka's jars, Maven's local repo), so
    #: tests with a temp state dir never fetch twice.
    cache_dir: Path = field(default_factory=_default_cache_dir)
    #: The PLAINTEXT listener clients use (bootstrap servers `127.0.0.1:<kafka_port>`).
    kafka_port: int = 9092
    #: The KRaft controller listener; only the broker itself talks to it.
    kafka_controller_port: int = 9093
    redis_port: int = 6379
    #: An `org.apache.kafka:kafka_2.13` version on Maven Central (4.x: KRaft only).
    kafka_version: str = "4.1.1"
    #: Heap for the broker JVM; 512 MB is plenty for a dev broker and fits a 2-core CI box.
    kafka_heap: str = "512m"

    def __post_init__(self) -> None:
        ports = {
            "kafka_port": self.kafka_port,
            "kafka_controller_port": self.kafka_controller_port,
            "redis_port": self.redis_port,
        }
        for name, port in ports.items():
            if not 1 <= port <= 65535:
                raise StackError(f"stack config: {name}={port} is not a TCP port (1-65535)")
        if len(set(ports.values())) != len(ports):
            raise StackError(f"stack config: the ports must all differ, got {ports}")
        if not self.kafka_version.strip():
            raise StackError("stack config: kafka_version is empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        """Defaults overridden by LEADFLOW_STATE_DIR, LEADFLOW_CACHE_DIR, LEADFLOW_KAFKA_PORT,
        LEADFLOW_KAFKA_CONTROLLER_PORT and LEADFLOW_REDIS_PORT.

        Moving only the Kafka port moves the controller port with it (kafka_port + 1), so a
        second stack started with LEADFLOW_KAFKA_PORT=19092 does not collide on 9093.
        """
        env = os.environ if environ is None else environ
        kafka_port = _port(env, "LEADFLOW_KAFKA_PORT", 9092)
        state_dir, cache_dir = env.get("LEADFLOW_STATE_DIR"), env.get("LEADFLOW_CACHE_DIR")
        return cls(
            state_dir=Path(state_dir) if state_dir else _default_state_dir(),
            cache_dir=Path(cache_dir) if cache_dir else _default_cache_dir(),
            kafka_port=kafka_port,
            kafka_controller_port=_port(env, "LEADFLOW_KAFKA_CONTROLLER_PORT", kafka_port + 1),
            redis_port=_port(env, "LEADFLOW_REDIS_PORT", 6379),
        )

    @property
    def kafka_bootstrap(self) -> str:
        """`host:port` for aiokafka's and Faust's bootstrap servers."""
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def kafka_url(self) -> str:
        """The broker URL in Faust's form (`broker=`)."""
        return f"kafka://{self.kafka_bootstrap}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a port number") from None

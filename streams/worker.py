"""Run the Faust worker: import every agent, then hand over to Faust's own worker command."""
from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import faust.worker

from leadflow.errors import ConfigError
from streams import stopping

__all__ = ["LeadflowWorker", "check_data_dir", "check_port", "main"]

log = logging.getLogger(__name__)

#: Where the HTTP API listens (``create_app``'s ``web_bind``).
WEB_BIND = "0.0.0.0"


class LeadflowWorker(faust.worker.Worker):
    """Faust's worker without its terminal spinner, and with a drain before it stops on SIGTERM.

    The spinner: at warning level and above Faust keeps a progress spinner that turns on every log
    record: it sets the *root logger* to DEBUG and leaves the level to the handler. Every
    ``log.debug`` in aiokafka and Faust (several per message sent) then built a ``LogRecord``,
    looked up its caller and handed it to a handler that dropped it: ~3% of the worker's CPU.

    The drain: Faust stops at once on SIGTERM; its port closed ~0.2 s later, and requests a load
    balancer still sent meanwhile were refused ("connection refused", not 503 + Retry-After). On
    the first SIGTERM of a worker that has started, ``/readyz`` answers 503 "stopping" at once and
    everything else keeps working for ``LEADFLOW_SHUTDOWN_DELAY`` seconds; then the worker stops as
    before. A second SIGTERM, or SIGINT (Ctrl-C), stops it at once, so the delay never holds up
    someone who wants it gone; a worker still starting stops at once too (no balancer sends to it).
    A signal after the stop began ends the process there and then (``_schedule_shutdown``).
    """

    _drain: asyncio.TimerHandle | None = None
    _started_up = False

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None  # the root logger keeps the level mode's setup gave it

    async def on_startup_finished(self) -> None:
        self._started_up = True  # tables recovered once: the worker can have been ready
        await super().on_startup_finished()

    def _on_sigterm(self) -> None:
        app: Any = self.app
        delay = float(app.runtime.settings.shutdown_delay_s)
        if self._drain is not None or self._signal_stop_time or delay <= 0 or not self._started_up:
            self._stop_now()
            return
        app.stop_requested_at = self.loop.time()
        log.info("SIGTERM: /readyz answers 503 \"stopping\" from now on; the API keeps serving for %.1f s "
                 "(LEADFLOW_SHUTDOWN_DELAY), then the worker stops; another SIGTERM or Ctrl-C stops it at once",
                 delay)
        self._drain = self.loop.call_later(delay, self._stop_now)

    def _on_sigint(self) -> None:
        self._cancel_drain()
        super()._on_sigint()

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        """Begin the stop on the first signal; a signal after the stop began ends the process at once.

        mode ignores every signal once its stop began, and Faust's stop can wait for ever (an
        agent's batch that Kafka does not acknowledge, a flush to a broker that is gone): the
        s16 review's worker ignored three signals over 75 s and only SIGKILL ended it.
        """
        app: Any = self.app
        if self._signal_stop_time or self.should_stop or app.should_stop:
            stopping.exit_now(f"{stopping.signal_name(sig)} while the worker was already stopping",
                              128 + int(sig))
        stopping.stop_began(sig)
        super()._schedule_shutdown(sig)

    def _stop_now(self) -> None:
        """Stop as Faust does on SIGTERM (once; a signal after that ends the process: ``_schedule_shutdown``)."""
        self._cancel_drain()
        app: Any = self.app
        if app.stop_requested_at is None:
            app.stop_requested_at = self.loop.time()
        super()._on_sigterm()

    def _cancel_drain(self) -> None:
        if self._drain is not None:
            self._drain.cancel()


def check_data_dir(path: Path) -> None:
    """``ConfigError`` naming ``LEADFLOW_DATA_DIR`` unless the tables' folder can be made and written:
    Faust stopped with a FileNotFoundError traceback."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"LEADFLOW_DATA_DIR={str(path)!r} (or --data-dir): cannot create or write the tables' "
                          f"folder ({exc.strerror or type(exc).__name__})") from None


def check_port(host: str, port: int) -> None:
    """``ConfigError`` naming ``LEADFLOW_WEB_PORT`` when the HTTP API cannot listen on ``port``: Faust
    stopped with a 112-line OSError traceback. (A port taken between this check and Faust's bind
    still ends in that traceback; the usual case, another worker already there, is told here.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            raise ConfigError(f"LEADFLOW_WEB_PORT={port} (or --port): cannot listen on {host}:{port} "
                              f"({'another process listens there' if taken else exc.strerror}); give each worker "
                              "on a host its own port") from None


def main(argv: list[str] | None = None) -> None:
    from streams.agents import accounts, intake, lead, notifier, observe, reps, sla, team, team_stats  # noqa: F401  (registers the agents)
    from streams.agents import crm, outcomes  # noqa: F401  (the CRM handoff, the win-rate board)
    from streams.app import app, runtime
    from streams import gc_tuning, topic_check, topics

    settings = runtime.settings
    for warning in runtime.config.warnings(settings.default_team):  # as --check-config prints them
        log.warning("config: %s", warning)
    expected = topic_check.expected_partitions(
        [*topics.CHANNELS.values(), topics.leads_inbound, topics.leads_rejected], app.tables.values(),
        app.conf.topic_partitions)
    gc_tuning.after_imports()
    check_data_dir(settings.data_dir)
    check_port(WEB_BIND, settings.web_port)
    topic_check.preflight(expected, settings.bootstrap_servers, settings.partitions, settings.replication,
                          configs=topic_check.wanted_configs(app.tables.values()))  # before Faust creates any
    level = settings.log_level
    args = ["worker", "--loglevel", level]
    sys.argv = [sys.argv[0], *args, *(argv or [])]
    app.main()

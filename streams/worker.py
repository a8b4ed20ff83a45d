"""Run the Faust worker: import every agent, then hand over to Faust's own worker command."""
from __future__ import annotations

import logging
import sys

import faust.worker

__all__ = ["LeadflowWorker", "main"]

log = logging.getLogger(__name__)


class LeadflowWorker(faust.worker.Worker):
    """Faust's worker without its terminal spinner, so the log level is the one configured.

    At warning level and above Faust keeps a progress spinner that turns on every log record:
    it sets the *root logger* to DEBUG and leaves the level to the handler. Every
    ``log.debug`` in aiokafka and Faust (several per message sent) then built a ``LogRecord``,
    looked up its caller and handed it to a handler that dropped it: ~3% of the worker's CPU.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None  # the root logger keeps the level mode's setup gave it


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
    topic_check.preflight(expected, settings.bootstrap_servers, settings.partitions, settings.replication,
                          configs=topic_check.wanted_configs(app.tables.values()))  # before Faust creates any
    level = settings.log_level
    args = ["worker", "--loglevel", level]
    sys.argv = [sys.argv[0], *args, *(argv or [])]
    app.main()

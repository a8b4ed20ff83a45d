"""Run the Faust worker: import every agent, then hand over to Faust's own worker command."""
from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    from streams.agents import accounts, intake, lead, notifier, observe, reps, sla, team, team_stats  # noqa: F401  (registers the agents)
    from streams.agents import crm, outcomes  # noqa: F401  (the CRM handoff, the win-rate board)
    from streams.app import app, runtime

    level = runtime.settings.log_level
    args = ["worker", "--loglevel", level]
    sys.argv = [sys.argv[0], *args, *(argv or [])]
    app.main()

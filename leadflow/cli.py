"""The ``leadflow`` command: run the local stack, a worker, or the whole demo."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from leadflow.errors import LeadflowError

__all__ = ["main", "build_parser"]

_EPILOG = """\
examples:
  leadflow stack up            start Kafka (KRaft) and Redis locally; idempotent
  leadflow stack status        what runs, with URLs and log files
  leadflow worker --config teams.yaml
                               run one worker (HTTP API on :6066)
  LEADFLOW_WEB_PORT=6067 LEADFLOW_DATA_DIR=.state/w2 leadflow worker
                               a second worker in the same group (scale-out)
  leadflow run                 the demo: stack, worker, SDR webhook receiver, lead feed, live view

environment (worker): LEADFLOW_BROKER, LEADFLOW_REDIS_URL, LEADFLOW_CONFIG, LEADFLOW_WEB_PORT,
  LEADFLOW_DATA_DIR, LEADFLOW_API_KEYS, LEADFLOW_DEFAULT_TEAM, LEADFLOW_WEBHOOK_ALLOW_PRIVATE;
  see streams/settings.py for the rest.
environment (stack): LEADFLOW_STATE_DIR, LEADFLOW_CACHE_DIR, LEADFLOW_KAFKA_PORT, LEADFLOW_REDIS_PORT.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadflow",
        description="Real-time lead routing on Kafka: capture leads, route each to the right SDR "
                    "within seconds, push a signed webhook.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="the local Kafka + Redis stack (no Docker needed)",
                                description="Start, stop or inspect the local stack: Apache Kafka in KRaft "
                                            "mode from Maven Central and Redis from Debian's redis-server, "
                                            "as background processes with their data in .state/.")
    stack_cmds = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    stack_cmds.add_parser("up", help="start what is not running and wait until it answers")
    down = stack_cmds.add_parser("down", help="stop the services we started (by their pid files)")
    down.add_argument("--wipe", action="store_true", help="also delete Kafka's and Redis's data")
    stack_cmds.add_parser("status", help="show what runs, with URLs and logs")

    worker = commands.add_parser("worker", help="run one Faust worker with the HTTP API",
                                 description="Run a leadflow worker: the Faust agents (intake, leads, teams, "
                                             "reps, notifier) and the HTTP API. Stops cleanly on Ctrl-C "
                                             "or SIGTERM.")
    worker.add_argument("--config", type=Path, help="YAML config (teams, reps, routing, API keys); "
                                                   "overrides LEADFLOW_CONFIG")
    worker.add_argument("--port", type=int, help="HTTP port; overrides LEADFLOW_WEB_PORT (default 6066)")
    worker.add_argument("--data-dir", type=Path, help="RocksDB folder; overrides LEADFLOW_DATA_DIR")
    worker.add_argument("--check-config", action="store_true", help="validate the config and exit")

    run = commands.add_parser("run", help="the demo: everything running, with a live view",
                              description="Start the stack, a worker with the demo config, a demo SDR "
                                          "webhook receiver and a demo lead feed, and show leads being "
                                          "routed live. Ctrl-C stops everything it started.")
    run.add_argument("--leads", type=int, default=None, help="stop feeding after N leads (default: endless)")
    run.add_argument("--rate", type=float, default=2.0, help="leads per second (default 2)")
    run.add_argument("--port", type=int, default=6066, help="the worker's HTTP port (default 6066)")
    run.add_argument("--receiver-port", type=int, default=8090, help="the demo receiver's port (default 8090)")
    run.add_argument("--keep-stack", action="store_true", help="leave Kafka and Redis running afterwards")
    return parser


def _stack(args: argparse.Namespace) -> int:
    from ops.stack import StackConfig, stack_down, stack_status, stack_up

    cfg = StackConfig.from_env()
    if args.action == "up":
        status = stack_up(cfg)
        print(status)
        print(f"\nbroker: {cfg.kafka_url}   redis: {cfg.redis_url}")
    elif args.action == "down":
        stack_down(cfg, wipe=args.wipe)
    else:
        status = stack_status(cfg)
        print(status)
        return 0 if status.running else 3
    return 0


def _worker(args: argparse.Namespace) -> int:
    # Settings are read from the environment when the app module is imported, so the flags
    # become environment variables first.
    if args.config is not None:
        os.environ["LEADFLOW_CONFIG"] = str(args.config)
    if args.port is not None:
        os.environ["LEADFLOW_WEB_PORT"] = str(args.port)
    if args.data_dir is not None:
        os.environ["LEADFLOW_DATA_DIR"] = str(args.data_dir)
    if args.check_config:
        from streams.config import load_config
        from streams.settings import Settings

        settings = Settings.from_env()
        config = load_config(settings.config_path)
        reps = sum(len(t.reps) for t in config.teams)
        print(f"config OK: {len(config.teams)} team(s), {reps} rep(s), {len(config.api_keys)} API key(s)")
        return 0
    from streams.worker import main as worker_main

    worker_main()
    return 0


def _run(args: argparse.Namespace) -> int:
    from ops.demo.launch import launch_demo

    return launch_demo(leads=args.leads, rate=args.rate, port=args.port, receiver_port=args.receiver_port,
                       keep_stack=args.keep_stack)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "stack":
            return _stack(args)
        if args.command == "worker":
            return _worker(args)
        return _run(args)
    except LeadflowError as exc:
        print(f"leadflow: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

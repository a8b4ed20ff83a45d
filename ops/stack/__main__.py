"""`python -m ops.stack up|down|status [kafka|redis]`: the local stack from a shell, for make and CI."""
from __future__ import annotations

import argparse
import sys

from ops.stack.config import StackConfig
from ops.stack.errors import StackError
from ops.stack.manager import DEFAULT_TIMEOUT, SERVICES, stack_down, stack_status, stack_up

__all__ = ["main"]


def _service(name: str) -> str:
    if name not in SERVICES:
        raise argparse.ArgumentTypeError(f"no service {name!r}: the stack has {' and '.join(SERVICES)}")
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.stack",
        description="Local Kafka + Redis for leadflow (no Docker). Ports and directories come from "
        "LEADFLOW_KAFKA_PORT, LEADFLOW_KAFKA_CONTROLLER_PORT, LEADFLOW_REDIS_PORT, "
        "LEADFLOW_STATE_DIR and LEADFLOW_CACHE_DIR.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start what is not running; return when it answers")
    up.add_argument("services", nargs="*", metavar="SERVICE", type=_service,
                    help="kafka and/or redis (default: both)")
    up.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per service")
    down = commands.add_parser("down", help="stop the services this stack started (by pid file)")
    down.add_argument("services", nargs="*", metavar="SERVICE", type=_service,
                      help="kafka and/or redis (default: both); `down kafka` is a broker outage")
    down.add_argument("--wipe", action="store_true", help="also delete the stopped services' data")
    commands.add_parser("status", help="show each service; exit 3 if any is stopped")
    args = parser.parse_args(argv)

    try:
        cfg = StackConfig.from_env()
        if args.command == "up":
            print(stack_up(cfg, args.services or None, timeout=args.timeout))
        elif args.command == "down":
            stack_down(cfg, args.services or None, wipe=args.wipe)
        else:
            status = stack_status(cfg)
            print(status)
            return 0 if status.running else 3
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

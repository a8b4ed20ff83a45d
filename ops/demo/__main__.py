"""``python -m ops.demo``: run only the demo pieces against a worker that is already running."""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ops.demo.run import CONFIG_PATH, load_demo_settings, run_demo

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run just the demo pieces against a worker that is already running."""
    parser = argparse.ArgumentParser(prog="python -m ops.demo", description=main.__doc__)
    parser.add_argument("--api", default="http://127.0.0.1:6066", help="the worker's HTTP API")
    parser.add_argument("--broker", default="kafka://127.0.0.1:9092", help="kafka://host:port")
    parser.add_argument("--config", type=Path, default=CONFIG_PATH, help="the demo config")
    parser.add_argument("--leads", type=int, default=None, help="stop after this many (default: run until Ctrl-C)")
    parser.add_argument("--rate", type=float, default=2.0, help="leads per second")
    parser.add_argument("--port", type=int, default=8090, help="the webhook receiver's port")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of webhooks answered 503")
    args = parser.parse_args(argv)
    settings = load_demo_settings(args.config)
    try:
        asyncio.run(run_demo(args.api, args.broker, settings.api_key, settings.rep_secrets, settings.capacities,
                             leads=args.leads, rate=args.rate, receiver_port=args.port, fail_rate=args.fail_rate))
    except KeyboardInterrupt:
        pass  # asyncio.run cancelled run_demo, whose finally blocks stopped everything


if __name__ == "__main__":
    main()

"""``leadflow bench`` / ``python -m ops.bench``: the load, restart and hot-spot benchmarks."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from leadflow.errors import LeadflowError

__all__ = ["DESCRIPTION", "build_parser", "main", "add_bench_arguments", "run"]

DESCRIPTION = """\
Measure leadflow on the real local stack (Kafka + Redis, started if needed).

  load     feed leads at several rates (HTTP batches or the Kafka feed `leads.inbound`) into
           fresh workers, receive every webhook at a real SDR receiver that verifies its
           signature, and report per rate: leads/s delivered, capture→assigned and
           capture→webhook percentiles, the worker's CPU and memory. The same run first
           measures a raw aiokafka consume→produce passthrough on the same broker and prints
           leadflow's throughput as a ratio of it. Writes JSON and an SVG plot.
  restart  fill the worker's tables with N leads (straight into the changelog topics), then
           measure cold recovery and restart-after-kill -9 until /readyz and until a new lead is
           routed.
  hotspot  one team is owned by one partition: flood one team with routing commands and
           measure its maximum routing rate.
  soak     one steady rate for a long time (30 min by default), window by window: does memory
           grow, does latency drift, does a backlog creep up, is every lead delivered?
"""

_SOAK_DESCRIPTION = """\
Feed leads open-loop at --rate for --minutes into a fresh deployment (an SDR closes each lead
once its webhook arrives, so the teams stay at their steady size) and report every --window
seconds: leads sent, the backlog (sent minus webhooks received), capture→webhook percentiles,
the worker's CPU and resident memory, and its consumer lag and event-loop lag (/metrics). At the
end: every lead accounted for, the p99 of the first and last thirds, and the memory trend after
the first window (least squares), per hour and per 1,000 leads. Writes <out>/soak-<time>.json
and .svg (latency and memory over time).
"""

_SOAK_EPILOG = """\
examples:
  leadflow bench soak                                  # 40 leads/s over HTTP for 30 min
  leadflow bench soak --rate 10 --minutes 2 --window 20
                                                       # a quick check that it all runs (~3 min)
  leadflow bench soak --feed kafka --rate 60 --minutes 60
                                                       # an hour of the Kafka feed

Pick a rate the worker holds (`leadflow bench load --rates paced` finds the highest): above it
the backlog grows window after window and the soak measures a queue, not a steady state.
The stack follows LEADFLOW_STATE_DIR / LEADFLOW_KAFKA_PORT / LEADFLOW_REDIS_PORT like
`leadflow stack`. Needs the bench extra for CPU and memory: pip install -e '.[bench]'.
"""

_LOAD_DESCRIPTION = """\
Feed leads at several rates into fresh workers on the local stack, receive every webhook at a
real SDR receiver that verifies its Standard Webhooks signature, and report per step: leads/s
delivered, capture→assigned (from lead.events) and capture→webhook (at the receiver)
percentiles, and the workers' CPU and memory. First, in the same run, a raw aiokafka
consume→produce passthrough on the same broker: leadflow's throughput is printed as a ratio of
it. Writes <out>/bench-<time>.json and .svg (throughput vs rate, latency CDFs).
"""

_LOAD_EPILOG = """\
rates: numbers are leads/s offered open-loop (batches leave on schedule whatever happens);
  max   = unthrottled: --max-leads offered at once, measures the ceiling;
  half  = half of what the latest max step reached (the latency goal is judged there);
  paced = bisect (5 steps of --duration) for the highest rate held at a steady pace: ≥ 90%
          delivered and ≤ 1 s of backlog left at the end. The max step's burst runs in full
          batches, cheaper per lead than a paced feed: its rate is not one a paced feed holds;
  half-paced = half of the latest paced result.
A fixed-rate step is "sustained" when it delivered ≥ 90% of the offered rate and the backlog
left when the feed stopped drained within 5 s.

examples:
  leadflow bench load                                  # 25,50,100,max,half over HTTP, 1 worker
  leadflow bench load --rates 10,max --duration 5 --max-leads 500 --passthrough-records 5000
                                                       # a quick smoke run (~1 min)
  leadflow bench load --rates max --workers 1,2        # scale-out: one vs two workers, same run
  leadflow bench load --feed kafka --rates 50,max      # external producers on leads.inbound
  leadflow bench load --rates max --profile            # + py-spy profile of the max step
  leadflow bench load --feed kafka --rates max,half,paced,half-paced
                                                       # the latency goal at both halves (~6 min)

The stack follows LEADFLOW_STATE_DIR / LEADFLOW_KAFKA_PORT / LEADFLOW_REDIS_PORT like
`leadflow stack`; it is stopped afterwards if this run started it (unless --keep-stack).
Needs the bench extra for CPU/memory and profiles: pip install -e '.[bench]'.
"""


def _csv_ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers such as 1,2") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def _rates(text: str) -> list[float | str]:
    from ops.bench.stats import parse_rates

    try:
        return parse_rates(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _feeds(text: str) -> list[str]:
    feeds = [x.strip() for x in text.split(",") if x.strip()]
    if not feeds or any(f not in ("http", "kafka") for f in feeds):
        raise argparse.ArgumentTypeError(f"{text!r}: expected http, kafka or http,kafka")
    return feeds


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
    return value


def _env_pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--worker-env {item!r}: expected NAME=VALUE")
        pairs[name.strip()] = value
    return pairs


def _out_default() -> Path:
    from ops.stack import StackConfig

    return StackConfig.from_env().state_dir / "bench" / time.strftime("%Y%m%d-%H%M%S")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's subcommands, on ``parser`` (``leadflow bench`` and ``python -m ops.bench`` share them)."""
    commands = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=None,
                        help="folder for results, logs and profiles (default .state/bench/<time>)")
    common.add_argument("--keep-stack", action="store_true", help="leave Kafka and Redis running afterwards")
    common.add_argument("--port", type=int, default=6190, help="first worker's HTTP port (default %(default)s; "
                                                              "more workers take the next ones)")
    common.add_argument("--partitions", type=int, default=8, help="partitions per topic (default %(default)s)")
    common.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the workers, repeatable: A/B a setting, e.g. "
                             "PRODUCER_LINGER=0.005 (Faust reads its settings' env names)")

    # The deployment a load or soak run feeds: the teams, their reps and how leads reach them.
    shape = argparse.ArgumentParser(add_help=False)
    shape.add_argument("--batch", type=int, default=100, help="most leads per HTTP request (default 100)")
    shape.add_argument("--teams", type=int, default=4, help="teams; leads spread over them by country (default 4)")
    shape.add_argument("--reps", type=int, default=10, help="reps per team (default 10)")
    shape.add_argument("--capacity", type=int, default=50, help="open leads per rep (default 50)")

    load = commands.add_parser("load", parents=[common, shape], help="throughput and latency at several rates",
                               description=_LOAD_DESCRIPTION, epilog=_LOAD_EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    load.add_argument("--rates", type=_rates, default="25,50,100,max,half",
                      help="leads/s per step, in order: numbers, max, half (default %(default)s)")
    load.add_argument("--feed", type=_feeds, default="http", dest="feeds",
                      help="http (batched POST /v1/leads), kafka (records on leads.inbound) or http,kafka "
                           "(default http)")
    load.add_argument("--workers", type=_csv_ints, default="1",
                      help="worker counts to measure, each a fresh deployment (default 1; try 1,2)")
    load.add_argument("--duration", type=float, default=20.0, help="seconds of feed per fixed-rate step (default 20)")
    load.add_argument("--max-leads", type=int, default=3000, help="leads offered at once in a max step (default 3000)")
    load.add_argument("--no-dispose", dest="dispose", action="store_false",
                      help="do not close leads after their webhook (reps then get the maximum capacity, "
                           "1000; the team state grows with every open lead)")
    load.add_argument("--passthrough-records", type=int, default=50_000,
                      help="records through the raw aiokafka baseline; 0 skips it (default 50000)")
    load.add_argument("--profile", action="store_true", help="py-spy the first worker during each max step")
    load.add_argument("--drain-timeout", type=float, default=120.0,
                      help="seconds to wait for the last webhooks of a step (default 120)")
    load.add_argument("--receiver-port", type=int, default=8190, help="the SDR receiver's port (default 8190)")

    restart = commands.add_parser("restart", parents=[common], help="recovery and kill -9 restart with a big table",
                                  description="Fill lead_state and sla_timers with --leads leads by producing "
                                              "their changelog records directly (valid LeadState/SlaTimer values "
                                              "built by the pure rules), then time: cold recovery of a fresh "
                                              "worker, and --kills restarts after kill -9, each until /readyz "
                                              "and until a new lead is assigned.")
    restart.add_argument("--leads", type=int, default=1_000_000, help="leads in the tables (default 1000000)")
    restart.add_argument("--kills", type=int, default=3, help="kill -9 / restart cycles (default 3)")
    restart.add_argument("--profile", action="store_true",
                         help="py-spy every (re)started worker until its first new webhook, idle time included")
    restart.add_argument("--reuse", metavar="APP_ID", default=None,
                         help="restart the deployment an earlier run filled (same --out, --port and --leads, "
                              "its stack kept): no fill, no cold restore")
    restart.add_argument("--receiver-port", type=int, default=8191,
                         help="the SDR receiver's port (default 8191; with --reuse, the port of the run that "
                              "filled it: the reps' webhook URLs are kept with the deployment)")
    restart.add_argument("--cold", action="store_true",
                         help="with --reuse: delete the kept data dir first, so the first start is a cold restore "
                              "of the changelogs already filled (repeatable A/B of cold restores)")

    hotspot = commands.add_parser("hotspot", parents=[common], help="one team's maximum routing rate",
                                  description="Flood one team's partition with RouteLead commands (what the lead "
                                              "agent sends) and count RouteLead applied per second by the team "
                                              "agent (leadflow_commands_processed_total), once the backlog is "
                                              "steady; plus the pure decision rate of rules.team on one core.")
    hotspot.add_argument("--routes", type=int, default=5000, help="RouteLead commands to send (default 5000)")
    hotspot.add_argument("--reps", type=int, default=10, help="reps in the team (default 10)")

    soak = commands.add_parser("soak", parents=[common, shape], help="a steady rate for a long time, window by window",
                               description=_SOAK_DESCRIPTION, epilog=_SOAK_EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    soak.add_argument("--rate", type=_positive, default=40.0, help="leads/s offered (default %(default)s)")
    soak.add_argument("--minutes", type=_positive, default=30.0, help="how long to feed (default %(default)s)")
    soak.add_argument("--window", type=_positive, default=60.0, dest="window_s",
                      help="seconds per measured window (default %(default)s)")
    soak.add_argument("--feed", choices=("http", "kafka"), default="http",
                      help="http (batched POST /v1/leads) or kafka (records on leads.inbound); default http")
    soak.add_argument("--workers", type=int, default=1, help="workers in the deployment (default 1)")
    soak.add_argument("--drain-timeout", type=float, default=120.0,
                      help="seconds to wait at the end for the last webhooks (default 120)")
    soak.add_argument("--receiver-port", type=int, default=8192, help="the SDR receiver's port (default 8192)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops.bench", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    return parser


def _say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}" if line else "", flush=True)


async def _stoppable(work: Coroutine[Any, Any, Any]) -> Any:
    """Run ``work``; SIGTERM (``timeout``, CI, ``kill``) and SIGINT cancel it, so its ``finally``
    blocks stop every worker, receiver and profiler it started. SIGINT is handled here too
    because a shell starts background jobs with SIGINT ignored, and Python keeps it ignored."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await work
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark ``args.bench`` names; the exit code."""
    out = args.out or _out_default()
    try:
        if args.bench == "load":
            from ops.bench.runner import LoadOptions, run_load

            options = LoadOptions(
                rates=args.rates if isinstance(args.rates, list) else _rates(args.rates),
                feeds=args.feeds if isinstance(args.feeds, list) else _feeds(args.feeds),
                workers=args.workers if isinstance(args.workers, list) else _csv_ints(args.workers),
                duration_s=args.duration, max_leads=args.max_leads, batch=args.batch, teams=args.teams,
                reps=args.reps, capacity=args.capacity, partitions=args.partitions,
                passthrough_records=args.passthrough_records, profile=args.profile, dispose=args.dispose,
                drain_timeout_s=args.drain_timeout, port=args.port, receiver_port=args.receiver_port, out=out,
                keep_stack=args.keep_stack, worker_env=_env_pairs(args.worker_env))
            asyncio.run(_stoppable(run_load(options, _say)))
        elif args.bench == "restart":
            from ops.bench.restart import run_restart

            asyncio.run(_stoppable(run_restart(leads=args.leads, kills=args.kills, partitions=args.partitions,
                                               port=args.port, out=out, keep_stack=args.keep_stack, say=_say,
                                               worker_env=_env_pairs(args.worker_env), profile=args.profile,
                                               reuse=args.reuse, cold=args.cold,
                                               receiver_port=args.receiver_port)))
        elif args.bench == "soak":
            from ops.bench.soak import SoakOptions, run_soak

            if args.window_s > args.minutes * 60:
                print(f"bench soak: --window {args.window_s:g} s is longer than --minutes {args.minutes:g}",
                      file=sys.stderr)
                return 2
            soak = SoakOptions(rate=args.rate, minutes=args.minutes, window_s=args.window_s, feed=args.feed,
                               workers=args.workers, batch=args.batch, teams=args.teams, reps=args.reps,
                               capacity=args.capacity, partitions=args.partitions, drain_timeout_s=args.drain_timeout,
                               port=args.port, receiver_port=args.receiver_port, out=out, keep_stack=args.keep_stack,
                               worker_env=_env_pairs(args.worker_env))
            asyncio.run(_stoppable(run_soak(soak, _say)))
        else:
            from ops.bench.hotspot import run_hotspot

            asyncio.run(_stoppable(run_hotspot(routes=args.routes, reps=args.reps, partitions=args.partitions,
                                               port=args.port, out=out, keep_stack=args.keep_stack, say=_say,
                                               worker_env=_env_pairs(args.worker_env))))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nbench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    except (RuntimeError, LeadflowError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))

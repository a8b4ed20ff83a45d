"""The ``leadflow`` command: run the local stack, a worker, or the whole demo."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from leadflow.errors import ConfigError, LeadflowError

__all__ = ["main", "build_parser"]

_EPILOG = """\
examples:
  leadflow stack up            start Kafka (KRaft) and Redis locally; idempotent
  leadflow stack status        what runs, with URLs and log files
  leadflow stack down kafka    stop Kafka alone (a broker outage); `leadflow stack up kafka` ends it
  leadflow worker --config teams.yaml
                               run one worker (HTTP API on :6066)
  LEADFLOW_WEB_PORT=6067 LEADFLOW_DATA_DIR=.state/w2 leadflow worker --config teams.yaml
                               a second worker in the same group (scale-out): the same
                               config, or the two route alike leads differently
  leadflow run                 the demo: stack, worker, SDR webhook receiver, lead feed, live view
  leadflow import leads.csv    import a CSV file of leads into a running worker
  leadflow bench load --rates 25,50,max,half
                               throughput and latency on the local stack (docs/PERFORMANCE.md)
  leadflow report -o report.html
                               a one-page HTML summary of the last 24 h from lead.events

environment (worker): LEADFLOW_BROKER, LEADFLOW_REDIS_URL, LEADFLOW_CONFIG, LEADFLOW_WEB_PORT,
  LEADFLOW_WEB_HOST (this worker's address for the others: set it on a multi-host deployment),
  LEADFLOW_DATA_DIR, LEADFLOW_API_KEYS (<key> or <key>:<scope>+<scope>, 16+ characters each),
  LEADFLOW_LEAD_ID_KEY (32+ characters: set before the first lead, never change it),
  LEADFLOW_DEFAULT_TEAM, LEADFLOW_WEBHOOK_ALLOW_PRIVATE; see streams/settings.py for the rest.
environment (stack): LEADFLOW_STATE_DIR, LEADFLOW_CACHE_DIR, LEADFLOW_KAFKA_PORT,
  LEADFLOW_KAFKA_CONTROLLER_PORT, LEADFLOW_REDIS_PORT.
"""


_STACK_UP_EPILOG = """\
examples:
  leadflow stack up            Kafka and Redis
  leadflow stack up kafka      Kafka alone, e.g. again after `leadflow stack down kafka`: same data,
                               same topics; a running worker reconnects by itself

Ports and folders come from LEADFLOW_KAFKA_PORT, LEADFLOW_KAFKA_CONTROLLER_PORT, LEADFLOW_REDIS_PORT,
LEADFLOW_STATE_DIR and LEADFLOW_CACHE_DIR: use the same ones as the `up` that started the stack.
"""

_STACK_DOWN_EPILOG = """\
examples:
  leadflow stack down          stop Kafka and Redis
  leadflow stack down kafka    stop Kafka alone, by the pid in <state dir>/kafka/kafka.pid:
                               a broker outage, as the fault tests make one. Workers stay up: the API
                               answers 503 with Retry-After and /readyz 503, /healthz stays 200;
                               `leadflow stack up kafka` ends it (docs/RELIABILITY.md)
  leadflow stack down redis    stop Redis alone: capture and routing go on without the cache
  leadflow stack down --wipe   stop both and delete their data (a fresh Kafka cluster next `up`)

Only a service this stack started (its pid file, with the process's start time) is stopped.
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
    up = stack_cmds.add_parser("up", help="start what is not running and wait until it answers",
                               description="Start the services that are not running (all, or those named)\n"
                                           "and wait until each really answers: Kafka takes a produce with\n"
                                           "acks=all and finds its group coordinator, Redis answers PING.\n"
                                           "A running service is left alone.",
                               epilog=_STACK_UP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument("services", nargs="*", metavar="SERVICE", type=_stack_service,
                    help="kafka and/or redis (default: both)")
    down = stack_cmds.add_parser("down", help="stop the services we started (by their pid files)",
                                 description="Stop the services this stack started (all, or those named):\n"
                                             "SIGTERM to the pid recorded in its pid file, SIGKILL if it has not\n"
                                             "exited after its stop timeout (Kafka 15 s, Redis 10 s). Never a\n"
                                             "process found by name: someone else's Kafka or Redis is never touched.",
                                 epilog=_STACK_DOWN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    down.add_argument("services", nargs="*", metavar="SERVICE", type=_stack_service,
                      help="kafka and/or redis (default: both)")
    down.add_argument("--wipe", action="store_true",
                      help="also delete the data of the services stopped (Kafka's topics, Redis's files)")
    stack_cmds.add_parser("status", help="show what runs, with URLs and logs; exit 3 if anything is stopped")

    worker = commands.add_parser("worker", help="run one Faust worker with the HTTP API",
                                 description="Run a leadflow worker: the Faust agents (intake, leads, teams, "
                                             "reps, notifier) and the HTTP API. Stops cleanly on Ctrl-C "
                                             "or SIGTERM.",
                                 epilog=_WORKER_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    worker.add_argument("--config", type=Path, help="YAML config (teams, reps, routing, API keys); "
                                                   "overrides LEADFLOW_CONFIG")
    worker.add_argument("--port", type=int, help="HTTP port; overrides LEADFLOW_WEB_PORT (default 6066)")
    worker.add_argument("--data-dir", type=Path, help="RocksDB folder; overrides LEADFLOW_DATA_DIR")
    worker.add_argument("--check-config", action="store_true",
                        help="check the settings (LEADFLOW_* variables) and the config file, and every environment "
                             "variable the file names (secrets, API keys), as the worker's start does; then exit")

    run = commands.add_parser("run", help="the demo: everything running, with a live view",
                              description="Start the stack, a worker with the demo config, a demo SDR "
                                          "webhook receiver and a demo lead feed, and show leads being "
                                          "routed live. Ctrl-C stops everything it started.",
                              epilog=_RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--leads", type=int, default=None, help="stop feeding after N leads (default: endless)")
    run.add_argument("--rate", type=float, default=2.0, help="leads per second (default 2)")
    run.add_argument("--port", type=int, default=6066, help="the worker's HTTP port (default 6066)")
    run.add_argument("--receiver-port", type=int, default=8090, help="the demo receiver's port (default 8090)")
    run.add_argument("--keep-stack", action="store_true", help="leave Kafka and Redis running afterwards")

    from ops.bench.cli import DESCRIPTION as bench_description, add_bench_arguments

    bench = commands.add_parser("bench", help="benchmarks: throughput/latency at several rates, restart, hot spot, soak",
                                description=bench_description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(bench)

    imp = commands.add_parser("import", help="import a CSV file of leads into a running worker",
                              description="Send a CSV file to a worker's POST /v1/leads/import, show progress "
                                          "while it is captured, then a summary with the first errors.",
                              epilog=_IMPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("file", type=Path, metavar="FILE", help="the CSV file; its first row names the columns")
    imp.add_argument("--url", default="http://localhost:6066", help="the worker (default %(default)s)")
    imp.add_argument("--key", help="the API key, with the capture scope (default: $LEADFLOW_API_KEY, which "
                                   "keeps it out of `ps`)")
    imp.add_argument("--source", help="source of rows without a source column (default: the API key's name)")
    imp.add_argument("--encoding", default="utf-8",
                     help="the file's character set (default utf-8; Excel on Windows often writes windows-1252)")
    report = commands.add_parser(
        "report", help="a one-page HTML summary: speed-to-lead, SLA compliance, funnel by source, rep load",
        description="Read lead.events from Kafka (a bounded time window) or scrape the workers' /metrics, and "
                    "write one self-contained HTML page with inline charts: speed-to-lead distribution (and "
                    "its system and rep parts), SLA compliance and breaches, the funnel by source, and the "
                    "load per rep (per team from metrics).",
        epilog=_REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("-o", "--output", type=Path, default=Path("leadflow-report.html"),
                        help="the HTML file to write (default %(default)s; '-' for standard output)")
    report.add_argument("--since", default="24h",
                        help="how far back to read lead.events: 30m, 24h, 7d (default %(default)s)")
    report.add_argument("--metrics", action="append", default=[], metavar="URL_OR_FILE",
                        help="summarize a worker's /metrics instead of lead.events (a URL such as "
                             "http://localhost:6066, or a saved scrape); repeat once per worker")
    report.add_argument("--broker", help="Kafka bootstrap (default $LEADFLOW_BROKER, else the local stack's: "
                                         "kafka://127.0.0.1:$LEADFLOW_KAFKA_PORT, 9092 unless set)")
    report.add_argument("--topic", help="the events topic (default: $LEADFLOW_TOPIC_PREFIX + lead.events)")
    report.add_argument("--max-events", type=int, default=1_000_000,
                        help="stop reading after this many events (default %(default)s)")
    return parser


_WORKER_EPILOG = """\
examples:
  leadflow worker --config teams.yaml --check-config    check first; prints "config OK: …"
  LEADFLOW_BROKER=kafka://k1:9092 LEADFLOW_REDIS_URL=redis://cache:6379/0 \\
    leadflow worker --config teams.yaml --port 6067 --data-dir .state/w2

--check-config checks what the worker's start checks, without Kafka: the LEADFLOW_* settings
(a bad value names its variable), the config file (each problem at file:line: path), and every
environment variable the file names (webhook secrets, API keys, CRM and provider credentials).
Warnings (a team named but not defined in the file, Facebook Lead Ads without access_token_env:
real leads are then answered 503, a missing LEADFLOW_LEAD_ID_KEY: lead ids are then plain hashes
of e-mails and phones) are printed and do not fail the check; the worker logs them at start. It
also warns at start about an API key without scopes (it may do everything).
At start the worker also checks that its data folder can be written and its port is free, and
waits up to 60 s for Kafka (a line per attempt), then stops naming LEADFLOW_BROKER; a broker
host name that does not exist stops it at once, naming LEADFLOW_BROKER and the host.

exit status: 0 the check passed, or the worker stopped cleanly; 2 invalid settings or config, or
the worker could not start (port in use, data folder, Kafka unreachable); 130 Ctrl-C before the
worker ran; 1 the worker failed while running (see its log); 75 the worker was paused (frozen VM,
SIGSTOP, suspend) longer than its Kafka session, so another worker owns its partitions now: it
exits without writing anything; restart it (docs/RELIABILITY.md, "paused workers"); 128 + the
signal (143 SIGTERM, 130 Ctrl-C) a stop that could not finish (Kafka gone under an agent's batch,
or a signal after the stop began): the worker ended at once, and what it had not committed is
read again after a restart.

On SIGTERM the worker answers /readyz 503 "stopping" at once and goes on serving for
LEADFLOW_SHUTDOWN_DELAY seconds (default 5) so a load balancer can take it out of rotation; a
second SIGTERM, or Ctrl-C, stops it at once; one after the stop began ends the process there and then.
"""

_RUN_EPILOG = """\
The stack listens on Kafka 9092 (and 9093, its controller) and Redis 6379, with its data in
.state/. To run the demo beside another stack, or with those ports taken, move it:
  LEADFLOW_KAFKA_PORT=19092 LEADFLOW_KAFKA_CONTROLLER_PORT=19093 LEADFLOW_REDIS_PORT=16379 \\
    LEADFLOW_STATE_DIR=.state/demo2 leadflow run --port 6076 --receiver-port 8091
(the same variables move `leadflow stack up | status | down`).

exit status: 0 the feed ended (--leads); 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (after stopping
everything it started); 2 it could not start (see the message).
"""

_REPORT_EPILOG = """\
examples:
  leadflow report                          last 24 h of lead.events from the local stack
  leadflow report --since 7d -o week.html  a week
  leadflow report --metrics http://localhost:6066 --metrics http://localhost:6067
                                           from both workers' counters (since they started;
                                           per team, as metrics have no per-rep labels)
  curl -s localhost:6066/metrics > scrape.txt && leadflow report --metrics scrape.txt

lead.events is exact (every assignment, contact and stage change with its rep and source);
metrics need no Kafka access and cover everything since the workers started. Every event names
its lead's first-touch source, so leads captured before the window count in speed, load and the
funnel under their own source (events written before first_source was added: "unknown").
exit status: 0 written, 2 could not read the input (Kafka unreachable, no such topic, bad URL).
"""

_IMPORT_EPILOG = """\
example:
  export LEADFLOW_API_KEY=...           # the key's name is the leads' default source
  leadflow import trade-show.csv --source trade-show-2026

  with trade-show.csv:
    E-mail,First Name,Last Name,Company,Job Title,Country
    ana.garcia@example.com,Ana,García,"Acme, Iberia",Head of Operations,ES

Column names are lead fields or common spellings (E-mail, Phone, First Name, Company, Job Title,
Country, Name = full name); other columns become attributes.
exit status: 0 every row accepted or duplicate, 1 some rows rejected, 2 the import did not run or
stopped part-way (usage, connection, refused by the worker).
"""


def _stack_service(name: str) -> str:
    """One SERVICE argument of `stack up|down`: kafka or redis."""
    from ops.stack.manager import SERVICES

    if name not in SERVICES:
        raise argparse.ArgumentTypeError(f"no service {name!r}: the stack has {' and '.join(SERVICES)}")
    return name


def _stack(args: argparse.Namespace) -> int:
    from ops.stack import StackConfig, stack_down, stack_status, stack_up

    cfg = StackConfig.from_env()
    if args.action == "up":
        status = stack_up(cfg, args.services or None)
        print(status)
        print(f"\nbroker: {cfg.kafka_url}   redis: {cfg.redis_url}")
    elif args.action == "down":
        stack_down(cfg, args.services or None, wipe=args.wipe)
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
        from streams.config import LEAD_ID_KEY_UNSET, load_config
        from streams.settings import Settings

        # What the worker's create_app does with its config, less Kafka: load and validate the file,
        # then build the lead policy, which first resolves every environment variable the config
        # names (secrets, API keys, providers, enrichment) and lists each one missing at its line.
        settings = Settings.from_env()
        config = load_config(settings.config_path)
        config.lead_policy(settings.default_team)
        warnings = config.warnings(settings.default_team)  # the worker logs the same at start
        if settings.lead_id_key is None:  # as create_app warns
            warnings.append(LEAD_ID_KEY_UNSET)
        for warning in warnings:
            print(f"leadflow: warning: {warning}", file=sys.stderr)
        reps = sum(len(t.reps) for t in config.teams)
        print(f"config OK: {len(config.teams)} team(s), {reps} rep(s), {len(config.api_keys)} API key(s)")
        return 0
    from streams import gc_tuning

    gc_tuning.start_up()  # the collector is back on once the worker's modules are loaded
    from streams.worker import main as worker_main

    worker_main()
    return 0


def _run(args: argparse.Namespace) -> int:
    from ops.demo.launch import launch_demo

    return launch_demo(leads=args.leads, rate=args.rate, port=args.port, receiver_port=args.receiver_port,
                       keep_stack=args.keep_stack)


class _Progress:
    """Rows done and the rate, on one refreshed line on a terminal, every few seconds otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream, self._tty = stream, stream.isatty()
        self._started = self._shown = time.monotonic()
        self.rows = 0

    def rate(self) -> float:
        return self.rows / max(time.monotonic() - self._started, 1e-6)

    def row(self) -> None:
        self.rows += 1
        now = time.monotonic()
        if now - self._shown >= (0.25 if self._tty else 5.0):
            self._shown = now
            end = "\r" if self._tty else "\n"
            print(f"  {self.rows:,} rows  {self.rate():,.0f} rows/s", end=end, file=self._stream, flush=True)

    def done(self) -> None:
        if self._tty and self.rows:
            print(" " * 40, end="\r", file=self._stream, flush=True)


#: The API's advice for a file in another encoding names an HTTP header; this command sets that header
#: from ``--encoding``, so its users are told about the option instead.
_ENCODING_ADVICE = "save the file as UTF-8, or name its encoding with --encoding, e.g. --encoding windows-1252"


def _cli_advice(code: object, text: object) -> object:
    """``text`` from the API with the CLI's advice where the API's would not fit this command."""
    if code == "bad_encoding" and isinstance(text, str):
        # "row 3 (line 4) is not valid utf-8 at byte 7 of the line; <the API's advice>"
        return f"{text.split('; ', 1)[0]}; {_ENCODING_ADVICE}"
    return text


def _describe_error(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "no details"
    code = error.get("code")
    lines = [f"{code}: {_cli_advice(code, error.get('message'))}"]
    lines += [f"  {f.get('field')}: {_cli_advice(code, f.get('reason'))}"
              for f in error.get("fields", []) if isinstance(f, dict)]
    return "\n".join(lines)


async def _upload_csv(args: argparse.Namespace, key: str) -> int:
    import aiohttp
    import orjson

    url = f"{args.url.rstrip('/')}/v1/leads/import"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": f"text/csv; charset={args.encoding}"}
    progress = _Progress(sys.stderr)
    summary: dict[str, Any] | None = None
    stopped: Any = None
    errors: list[str] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with args.file.open("rb") as body:  # aiohttp reads it in a thread, chunk by chunk
                async with session.post(url, data=body, headers=headers,
                                        params={"source": args.source} if args.source else {}) as response:
                    if response.status != 202:
                        try:
                            detail = _describe_error(await response.json(content_type=None))
                        except ValueError:
                            detail = (await response.text())[:300]
                        print(f"leadflow import: the worker refused the file ({response.status})\n{detail}",
                              file=sys.stderr)
                        return 2
                    async for raw in response.content:
                        line = orjson.loads(raw)
                        if "row" in line:
                            progress.row()
                            if line["status"] == "rejected" and len(errors) < 10:
                                reasons = "; ".join(f"{e['field']}: {e['reason']}" for e in line["errors"])
                                errors.append(f"  row {line['row']}: {reasons}")
                        elif "columns" in line:
                            columns = ", ".join(f"{name} -> {field}" for name, field in line["columns"].items())
                            print(f"columns: {columns}", file=sys.stderr)
                        elif "summary" in line:
                            summary, stopped = line["summary"], line.get("error")
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        progress.done()
        print(f"leadflow import: {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    progress.done()
    if summary is None:
        print("leadflow import: the worker ended the answer without a summary; rows may be missing", file=sys.stderr)
        return 2
    print(f"{args.file}: {summary['rows']:,} rows ({progress.rate():,.0f} rows/s): {summary['accepted']:,} "
          f"accepted, {summary['duplicate']:,} duplicate, {summary['rejected']:,} rejected")
    if errors:
        print("first errors:\n" + "\n".join(errors))
    if stopped is not None:
        print(f"stopped before row {summary.get('resume_from_row')}: {_describe_error({'error': stopped})}\n"
              "rows before it are stored; fix the file and import the rest", file=sys.stderr)
        return 2
    return 1 if summary["rejected"] else 0


def _import(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("LEADFLOW_API_KEY", "")
    if not key:
        print("leadflow import: no API key: set LEADFLOW_API_KEY (or pass --key)", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"leadflow import: {args.file}: no such file", file=sys.stderr)
        return 2
    return asyncio.run(_upload_csv(args, key))


def _report(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from ops.report import configured_spend, parse_window, render_html, run_report
    from streams.settings import Settings

    try:
        since_s = parse_window(args.since)
    except ValueError as exc:
        print(f"leadflow report: {exc}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    broker = args.broker  # None: $LEADFLOW_BROKER or the local stack's (ops.report.default_broker)
    topic = args.topic or f"{settings.topic_prefix}lead.events"
    try:
        # The events carry no spend: the config's (LEADFLOW_CONFIG) gives cost and ROI per source.
        spend = {} if args.metrics else configured_spend(settings.config_path)
    except ConfigError as exc:
        print(f"leadflow report: {exc}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(run_report(broker=broker, topic=topic, since_s=since_s, metrics=args.metrics,
                                         max_events=args.max_events, spend=spend))
    except Exception as exc:  # Kafka, HTTP and file errors alike: say what could not be read
        print(f"leadflow report: could not read {'the metrics' if args.metrics else topic}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    page = render_html(summary, datetime.now(timezone.utc))
    if str(args.output) == "-":
        sys.stdout.write(page)
    else:
        args.output.write_text(page, encoding="utf-8")
        print(f"{args.output}: {summary.origin}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "stack":
            return _stack(args)
        if args.command == "worker":
            return _worker(args)
        if args.command == "import":
            return _import(args)
        if args.command == "bench":
            from ops.bench.cli import run as run_bench

            return run_bench(args)
        if args.command == "report":
            return _report(args)
        return _run(args)
    except LeadflowError as exc:
        print(f"leadflow: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

"""The demo's live view: ``lead.events`` from Kafka rendered as a small dashboard redrawn in place.

``render`` and ``summary_line`` are pure (stats in, text out); ``LiveView`` only consumes and
draws. On a terminal the block is redrawn about twice a second; otherwise one line every 5 s.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ops.demo.disposer import Disposition
from ops.demo.feed import FeedResult
from ops.demo.receiver import Delivery
from ops.demo.stats import Decision, DemoStats, percentile
from sla.clock import Clock, SystemClock

__all__ = ["DEFAULT_TOPIC", "LiveView", "parse_broker", "render", "summary_line"]

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "leadflow.lead.events"
_BAR = 16
_ASCII = str.maketrans({"█": "#", "░": ".", "→": "->", "…": "~", "·": "|", "—": "-", "⋯": ".."})


def parse_broker(url: str) -> list[str]:
    """``kafka://host:port[;host:port…]`` (Faust's form, as in ``LEADFLOW_BROKER``) → aiokafka's list."""
    hosts = [part.strip().removeprefix("kafka://") for part in url.replace(",", ";").split(";")]
    if not all(hosts):
        raise ValueError(f"not a broker URL: {url!r} (expected kafka://host:port)")
    return hosts


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def _pcts(values: Sequence[float]) -> str:
    return f"p50 {_secs(percentile(values, 50))}  p95 {_secs(percentile(values, 95))}"


def _uptime(stats: DemoStats, now: datetime) -> str:
    seconds = max(0, int((now - stats.started_at).total_seconds()))
    return str(timedelta(seconds=seconds))


def _freshness(stats: DemoStats, now: datetime) -> str:
    if stats.last_event_at is None:
        return "no events yet"
    return f"last event {max(0, int((now - stats.last_event_at).total_seconds()))}s ago"


def _fit(text: str, width: int, ellipsis: str = "…") -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ellipsis


def _bar(open_leads: int, capacity: int | None) -> str:
    if not capacity:
        return "░" * _BAR + f"  {open_leads}/?"
    filled = min(_BAR, round(_BAR * open_leads / capacity))
    return "█" * filled + "░" * (_BAR - filled) + f"  {open_leads}/{capacity}"


def _decision_line(d: Decision, tz: tzinfo | None) -> str:
    # The reason goes last: on a narrow terminal it is the part that gets cut.
    company = _fit(d.company or "", 14).ljust(14)
    if d.rep_id is None:
        target, outcome = f"⋯ queued ({d.team_id})", "waits for capacity"
    else:
        target = f"→ {d.rep_id} ({d.team_id})"
        outcome = ("notify failed, retrying" if d.notify_failed
                   else "notifying…" if d.notify_s is None else f"notified in {_secs(d.notify_s)}")
    reason = d.reason.replace("weighted round robin", "wrr")
    return (f"  {d.at.astimezone(tz):%H:%M:%S}  {d.lead_id[:7]}…  {company}  {_fit(target, 20).ljust(20)}"
            f"  {outcome.ljust(18)}  {reason}")


def _teams(stats: DemoStats) -> list[str]:
    return sorted(set(stats.waiting) | {d.team_id for d in stats.recent})


def render(stats: DemoStats, now: datetime, *, width: int = 120, unicode: bool = True,
           tz: tzinfo | None = None) -> list[str]:
    """The dashboard as lines (no ANSI codes): totals, latency, rep load, queues, recent decisions."""
    c, w, f = stats.counts, stats.webhooks, stats.feed
    lines = [f"leadflow demo · live · up {_uptime(stats, now)} · {_freshness(stats, now)} · Ctrl-C to stop"]
    if stats.status:
        lines.append(f"  ! {stats.status}")
    lines += [
        f"feed      sent {f['sent']} · accepted {f['accepted']} · duplicate {f['duplicate']}"
        f" · rejected {f['rejected']} · errors {f['error']}"
        + (f"   (last error: {stats.last_feed_error})" if stats.last_feed_error else ""),
        f"leads     captured {c['captured']} · touches {c['touched']} · reopened {c['reopened']}"
        f" · queued {c['queued']} · assigned {c['assigned']} · notified {c['notified']}"
        f" · failed {c['notification_failed']} · closed {c['dispositioned']}"
        + (f" · unreadable {c['unreadable']}" if c["unreadable"] else ""),
        f"speed     capture→assigned {_pcts(stats.routing_s)}    capture→notified {_pcts(stats.notify_s)}",
        f"webhooks  received {w['received']} · redelivered {w['redelivered']} · bad signature {w['bad_signature']}"
        f" · simulated outage {w['simulated_outage']}    capture→received p50 {_secs(percentile(stats.received_s, 50))}",
    ]
    reps = sorted(set(stats.capacities) | set(stats.open_by_rep))
    for index, rep_id in enumerate(reps or ["—"]):
        label = "reps      " if index == 0 else " " * 10
        load = _bar(stats.open_leads(rep_id), stats.capacities.get(rep_id)) if reps else "no reps yet"
        lines.append(f"{label}{rep_id[:8].ljust(8)} {load}")
    teams = _teams(stats)
    lines.append("queues    " + (" · ".join(f"{t} {stats.queue_depth(t)} waiting" for t in teams) or "none yet"))
    worked = stats.worked
    lines.append(f"worked    {sum(worked.values())} leads closed by reps (nurture {worked['nurture']}"
                 f" · disqualified {worked['disqualified']} · failed {worked['failed']})")
    lines += ["", "recent routing decisions"]
    lines += [_decision_line(d, tz) for d in reversed(stats.recent)] or ["  (waiting for the first lead)"]
    if not unicode:
        lines = [line.translate(_ASCII) for line in lines]
    return [_fit(line, width, "…" if unicode else "~") for line in lines]


def summary_line(stats: DemoStats, now: datetime, *, tz: tzinfo | None = None) -> str:
    """One plain line for logs and pipes (no bars, no PII)."""
    c = stats.counts
    loads = " ".join(f"{r} {stats.open_leads(r)}/{stats.capacities.get(r, '?')}"
                     for r in sorted(set(stats.capacities) | set(stats.open_by_rep)))
    waiting = sum(stats.queue_depth(t) for t in stats.waiting)
    return (f"[{now.astimezone(tz):%H:%M:%S}] up {_uptime(stats, now)} | sent {stats.feed['sent']}"
            f" captured {c['captured']} touches {c['touched']} assigned {c['assigned']} notified {c['notified']}"
            f" failed {c['notification_failed']} closed {c['dispositioned']} waiting {waiting}"
            f" | assign {_pcts(stats.routing_s)} | notify {_pcts(stats.notify_s)} | load {loads or '-'}"
            + (f" | {stats.status}" if stats.status else ""))


class LiveView:
    """Consume ``lead.events`` (no consumer group, from the view's start time) and draw the stats."""

    def __init__(
        self,
        broker: str,
        capacities: Mapping[str, int],
        *,
        topic: str = DEFAULT_TOPIC,
        out: TextIO | None = None,
        tty: bool | None = None,
        refresh_s: float = 0.5,
        summary_every_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._bootstrap = parse_broker(broker)
        self._topic = topic
        self._out = out or sys.stdout
        self._tty = self._out.isatty() if tty is None else tty
        self._unicode = "utf" in (getattr(self._out, "encoding", None) or "utf-8").lower()
        self._every = refresh_s if self._tty else summary_every_s
        self._clock: Clock = clock or SystemClock()
        self.stats = DemoStats(started_at=self._clock.now(), capacities=dict(capacities))
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._muted: int | None = None
        self._drawn = 0  # lines of the block currently on screen
        # Where to resume after a reconnect, so no event is counted twice.
        self._next_offsets: dict[TopicPartition, int] = {}

    def on_delivery(self, delivery: Delivery) -> None:
        self.stats.on_delivery(delivery)

    def on_feed_result(self, result: FeedResult) -> None:
        self.stats.on_feed_result(result)

    def on_disposition(self, result: Disposition) -> None:
        self.stats.on_disposition(result)

    async def start(self, *, ready_timeout_s: float = 15.0) -> None:
        """Start consuming and drawing; wait (bounded) until positioned on the topic."""
        self.stats.started_at = self._clock.now()
        if self._tty:
            # aiokafka logs every reconnect attempt; on a terminal those lines would tear the
            # block apart. The header's "last event … ago" and status line say the same, quietly.
            kafka_log = logging.getLogger("aiokafka")
            self._muted = kafka_log.level
            kafka_log.setLevel(logging.CRITICAL)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume()), loop.create_task(self._draw_loop())]
        try:
            await asyncio.wait_for(self._ready.wait(), ready_timeout_s)
        except TimeoutError:
            pass  # not fatal: we seek by start time, so nothing is missed once the topic appears

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._draw(final=True)
        if self._muted is not None:
            logging.getLogger("aiokafka").setLevel(self._muted)
            self._muted = None

    async def _draw_loop(self) -> None:
        if self._tty:
            self._out.write("\x1b[?25l")  # hide the cursor while redrawing
        else:
            self._out.write(f"leadflow demo: one summary line every {self._every:.0f} s (output is not a terminal)\n")
        while True:
            self._draw()
            await asyncio.sleep(self._every)

    def _draw(self, *, final: bool = False) -> None:
        now = self._clock.now()
        if not self._tty:
            self._out.write(summary_line(self.stats, now) + "\n")
            self._out.flush()
            return
        width = shutil.get_terminal_size((120, 24)).columns
        lines = render(self.stats, now, width=max(20, width - 1), unicode=self._unicode)
        up = f"\r\x1b[{self._drawn}A" if self._drawn else ""
        body = "".join(f"\x1b[2K{line}\n" for line in lines)
        self._out.write(up + body + "\x1b[J" + ("\x1b[?25h" if final else ""))
        self._out.flush()
        self._drawn = len(lines)

    async def _consume(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="latest", client_id="leadflow-demo-view", metadata_max_age_ms=2_000,
            )
            try:
                await consumer.start()
                await self._position(consumer)
                self.stats.status = None
                self._ready.set()
                async for message in consumer:
                    self._on_message(message.value)
                    self._next_offsets[TopicPartition(message.topic, message.partition)] = message.offset + 1
            except (KafkaError, OSError) as exc:
                self.stats.status = f"kafka unavailable ({type(exc).__name__}); retrying"
            finally:
                await consumer.stop()
            await asyncio.sleep(2.0)

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        # Subscribing to a topic that does not exist yet would auto-create it with the broker's
        # default partition count, behind the worker's back: wait for the worker to create it.
        while self._topic not in await consumer.topics():
            self.stats.status = f"waiting for topic {self._topic} (is the worker up?)"
            await asyncio.sleep(0.5)
        consumer.subscribe([self._topic])
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        # Start where the demo started: older runs stay out, and nothing since the view began is lost.
        since = int(self.stats.started_at.timestamp() * 1000)
        partitions: set[TopicPartition] = set(consumer.assignment())
        offsets = await consumer.offsets_for_times({tp: since for tp in partitions})
        for tp in partitions:
            if tp in self._next_offsets:  # a reconnect: carry on where we were
                consumer.seek(tp, self._next_offsets[tp])
                continue
            found = offsets.get(tp)
            if found is None:
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, found.offset)

    def _on_message(self, value: bytes | None) -> None:
        try:
            event = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            self.stats.counts["unreadable"] += 1
            return
        if not isinstance(event, dict):
            self.stats.counts["unreadable"] += 1
            return
        try:
            self.stats.on_event(event)
        except Exception:  # one odd event must not stop the view; it is counted and shown
            log.debug("unreadable lead event", exc_info=True)
            self.stats.counts["unreadable"] += 1

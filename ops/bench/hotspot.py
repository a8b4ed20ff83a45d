"""``leadflow bench hotspot``: the design's hot spot, one team, measured.

A team is one key of ``team.commands``, so it lives in one partition, owned by one worker, where
one agent applies its commands one at a time. However many workers and partitions there are,
one team's routing cannot go faster than that agent on that worker: this measures how fast.

1. **pure**: ``rules.team.apply`` in this process, one core, no I/O: a RouteLead (rep chosen)
   then the ReleaseLead that frees the rep again, for a team of ``--reps`` available reps; and
   the same with the codec round trips the agent pays per command (a table read decodes the
   ``TeamState``, a table write encodes it; the route's ``Holding`` is encoded when written and
   decoded when the release reads it).
2. **in the worker**: a fresh worker with one team; ``--routes`` RouteLead commands are produced
   straight onto ``team.commands`` (as the lead agent would send them) as fast as Kafka takes
   them, so the team agent always has a backlog. Each becomes a ``LeadAssigned`` for a lead the
   lead agent never captured, which it hands back (``ReleaseLead``: the capacity comes back, as a
   disposition would), so the team agent applies two commands per route, as in steady state.
   The rate is read from the worker's own counter, ``leadflow_commands_processed_total{agent="team"}``,
   between 10% and 90% of the routes.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ops.bench.harness import Deployment, Sampler, Say, Stack, bench_config, load_average

__all__ = ["run_hotspot", "pure_route_rate", "processed_counts"]


class _Side:
    """The team's side table in the pure bench: nobody ever waits (reps free up after every
    route), and the holdings are kept as a table store keeps them (encoded, with ``codec``)."""

    def __init__(self, codec: bool) -> None:
        from streams.codec import decode, encode

        self.encode: Callable[[Any], Any] = encode if codec else (lambda value: value)
        self.decode: Callable[[Any], Any] = decode if codec else (lambda value: value)
        self.holdings: dict[str, Any] = {}

    def get(self, seq: int) -> Any:
        return None

    def contains(self, route_id: str) -> bool:
        return False

    def seq_of(self, route_id: str) -> int | None:
        return None

    def holding(self, route_id: str) -> Any:
        value = self.holdings.get(route_id)
        return None if value is None else self.decode(value)

    def write(self, transition: Any) -> Any:
        for write in transition.holding_writes:
            if write.holding is None:
                self.holdings.pop(write.route_id, None)
            else:
                self.holdings[write.route_id] = self.encode(write.holding)
        return transition.state


def pure_route_rate(reps: int, routes: int, *, codec: bool, open_leads: int = 0) -> float:
    """Routes per second of ``rules.team.apply`` (route + release), optionally with the codec round
    trip, for a team already holding ``open_leads`` open leads (they stay open during the measure)."""
    from rules.commands import LeadAssigned, ReleaseLead, RepProfile, RouteLead, SetPresence, UpsertRep
    from rules.team import apply
    from streams.codec import decode, encode

    now = datetime.now(timezone.utc)
    queue = _Side(codec)
    state: Any = None
    for r in range(reps):
        profile = RepProfile(rep_id=f"r{r:02d}", team_id="t00", capacity=1000)
        state = apply(state, UpsertRep(team_id="t00", profile=profile, at=now), now, queue).state
        available = SetPresence(team_id="t00", rep_id=f"r{r:02d}", status="available", at=now)
        state = apply(state, available, now, queue).state
    for index in range(open_leads):
        lead_id = f"ld_open{index:020x}"
        state = queue.write(apply(state, RouteLead(team_id="t00", lead_id=lead_id, route_id=f"{lead_id}:1:1",
                                                   requested_at=now), now, queue))
    began = time.perf_counter()
    for index in range(routes):
        lead_id = f"ld_{index:024x}"
        route = RouteLead(team_id="t00", lead_id=lead_id, route_id=f"{lead_id}:1:1", requested_at=now)
        if codec:
            state = decode(encode(state))
        transition = apply(state, route, now, queue)
        state = queue.write(transition)
        assigned = next(o.value for o in transition.outgoing if isinstance(o.value, LeadAssigned))
        release = ReleaseLead(team_id="t00", lead_id=lead_id, route_id=route.route_id, rep_id=assigned.rep_id,
                              reason="bench", at=now)
        if codec:
            state = decode(encode(state))
        state = queue.write(apply(state, release, now, queue))
    return routes / (time.perf_counter() - began)


def processed_counts(metrics_text: str, agent: str = "team") -> dict[str, float]:
    """``{command: count}`` from ``leadflow_commands_processed_total{agent=…, command=…}`` lines."""
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith("leadflow_commands_processed_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        fields = dict(part.split("=", 1) for part in labels[labels.index("{") + 1:labels.rindex("}")].split(","))
        if fields.get("agent", "").strip('"') == agent:
            counts[fields.get("command", "").strip('"')] = float(value)
    return counts


async def _flood(bootstrap: str, topic: str, routes: int, say: Say) -> float:
    from aiokafka import AIOKafkaProducer

    from rules.commands import RouteLead
    from streams.codec import encode

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, acks="all")
    await producer.start()
    began = time.monotonic()
    try:
        now = datetime.now(timezone.utc)
        futures = []
        for index in range(routes):
            lead_id = f"ld_{index:024x}"
            value = encode(RouteLead(team_id="t00", lead_id=lead_id, route_id=f"{lead_id}:1:1", requested_at=now))
            futures.append(await producer.send(topic, value, key=b"t00"))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    took = time.monotonic() - began
    say(f"  {routes:,} RouteLead on {topic} in {took:.1f} s (all in one partition: the team's)")
    return took


async def run_hotspot(*, routes: int, reps: int, partitions: int, port: int, out: Path, keep_stack: bool,
                      say: Say, worker_env: dict[str, str] | None = None) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    from ops.bench.runner import machine_facts

    result: dict[str, object] = {"reps": reps, "routes": routes, "loadavg_before": load_average(),
                                 "machine": machine_facts(), "worker_env": worker_env or {}}
    pure: dict[str, float] = {}
    for codec in (False, True):
        for open_leads in (0, 250, 1000):
            rate = pure_route_rate(reps, 1000 if open_leads else 3000, codec=codec, open_leads=open_leads)
            pure[f"{'codec' if codec else 'rules'}_open{open_leads}"] = round(rate, 1)
            say(f"pure rules.team.apply (route + release{' + TeamState decode/encode' if codec else ''}), "
                f"{open_leads:,} open leads, one core: {rate:,.0f} routes/s")
    result["pure_routes_per_s"] = pure
    with Stack(say, keep=keep_stack) as stack:
        config, _ = bench_config(1, reps, 1000, 9)
        deployment = Deployment(stack.config, out, config, partitions=partitions, extra_env=dict(worker_env or {}))
        worker = deployment.add_worker(port)
        try:
            deployment.start(worker)
            await deployment.wait_ready(worker)
            await asyncio.sleep(3.0)  # the config's reps reach the team
            sampler = Sampler(lambda: [p for p in [worker.pid] if p is not None])
            await sampler.start()
            flood = asyncio.get_running_loop().create_task(
                _flood(stack.config.kafka_bootstrap, f"{deployment.prefix}team.commands", routes, say))
            marks: list[tuple[float, float, float]] = []
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                began, last_say = time.monotonic(), 0.0
                while time.monotonic() - began < 900:
                    async with session.get(f"{worker.url}/metrics") as response:
                        counts = processed_counts(await response.text())
                    done = counts.get("RouteLead", 0.0)
                    marks.append((time.monotonic(), done, counts.get("ReleaseLead", 0.0)))
                    if time.monotonic() - last_say > 3:
                        last_say = time.monotonic()
                        say(f"  … {done:,.0f}/{routes:,} routed, {counts.get('ReleaseLead', 0):,.0f} released")
                    if done >= routes:
                        break
                    await asyncio.sleep(0.5)
            await flood
            resources = await sampler.stop()
        finally:
            deployment.stop_all()
    # The hand-backs queue behind the routes in the team's partition, so open leads pile up as the
    # flood goes on: the rate is reported per fifth of the backlog, with the open leads it had.
    windows: list[dict[str, object]] = []
    rates: list[float] = []
    for fifth in range(5):
        low, high = routes * fifth / 5, routes * (fifth + 1) / 5
        inside = [m for m in marks if low <= m[1] <= high]
        if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
            rate = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
            open_now = sum(m[1] - m[2] for m in inside) / len(inside)
            rates.append(rate)
            windows.append({"routes": f"{low:.0f}-{high:.0f}", "routes_per_s": round(rate, 1),
                            "open_leads_mean": round(open_now)})
            say(f"  routes {low:,.0f}–{high:,.0f}: {rate:,.1f} routes/s with ~{open_now:,.0f} open leads in the team")
    best = round(max(rates, default=0.0), 1)
    result.update(worker_windows=windows, worker_routes_per_s_best=best, worker_cpu_mean_pct=resources.cpu_mean_pct,
                  loadavg_after=load_average())
    say(f"one team in the worker: up to {best:,.1f} routes/s (RouteLead applied), "
        f"worker cpu {resources.cpu_mean_pct or 0:.0f}% mean")
    path = out / f"hotspot-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    say(f"results: {path}")
    return result

"""GC pause probe for a leadflow worker: a debug tool, loaded only when its folder is on PYTHONPATH.

With ``GCPROBE_OUT`` set, every collection's generation and duration are recorded (``gc.callbacks``)
and a JSON line per ``GCPROBE_INTERVAL`` seconds (default 5) is appended to ``GCPROBE_OUT``: per
generation the count, the total and the longest pause in that interval. A stop-the-world pause
holds every agent and the web server at once, so it lands straight in the latency tail.

    leadflow bench load --rates 50 --feed kafka --worker-env PYTHONPATH=$PWD/ops/bench/gcprobe \\
        --worker-env GCPROBE_OUT=$PWD/.state/gc.jsonl
"""
from __future__ import annotations

import gc
import json
import os
import threading
import time

__all__: list[str] = []

_OUT = os.environ.get("GCPROBE_OUT")


def _install(out: str) -> None:
    interval = float(os.environ.get("GCPROBE_INTERVAL", "5"))
    lock = threading.Lock()
    stats: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            with lock:
                stats[info["generation"]].append(time.perf_counter() - started[0])

    def report() -> None:
        while True:
            time.sleep(interval)
            with lock:
                line: dict[str, object] = {"t": round(time.time(), 1), "frozen": gc.get_freeze_count()}
                for gen, pauses in stats.items():
                    line[f"gen{gen}"] = {"n": len(pauses), "total_ms": round(sum(pauses) * 1000, 1),
                                         "max_ms": round(max(pauses, default=0) * 1000, 1)}
                    pauses.clear()
            with open(out, "a") as f:
                f.write(json.dumps(line) + "\n")

    gc.callbacks.append(on_gc)
    threading.Thread(target=report, name="gcprobe", daemon=True).start()


if _OUT:
    _install(_OUT)

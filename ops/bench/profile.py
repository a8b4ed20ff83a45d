"""Sample a worker with py-spy while a step runs, and summarize where its CPU time goes.

py-spy (the ``bench`` extra) attaches to the running worker by pid, samples its Python stacks
without changing its code, and writes collapsed stacks (``--format raw``: one line per unique
stack, ``frame;frame;… count``). ``summarize`` turns them into the tables PERFORMANCE.md shows:
the functions with the most *self* samples (where the CPU is spent) and the most *inclusive*
samples (what the time is spent for), and the share per area (our code, Faust, aiokafka,
pydantic, RocksDB, the event loop). The collapsed file itself loads into speedscope or
``flamegraph.pl`` for a flame graph.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ops.stack.process import start_process

__all__ = ["Profile", "area_of", "parse_collapsed", "summarize", "render_summary", "start_pyspy", "stop_pyspy",
           "pyspy_path"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")

#: Areas by the first matching file-path fragment (py-spy shortens paths to the package part).
_AREAS: tuple[tuple[str, str], ...] = (
    ("rules/", "leadflow pure rules"), ("sla/", "leadflow sla"), ("streams/", "leadflow streams"),
    ("connectors/", "leadflow connectors"), ("ops/", "leadflow ops"), ("pydantic", "pydantic (decode)"),
    ("orjson", "orjson"), ("rocksdict", "rocksdb"), ("faust/", "faust"), ("mode/", "faust (mode)"),
    ("aiokafka/", "aiokafka"), ("kafka/", "aiokafka"), ("aiohttp/", "aiohttp"), ("redis/", "redis client"),
    ("prometheus_client", "prometheus client"), ("asyncio/", "asyncio event loop"), ("selectors", "asyncio event loop"),
)
_OTHER, _LOOP = "other (stdlib, …)", "asyncio event loop"


def area_of(frame: str) -> str:
    match = _FRAME.match(frame)
    path = match.group("file") if match else frame
    for fragment, area in _AREAS:
        if fragment in path:
            return area
    return _OTHER


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """``[(frames outermost first, samples)]`` from py-spy's raw output; bad lines are skipped."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


@dataclass(frozen=True, slots=True)
class Profile:
    samples: int
    self_top: list[tuple[str, int]]
    inclusive_top: list[tuple[str, int]]
    areas: list[tuple[str, int]]  # self samples per area
    #: Samples per callback the event loop was running (the frame right under ``Handle._run``):
    #: an agent, a timer, the producer's sender, the web server…
    tasks: list[tuple[str, int]] = field(default_factory=list)


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = re.sub(r":\d+$", "", match.group("file"))
    return f"{match.group('func')} ({file})"


def summarize(stacks: Iterable[tuple[list[str], int]], top: int = 15) -> Profile:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        # Thread/process header frames (py-spy may prefix one) are not functions.
        self_counts[_function(leaf)] += count
        areas[_charged_area(frames)] += count
        for name in {_function(f) for f in _below_dispatch(frames) if area_of(f).startswith("leadflow")}:
            inclusive[name] += count
        tasks[_task_of(frames)] += count
    return Profile(total, self_counts.most_common(top), inclusive.most_common(top), areas.most_common(),
                   tasks.most_common(top))


def _below_dispatch(frames: list[str]) -> list[str]:
    """The frames of the callback the event loop was running (empty outside a callback)."""
    dispatch = [i for i, f in enumerate(frames) if f.startswith("Handle._run ")]
    return frames[dispatch[-1] + 1:] if dispatch else []


def _task_of(frames: list[str]) -> str:
    """The callback, named by its first leadflow frame when it has one (an agent rather than
    Faust's actor wrapper), else by its own first frame."""
    if any(f.startswith(("Thread._bootstrap ", "ServiceThread.")) for f in frames):
        return "(a thread of its own: Faust runs the Kafka consumer in one)"
    below = _below_dispatch(frames)
    if not below:
        return "(event loop waiting in select)" if "selectors.py" in frames[-1] else "(event loop itself)"
    ours = next((f for f in below if area_of(f).startswith("leadflow")), None)
    return _function(ours or below[0])


def _charged_area(frames: list[str]) -> str:
    """The area a sample's time is charged to: the leaf's, unless the leaf is in the stdlib or
    asyncio, in which case the nearest library or leadflow frame above it (a socket write made by
    aiokafka's sender is aiokafka's) up to the event loop's dispatch; waiting in ``select`` is idle."""
    if "selectors.py" in frames[-1]:
        return "idle (event loop waiting in select)"
    for frame in reversed(frames):
        area = area_of(frame)
        if area not in (_OTHER, _LOOP):
            return area
        if "Handle._run" in frame or "_run_once" in frame:
            return _LOOP
    return area_of(frames[-1])


def render_summary(profile: Profile) -> str:
    def pct(n: int) -> str:
        return f"{100 * n / profile.samples:5.1f}%" if profile.samples else "  n/a"

    lines = [f"{profile.samples:,} samples", "", "self time by area:"]
    lines += [f"  {pct(n)}  {name}" for name, n in profile.areas]
    lines += ["", "top functions by self time:"]
    lines += [f"  {pct(n)}  {name}" for name, n in profile.self_top]
    lines += ["", "time per event-loop callback (agents, timers, the producer's sender, the web server):"]
    lines += [f"  {pct(n)}  {name}" for name, n in profile.tasks]
    lines += ["", "leadflow functions by inclusive time:"]
    lines += [f"  {pct(n)}  {name}" for name, n in profile.inclusive_top]
    return "\n".join(lines) + "\n"


def pyspy_path() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_pyspy(pid: int, output: Path, *, rate: int = 100) -> subprocess.Popen[bytes]:
    binary = pyspy_path()
    if binary is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    return start_process([binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                          "--nolineno", "--nonblocking", "--output", str(output)],
                         log_path=output.with_suffix(".log"))


def stop_pyspy(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGINT makes py-spy write its output and exit; SIGKILL only if it does not."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

"""Compare the first and last tracemalloc snapshots the memory probe wrote: what the Python heap gained.

    python ops/bench/memprobe/snapdiff.py .state/probe.jsonl [lines]
"""
from __future__ import annotations

import glob
import sys
import tracemalloc

__all__ = ["main"]


def main(out: str, lines: int = 15) -> None:
    paths = sorted(glob.glob(f"{out}.*.snap"))
    if len(paths) < 2:
        raise SystemExit(f"need two snapshots {out}.NNNN.snap, found {len(paths)}")
    first, last = tracemalloc.Snapshot.load(paths[0]), tracemalloc.Snapshot.load(paths[-1])
    total = [sum(s.size for s in snap.statistics("filename")) / 1e6 for snap in (first, last)]
    print(f"{paths[0]} -> {paths[-1]}: traced {total[0]:.1f} MB -> {total[1]:.1f} MB")
    for group in ("filename", "lineno"):
        print(f"--- growth by {group}")
        for stat in last.compare_to(first, group)[:lines]:
            frame = stat.traceback[0]
            where = frame.filename if group == "filename" else f"{frame.filename}:{frame.lineno}"
            print(f"{stat.size_diff / 1e6:+8.2f} MB  {stat.count_diff:+8d} blocks  now {stat.size / 1e6:7.2f} MB  {where}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))

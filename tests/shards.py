"""Integration test shards: the files of the integration tests split into runs of about equal length.

Each shard is a whole pytest run with its own stack (Kafka and Redis on their own ports and state
dir), so shards never share a broker, a topic or a Redis key; ``make test`` runs them side by side
(tests/suite.py). Files are never split: module fixtures and the order of a file's tests stay as
written. A file counts as an integration file when any of its tests is marked ``integration``
(every test under ``tests/integration``, and a few elsewhere, e.g. tests/ops/test_stack.py's).

A shard is chosen with ``LEADFLOW_TEST_SHARD=i/n`` (``0 <= i < n``); without it a run takes every
file. The split is the longest-first greedy one over the measured seconds of each file in
``tests/integration/durations.json`` (keyed by path from the repo's root), so every shard computes
the same split on its own. Each run
writes what its files took to ``.state/test-logs/integration-durations-<i>.json``;
``python -m tests.shards --update`` folds those into ``durations.json`` after the files changed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTEGRATION = REPO / "tests" / "integration"
DURATIONS = INTEGRATION / "durations.json"
RECORDS = REPO / ".state" / "test-logs"
#: The weight of a file ``durations.json`` does not know yet (a new file): about a typical file's.
UNKNOWN_FILE_S = 20.0
ENV = "LEADFLOW_TEST_SHARD"


class ShardError(ValueError):
    pass


def parse(value: str) -> tuple[int, int]:
    """``"i/n"`` as ``(i, n)``, with a message that says what was wrong."""
    index, sep, count = value.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ShardError(f"{ENV}={value!r}: expected i/n, e.g. 0/2 (shard i of n, counted from 0)")
    i, n = int(index), int(count)
    if n < 1 or i >= n:
        raise ShardError(f"{ENV}={value!r}: the shard index must be at least 0 and below the count ({n})")
    return i, n


def split(files: Iterable[str], weights: Mapping[str, float], count: int) -> list[list[str]]:
    """The files in ``count`` groups of about equal weight: each file, longest first, goes to the
    lightest group so far (the lowest index on a tie). The same input always gives the same split."""
    groups: list[list[str]] = [[] for _ in range(count)]
    totals = [0.0] * count
    for name in sorted(set(files), key=lambda f: (-weights.get(f, UNKNOWN_FILE_S), f)):
        lightest = min(range(count), key=lambda g: (totals[g], g))
        groups[lightest].append(name)
        totals[lightest] += weights.get(name, UNKNOWN_FILE_S)
    return groups


#: Seconds each integration file took in this run (setup, call and teardown of its tests), less
#: the stack's start, which its first test's setup paid for the whole shard.
_SECONDS: dict[str, float] = {}
_stack_start_s: list[float] = []


def note_stack_start(seconds: float) -> None:
    _stack_start_s.append(seconds)


def note_duration(path: str, when: str, seconds: float) -> None:
    if when == "setup" and _stack_start_s and seconds >= _stack_start_s[0]:
        seconds -= _stack_start_s.pop()
    _SECONDS[path] = _SECONDS.get(path, 0.0) + seconds


def write_record(index: int) -> None:
    if _SECONDS:
        path = record_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({name: round(s, 1) for name, s in sorted(_SECONDS.items())}, indent=1) + "\n")


def load_weights(path: Path = DURATIONS) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}


def record_path(index: int) -> Path:
    return RECORDS / f"integration-durations-{index}.json"


def update(records: Iterable[Path], path: Path = DURATIONS) -> dict[str, float]:
    """``durations.json`` with the recorded seconds of every file a run measured, files that no
    longer exist dropped; the new table."""
    weights = load_weights(path)
    for record in records:
        weights.update(load_weights(record))
    table = {name: round(seconds, 1) for name, seconds in sorted(weights.items()) if (REPO / name).is_file()}
    path.write_text(json.dumps(table, indent=1) + "\n")
    return table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.shards",
        description="Show how the measured integration test files are split into shards, or update "
                    "their measured seconds (a file not measured yet counts as "
                    f"{UNKNOWN_FILE_S:.0f} s in a run).")
    parser.add_argument("--count", type=int, default=int(os.environ.get("LEADFLOW_TEST_SHARDS", "2")),
                        help="the number of shards (default: LEADFLOW_TEST_SHARDS or 2)")
    parser.add_argument("--update", action="store_true",
                        help=f"fold the seconds the last runs recorded ({RECORDS.relative_to(REPO)}/"
                             f"integration-durations-*.json) into {DURATIONS.relative_to(REPO)}")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.update:
        records = sorted(RECORDS.glob("integration-durations-*.json"))
        if not records:
            parser.error(f"no recorded durations in {RECORDS.relative_to(REPO)}: run `make test` first")
        update(records)
        print(f"{DURATIONS.relative_to(REPO)} updated from {len(records)} record(s)")
    weights = load_weights()
    for index, group in enumerate(split(weights, weights, args.count)):
        seconds = sum(weights[name] for name in group)
        print(f"shard {index}/{args.count}: {len(group)} files, about {seconds / 60:.1f} min")
        for name in group:
            print(f"  {weights[name]:6.1f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

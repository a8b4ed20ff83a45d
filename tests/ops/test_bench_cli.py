"""`leadflow bench`'s command line: what it accepts, what it refuses, and that both entry points agree."""
from __future__ import annotations

import pytest

from leadflow.cli import build_parser as leadflow_parser
from ops.bench.cli import _env_pairs, build_parser


def test_load_options_parse_into_lists() -> None:
    args = build_parser().parse_args(["load", "--rates", "10,max,half", "--feed", "kafka,http", "--workers", "1,2",
                                      "--worker-env", "PRODUCER_LINGER=0.005", "--worker-env", "A=b=c"])
    assert args.rates == [10.0, "max", "half"]
    assert args.feeds == ["kafka", "http"]
    assert args.workers == [1, 2]
    assert _env_pairs(args.worker_env) == {"PRODUCER_LINGER": "0.005", "A": "b=c"}


def test_leadflow_bench_is_the_same_command() -> None:
    args = leadflow_parser().parse_args(["bench", "restart", "--leads", "1000", "--kills", "1"])
    assert (args.command, args.bench, args.leads, args.kills) == ("bench", "restart", 1000, 1)
    assert args.receiver_port == 8191  # not load's 8190: the two can run side by side
    args = leadflow_parser().parse_args(["bench", "restart", "--receiver-port", "18199"])
    assert args.receiver_port == 18199
    hotspot = leadflow_parser().parse_args(["bench", "hotspot", "--routes", "10"])
    assert hotspot.routes == 10 and hotspot.partitions == 8


@pytest.mark.parametrize("argv", [
    ["load", "--rates", "half,max"],     # half needs a max before it
    ["load", "--rates", "fast"],
    ["load", "--feed", "smtp"],
    ["load", "--workers", "0"],
    ["load", "--workers", "one"],
])
def test_bad_values_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_worker_env_needs_a_name() -> None:
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        _env_pairs(["=1"])

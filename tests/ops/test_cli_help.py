"""The CLI's help says how to move the demo's stack and what the worker checks and exits with; the
demo's exit status says which signal stopped it, as the rest of the CLI does for Ctrl-C (130)."""
from __future__ import annotations

import argparse

import pytest

from leadflow.cli import build_parser
from ops.demo.launch import stop_exit_code


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # type: ignore[union-attr]
    return str(sub.choices[command].format_help())  # type: ignore[attr-defined]


def test_run_help_says_how_to_move_the_stack() -> None:
    text = _help("run")
    for variable in ("LEADFLOW_KAFKA_PORT", "LEADFLOW_KAFKA_CONTROLLER_PORT", "LEADFLOW_REDIS_PORT", "LEADFLOW_STATE_DIR"):
        assert variable in text
    assert "130 Ctrl-C" in text


def test_worker_help_has_an_example_the_exit_codes_and_what_check_config_checks() -> None:
    text = _help("worker")
    assert "leadflow worker --config teams.yaml --check-config" in text
    assert "exit status: 0" in text and "2 invalid settings or config" in text
    assert "environment variable" in text and "LEADFLOW_* settings" in text
    # The two ways a worker ends that an operator must know about (session 16).
    assert "75 the worker was paused" in text and "LEADFLOW_SHUTDOWN_DELAY" in text


@pytest.mark.parametrize(("stopped_by", "code"), [(None, 0), ("Ctrl-C", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_the_demo_exits_with_the_signal_that_stopped_it(stopped_by: str | None, code: int) -> None:
    assert stop_exit_code(stopped_by) == code


def _stack_help(action: str) -> str:
    stack = _help_parser("stack")
    sub = next(a for a in stack._subparsers._group_actions if a.dest == "action")  # type: ignore[union-attr]
    return str(sub.choices[action].format_help())


def _help_parser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # type: ignore[union-attr]
    found: argparse.ArgumentParser = sub.choices[command]  # type: ignore[attr-defined]
    return found


def test_stack_help_teaches_stopping_and_starting_one_service() -> None:
    down = _stack_help("down")
    assert "leadflow stack down kafka" in down and "leadflow stack up kafka" in down
    assert "kafka/kafka.pid" in down and "Never a\nprocess found by name" in down
    assert "leadflow stack down redis" in down
    up = _stack_help("up")
    assert "leadflow stack up kafka" in up and "same data" in up
    assert "leadflow stack down kafka" in build_parser().format_help()

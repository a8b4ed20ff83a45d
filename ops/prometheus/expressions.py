"""Every PromQL expression leadflow ships: in the Grafana dashboards and in the alert rules.

Extracted from the files themselves (never a hand-kept list), so the tests check what users
actually get: ``promtool`` parses them, and the integration test evaluates each one against a
real Prometheus scraping a real worker.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = ["Expression", "dashboard_expressions", "variable_queries", "alert_expressions", "substitute",
           "without_fallbacks", "data_parts", "metric_names", "DASHBOARDS_DIR"]

DASHBOARDS_DIR: Final = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"

# Grafana's built-in interval variables, as a test or `promtool` needs them spelled out.
_GRAFANA_INTERVALS: Final = {"$__rate_interval": "1m", "$__range": "10m", "$__interval": "15s"}
_METRIC: Final = re.compile(r"\b(leadflow_[a-z0-9_]+|up)\b")
_SET_OPS: Final = re.compile(r"\s(and|or|unless)\s+(?:(?:on|ignoring)\s*\([^)]*\)\s*)?", re.IGNORECASE)
_COMPARISON: Final = re.compile(r"(==|!=|>=|<=|>|<)(\s*bool\b)?")


@dataclass(frozen=True)
class Expression:
    """One PromQL expression and where it comes from (``file: panel / query`` or ``alert NAME``)."""

    where: str
    expr: str


def dashboard_expressions(folder: Path = DASHBOARDS_DIR) -> list[Expression]:
    """Every panel query of every dashboard JSON in ``folder``."""
    found = []
    for path in sorted(folder.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append(Expression(f"{path.name}: {panel.get('title')} / {target.get('refId')}",
                                            target["expr"]))
    return found


def variable_queries(folder: Path = DASHBOARDS_DIR) -> list[tuple[str, str, str]]:
    """``(where, metric, label)`` of every ``label_values(metric, label)`` template variable."""
    found = []
    for path in sorted(folder.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for var in board.get("templating", {}).get("list", []):
            query = var.get("query")
            text = query.get("query") if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", str(text or "").strip())
            if match:
                found.append((f"{path.name}: ${var['name']}", match.group(1), match.group(2)))
    return found


def _panels(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside collapsed rows


def alert_expressions(rule_files: Iterable[Path]) -> list[Expression]:
    """The ``expr`` of every alerting and recording rule in ``rule_files``."""
    found = []
    for path in rule_files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert") or rule.get("record")
                found.append(Expression(f"{path.name}: {name}", str(rule["expr"]).strip()))
    return found


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    """``expr`` with Grafana's variables replaced: intervals by fixed durations, template
    variables (``$team``) by ``variables`` or, by default, ``.*`` (the dashboards' "All")."""
    for name, value in _GRAFANA_INTERVALS.items():
        expr = expr.replace(name, value)
    variables = variables or {}
    return re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), ".*"), expr)


def without_fallbacks(expr: str) -> str:
    """``expr`` without its ``or vector(0)`` fallbacks (a panel shows 0 rather than "No data").

    A check that an expression returns data must look at what it reads, not at the constant
    it falls back to, or every such panel would pass trivially.
    """
    return re.sub(r"\s+or\s+vector\(\s*0\s*\)", "", expr)


def metric_names(expr: str) -> set[str]:
    """The leadflow metric (and ``up``) names an expression reads, with histogram suffixes removed."""
    names = set()
    for name in _METRIC.findall(_strip_strings(expr)):
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix) and name != suffix:
                name = name[: -len(suffix)]
                break
        names.add(name)
    return names


def data_parts(expr: str) -> list[str]:
    """The sub-expressions of an alert that must return data while the system runs.

    An alert returns data only while it fires; what it compares must return data all the time.
    ``A > 0.1`` gives ``[A]``; ``(A == 0) and on (team) (B > 0)`` gives ``[A, B]``.
    """
    expr = _unwrap(expr.strip())
    parts = _split_top(expr, _SET_OPS)
    if len(parts) > 1:
        return [p for part in parts for p in data_parts(part)]
    pieces = _split_top(expr, _COMPARISON)
    if len(pieces) > 1:
        return data_parts(pieces[0])
    return [expr]


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def _depths(expr: str) -> list[int]:
    """The bracket depth at each character, strings counted as one level deeper."""
    depth, out, quote = 0, [], ""
    for i, ch in enumerate(expr):
        if quote:
            out.append(depth + 1)
            if ch == quote and expr[i - 1] != "\\":
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
            out.append(depth + 1)
            continue
        if ch in "([{":
            depth += 1
        out.append(depth)
        if ch in ")]}":
            depth -= 1
    return out


def _split_top(expr: str, pattern: re.Pattern[str]) -> list[str]:
    depths = _depths(expr)
    parts, start = [], 0
    for match in pattern.finditer(expr):
        if depths[match.start()] == 0 and match.start() >= start:
            parts.append(expr[start:match.start()].strip())
            start = match.end()
    parts.append(expr[start:].strip())
    return [p for p in parts if p]


def _unwrap(expr: str) -> str:
    while expr.startswith("(") and expr.endswith(")"):
        depths = _depths(expr)
        # The first "(" closes at the very end only if depth never returns to 0 before it.
        if any(d == 0 for d in depths[1:-1]):
            break
        expr = expr[1:-1].strip()
    return expr

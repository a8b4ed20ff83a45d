"""What the dashboards' panels plot: one kind of quantity per panel, in the unit the panel names,
and a ``$team`` dropdown that lists every team a worker owns."""
from __future__ import annotations

import re

import pytest
from prometheus_client import generate_latest

from ops.grafana import build
from ops.metrics import Metrics, TeamFigures

_PANELS = [(f"{name}: {panel.title}", panel) for name, board in build.DASHBOARDS.items()
           for _, row in board.rows for panel in row]


def _kind(expr: str) -> str:
    """What one query plots: seconds, a per-second rate, a ratio, a count over the range, or a level."""
    if "histogram_quantile" in expr:
        return "seconds"
    if " / " in expr:
        return "ratio"
    if "rate(" in expr:
        return "per second"
    if "increase(" in expr:
        return "count"
    metrics = re.findall(r"\bleadflow_\w+", expr)
    return "seconds" if metrics and all(m.endswith("_seconds") for m in metrics) else "level"


#: The unit each kind may be shown in (a level is a count, a flag or a share: anything but time or a rate).
_UNITS = {"seconds": {"s"}, "per second": {"reqps"}, "ratio": {"percentunit", "short"},
          "count": {"short"}, "level": {"short", "percentunit"}}


@pytest.mark.parametrize(("where", "panel"), _PANELS, ids=[w for w, _ in _PANELS])
def test_a_panel_plots_one_kind_of_quantity_in_its_unit(where: str, panel: build.Panel) -> None:
    kinds = {_kind(expr) for expr, _ in panel.queries}
    assert len(kinds) == 1, f"{where} mixes {sorted(kinds)} on one axis"
    (kind,) = kinds
    assert panel.unit in _UNITS[kind], f"{where} shows {kind} in {panel.unit!r}"


@pytest.mark.parametrize(("expr", "kind"), [
    ("max by (instance) (leadflow_table_recovery_in_progress)", "level"),
    ("max by (instance) (leadflow_table_recovery_seconds)", "seconds"),
    ('histogram_quantile(0.99, sum by (le) (rate(leadflow_crm_call_seconds_bucket[1m])))', "seconds"),
    ("sum(rate(a_total[1m])) / sum(rate(b_total[1m]))", "ratio"),
    ("sum by (reason) (rate(leadflow_crm_dead_letters_total[1m]))", "per second"),
])
def test_the_kinds_are_told_apart(expr: str, kind: str) -> None:
    assert _kind(expr) == kind


def test_the_team_dropdown_lists_a_team_that_only_queues() -> None:
    """A team whose leads all wait (nobody available) has assigned nothing: it must be in the list."""
    (_, _, query), = build.SLA.variables
    match = re.fullmatch(r"label_values\((\w+), team\)", query)
    assert match, query
    metrics = Metrics()
    metrics.report_teams({"queue-only": TeamFigures(queue_depth=4, open_leads=0, capacity=0, reps_available=0,
                                                    total_capacity=2, oldest_queued_age_s=30.0)})
    exposition = generate_latest(metrics.registry).decode()
    assert re.search(rf'^{match.group(1)}\{{[^}}]*team="queue-only"', exposition, re.M), query

"""The funnel dashboard's win rate, evaluated by promtool on series shaped like the worker's: a deal
the CRM corrected or reopened counts once, as it ended."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from ops.grafana import build

_WIN_RATE = next(expr for _, row in build.FUNNEL.rows for panel in row if panel.title == "Win rate (won / closed)"
                 for expr, _ in panel.queries)


def _series(source: str, frm: str, to: str, total: int) -> dict[str, str]:
    """A counter at 0 for the first two minutes, then ``total`` (the worker's count of that move)."""
    name = f'leadflow_lifecycle_transitions_total{{source="{source}",from="{frm}",to="{to}"}}'
    return {"series": name, "values": f"0 0 {total}x8"}


#: webinar: A won; B lost, reopened, then won; C won, corrected to lost; D lost, corrected to won.
#: So three won and one lost, though 4 moves went to won and 3 to lost. partner: one of each, no
#: correction at all (no from="won"/"lost" series: the panel must still show it).
_MOVES = [
    _series("webinar", "opportunity", "won", 3),  # A, C, B after its reopen
    _series("webinar", "opportunity", "lost", 2),  # B, D
    _series("webinar", "lost", "reopened", 1),  # B
    _series("webinar", "won", "lost", 1),  # C
    _series("webinar", "lost", "won", 1),  # D
    _series("partner", "opportunity", "won", 1),
    _series("partner", "opportunity", "lost", 1),
]


def test_the_win_rate_counts_a_corrected_or_reopened_deal_once(promtool: Path, tmp_path: Path) -> None:
    expr = _WIN_RATE.replace("$__range", "10m").replace("$source", ".*")
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": _MOVES,
        "promql_expr_test": [{"expr": expr, "eval_time": "10m", "exp_samples": [
            {"labels": '{source="webinar"}', "value": 0.75},
            {"labels": '{source="partner"}', "value": 0.5},
        ]}]}]}
    path = tmp_path / "win_rate_test.yml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run([str(promtool), "test", "rules", str(path)], capture_output=True, text=True,
                            timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"

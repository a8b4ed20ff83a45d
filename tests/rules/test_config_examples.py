"""Every config the project shows or ships loads: README.md's and docs/*.md's YAML examples, the
demo's config and the bench's generated one (they must keep up with what the config refuses)."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from ops.bench.harness import bench_config
from ops.demo.run import CONFIG_PATH as DEMO_CONFIG
from streams.config import LeadflowConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"^( *)```yaml\n(.*?)^\1```", flags=re.S | re.M)


def _config_examples() -> list[tuple[str, str]]:
    """``(file:line, text)`` of each YAML block whose top-level keys are config sections."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            block = textwrap.dedent(match.group(2))
            data = yaml.safe_load(block)
            if isinstance(data, dict) and set(data) <= set(LeadflowConfig.model_fields):
                found.append((f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}", block))
    return found


EXAMPLES = _config_examples()


def test_the_docs_have_config_examples() -> None:
    # README's teams, docs/routing.md's worked example, QUALIFICATION's crm section at least.
    where = {w.split(":")[0] for w, _ in EXAMPLES}
    assert {"README.md", "docs/routing.md", "docs/QUALIFICATION.md", "docs/sla.md", "docs/capture.md"} <= where


@pytest.mark.parametrize(("where", "text"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_a_docs_config_example_loads(where: str, text: str) -> None:
    parse_config(text, where)


def test_the_demo_config_loads() -> None:
    config = load_config(DEMO_CONFIG)
    assert sum(len(t.reps) for t in config.teams) >= 4


def test_the_bench_config_loads() -> None:
    text, secrets = bench_config(teams=3, reps=4, capacity=50, receiver_port=18090)
    config = parse_config(text, "bench.yaml")
    profiles = config.rep_profiles({})
    assert len(profiles) == 12 and {p.rep_id: p.webhook_secret for p in profiles} == secrets

"""The config roster reaches every partition of ``rep.commands``; each retires only its own keys."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from rules.commands import ApplyRoster, PutRep, RemoveRep, RepProfile, ReportJoin, RetireRep
from streams.agents import reps
from streams.app import runtime
from streams.tables.rep_directory import rep_directory
from streams.topics import partition_of
from tests.agents.conftest import Published

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _ids_in_two_partitions() -> tuple[str, str]:
    partitions = runtime.settings.partitions
    assert partitions > 1, "the test needs two partitions"
    first = f"rep-{uuid.uuid4().hex[:8]}"
    while True:
        other = f"rep-{uuid.uuid4().hex[:8]}"
        if partition_of(other, partitions) != partition_of(first, partitions):
            return first, other


async def test_each_partition_retires_its_own_seeded_reps_the_roster_does_not_name(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reps, "publish", published)
    partitions = runtime.settings.partitions
    a, b = _ids_in_two_partitions()
    keep = f"keep-{uuid.uuid4().hex[:8]}"
    roster = ApplyRoster(rep_ids=(keep,), config_digest="abc", at=NOW)
    async with reps.run_reps.test_context() as agent:
        for rep_id in (a, b, keep):
            await agent.put(key=rep_id, partition=partition_of(rep_id, partitions), value=PutRep(
                rep_id=rep_id, profile=RepProfile(rep_id=rep_id, team_id="t-roster"), at=NOW, from_config=True))
        await agent.put(key=reps.ROSTER_KEY, value=roster, partition=partition_of(a, partitions))
        assert rep_directory[a].retired == "config"
        assert rep_directory[b].retired is None, "another partition's key: its own roster retires it"
        await agent.put(key=reps.ROSTER_KEY, value=roster, partition=partition_of(b, partitions))
        await agent.put(key=reps.ROSTER_KEY, value=roster, partition=partition_of(keep, partitions))
    assert rep_directory[b].retired == "config" and rep_directory[keep].retired is None
    assert sorted(r.rep_id for r in published.values(RemoveRep)) == sorted([a, b])


def _retired(team: str, by: str) -> float:
    return runtime.metrics.registry.get_sample_value("leadflow_reps_retired_total", {"team": team, "by": by}) or 0.0


async def test_a_retirement_is_counted_once_by_team_and_by_whom(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``leadflow_reps_retired_total``: a worker started with an older YAML retires the reps added
    since; the counter shows it. A roster read again (every start sends it; a crash re-reads it)
    and a DELETE of a rep the roster retired count nothing more, nor does a DELETE of a rep the
    team never took (review s17-a A5: no team lost them)."""
    monkeypatch.setattr(reps, "publish", published)
    partitions = runtime.settings.partitions
    team = f"t-{uuid.uuid4().hex[:8]}"
    gone, by_api, kept, never = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("gone", "api", "kept", "never"))
    roster = ApplyRoster(rep_ids=(kept, by_api, never), config_digest="old", at=NOW)
    async with reps.run_reps.test_context() as agent:
        for rep_id in (gone, by_api, kept, never):
            profile = RepProfile(rep_id=rep_id, team_id=team)
            await agent.put(key=rep_id, partition=partition_of(rep_id, partitions), value=PutRep(
                rep_id=rep_id, profile=profile, at=NOW, from_config=True))
            if rep_id != never:  # the team takes them in; ``never`` waits for its answer
                await agent.put(key=rep_id, partition=partition_of(rep_id, partitions), value=ReportJoin(
                    rep_id=rep_id, team_id=team, move=1, refused=None, at=NOW, member=True, profile=profile))
        await agent.put(key=never, partition=partition_of(never, partitions),
                        value=RetireRep(rep_id=never, at=NOW, reason="test"))
        assert rep_directory[never].retired == "api" and not rep_directory[never].member
        assert (_retired(team, "config"), _retired(team, "api")) == (0.0, 0.0)
        for _ in range(2):  # the second: a replay, or the next start with the same YAML
            await agent.put(key=reps.ROSTER_KEY, value=roster, partition=partition_of(gone, partitions))
            assert rep_directory[gone].retired == "config"
            assert (_retired(team, "config"), _retired(team, "api")) == (1.0, 0.0)
        for _ in range(2):
            await agent.put(key=by_api, partition=partition_of(by_api, partitions),
                            value=RetireRep(rep_id=by_api, at=NOW, reason="test"))
            assert (_retired(team, "config"), _retired(team, "api")) == (1.0, 1.0)
        # The roster's retiree deleted through the API: retired already, now the API's; not counted.
        await agent.put(key=gone, partition=partition_of(gone, partitions),
                        value=RetireRep(rep_id=gone, at=NOW, reason="test"))
        assert rep_directory[gone].retired == "api"
        assert (_retired(team, "config"), _retired(team, "api")) == (1.0, 1.0)
    assert rep_directory[kept].retired is None


_YAML = """\
teams:
  - id: t1
    reps:
      - {id: ana, webhook_url: "https://hooks.example.com/ana",
         webhook_secret: "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="}
"""


@pytest.mark.parametrize(("has_file", "yaml", "rosters"), [
    (True, _YAML, "every partition"),
    (False, _YAML, "none"),  # no file: the worker knows nothing of the reps
    (True, "teams: []\n", "none"),  # a file that defines no teams: an empty roster would retire everyone
])
async def test_the_start_sends_the_roster_only_with_a_file_that_defines_teams(
    has_file: bool, yaml: str, rosters: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace
    from pathlib import Path

    from ops.metrics import Metrics
    from streams.config import parse_config
    from tests.agents.conftest import FakeTopic

    sent: list[tuple[object, object, object]] = []

    class Topic(FakeTopic):
        async def send(self, *, key: object = None, value: object = None, partition: object = None,  # type: ignore[override]
                       headers: object = None) -> object:
            sent.append((key, value, partition))
            return await super().send(key=key, value=value)

    monkeypatch.setattr(reps, "rep_commands", Topic())
    settings = replace(runtime.settings, config_path=Path("teams.yaml") if has_file else None)
    metrics = Metrics()
    monkeypatch.setattr(reps, "runtime", replace(runtime, settings=settings, config=parse_config(yaml),
                                                 metrics=metrics))
    await reps.seed_reps_from_config()
    # The config's teams' retirement counters are at 0 from the start: increase() sees the first one.
    for by in ("config", "api"):
        value = metrics.registry.get_sample_value("leadflow_reps_retired_total", {"team": "t1", "by": by})
        assert value == (0.0 if yaml == _YAML else None)
    got = [(partition, value) for key, value, partition in sent if isinstance(value, ApplyRoster)]
    if rosters == "none":
        assert got == []
    else:
        assert sorted(p for p, _ in got) == list(range(runtime.settings.partitions))
        assert {v.rep_ids for _, v in got} == {("ana",)}  # type: ignore[attr-defined]
        assert [k for k, v, _ in sent][-len(got):] == [reps.ROSTER_KEY] * len(got)  # after the reps


async def test_a_config_that_changes_a_seeded_rep_says_what_it_changes_without_personal_data(
    published: Published, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker started with another file (a canary) changes the rep for the whole deployment; the
    owner's log says which rep and fields, old → new, and names the e-mail or webhook it changed
    without showing them."""
    monkeypatch.setattr(reps, "publish", published)
    rep_id = f"rep-{uuid.uuid4().hex[:8]}"
    before = RepProfile(rep_id=rep_id, team_id="t-canary", capacity=2, email="ana@corp.example",
                        webhook_url="https://hooks.example/ana?token=s3cr3t")
    after = RepProfile(rep_id=rep_id, team_id="t-canary", capacity=3, skills=("de",), email="ana.b@corp.example",
                       webhook_url="https://hooks.example/ana?token=0th3r")
    async with reps.run_reps.test_context() as agent:
        await agent.put(key=rep_id, value=PutRep(rep_id=rep_id, profile=before, at=NOW, from_config=True))
        caplog.clear()
        await agent.put(key=rep_id, value=PutRep(rep_id=rep_id, profile=before, at=NOW, from_config=True))
        assert not [r for r in caplog.records if "changed by a worker's config" in r.getMessage()]  # same file
        await agent.put(key=rep_id, value=PutRep(rep_id=rep_id, profile=after, at=NOW, from_config=True))
    (line,) = [r.getMessage() for r in caplog.records if "changed by a worker's config" in r.getMessage()]
    assert line == (f"rep {rep_id} changed by a worker's config file, for every worker of the deployment: "
                    "capacity 2 → 3; skills [] → [de]; email changed; webhook_url changed")
    assert "corp.example" not in caplog.text and "s3cr3t" not in caplog.text and "0th3r" not in caplog.text


async def test_a_config_that_moves_a_seeded_rep_says_so_with_the_team_and_what_else_it_changes(
    published: Published, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Review s16-a #5: a move waits for the new team's answer, the entry keeping the rep as they
    are: the log compared the old profile with itself and said nothing."""
    monkeypatch.setattr(reps, "publish", published)
    rep_id = f"rep-{uuid.uuid4().hex[:8]}"
    before = RepProfile(rep_id=rep_id, team_id="t-a", capacity=2, webhook_url="https://hooks.example/r")
    after = RepProfile(rep_id=rep_id, team_id="t-b", capacity=3, webhook_url="https://hooks.example/r")
    async with reps.run_reps.test_context() as agent:
        await agent.put(key=rep_id, value=PutRep(rep_id=rep_id, profile=before, at=NOW, from_config=True))
        caplog.clear()
        await agent.put(key=rep_id, value=PutRep(rep_id=rep_id, profile=after, at=NOW, from_config=True))
        entry = rep_directory[rep_id]
        assert entry.team_id == "t-a" and entry.joining is not None  # the move waits for t-b's answer
        await agent.put(key=rep_id, value=PutRep(rep_id=rep_id, profile=after, at=NOW, from_config=True))
    (line,) = [r.getMessage() for r in caplog.records if "changed by a worker's config" in r.getMessage()]
    assert line == (f"rep {rep_id} changed by a worker's config file, for every worker of the deployment: "
                    "team_id t-a → t-b; capacity 2 → 3 (a move: in team t-a until team t-b takes them in)")

"""The partition-count check a worker runs before Faust starts (streams/topic_check.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from leadflow.errors import ConfigError
from streams import topic_check
from streams.topic_check import Cluster, Mismatch, describe, expected_partitions, mismatches, too_few_brokers


@dataclass
class _Topic:
    name: str
    partitions: int | None = None

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class _Table:
    changelog_topic: _Topic
    partitions: int | None = None


def test_expected_counts_follow_each_topic_and_table_or_the_default() -> None:
    topics = [_Topic("lf.lead.commands"), _Topic("lf.outcomes.board", 1)]
    tables = [_Table(_Topic("app-lead_state-changelog")), _Table(_Topic("app-outcome_board-changelog"), 1)]
    assert expected_partitions(topics, tables, 8) == {
        "lf.lead.commands": 8, "lf.outcomes.board": 1, "app-lead_state-changelog": 8, "app-outcome_board-changelog": 1}


def test_only_existing_topics_with_another_count_are_mismatches() -> None:
    expected = {"a": 8, "b": 8, "board": 1, "missing": 8}
    actual = {"a": 8, "b": 4, "board": 1, "someone-elses": 3}
    assert mismatches(expected, actual) == [Mismatch("b", 8, 4)]
    assert mismatches(expected, {"a": 8, "board": 1}) == []


def test_a_deployment_made_with_another_count_is_told_which() -> None:
    expected = {"lf.lead.commands": 4, "lf.team.commands": 4, "lf.outcomes.board": 1}
    actual = {"lf.lead.commands": 8, "lf.team.commands": 8, "lf.outcomes.board": 1}
    text = describe(mismatches(expected, actual), 4, expected, actual)
    assert "(LEADFLOW_PARTITIONS=4)" in text
    assert "  lf.lead.commands: 8 partition(s), expected 4" in text
    assert "  lf.team.commands: 8 partition(s), expected 4" in text
    assert "lf.outcomes.board" not in text
    assert "set LEADFLOW_PARTITIONS=8 to match its topics" in text


def test_topics_that_disagree_among_themselves_are_not_fixed_by_the_setting() -> None:
    expected = {f"t{i}": 8 for i in range(5)}
    actual = {"t0": 8, "t1": 8, "t2": 8, "t3": 4}
    text = describe(mismatches(expected, actual), 8, expected, actual)
    assert "  t3: 4 partition(s), expected 8" in text
    assert "disagree among themselves (3 with 8, 1 with 4 partitions)" in text
    assert "set LEADFLOW_PARTITIONS" not in text


def test_preflight_raises_a_config_error_naming_the_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    async def existing(bootstrap: list[str], config_topics: object = ()) -> Cluster:
        assert bootstrap == ["h1:9092"]
        return Cluster({"lf.lead.commands": 2}, brokers=1)

    monkeypatch.setattr(topic_check, "read_cluster", existing)
    with pytest.raises(ConfigError, match="lf.lead.commands: 2 partition"):
        topic_check.preflight({"lf.lead.commands": 8}, ["h1:9092"], 8)
    topic_check.preflight({"lf.lead.commands": 2}, ["h1:9092"], 2)  # matching: no error


def test_preflight_waits_for_an_unreachable_broker_then_stops_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # It logged "partition check skipped: no metadata from … in 10 s" at once, left the broker to Faust,
    # and the worker died two seconds later in a traceback.
    attempts: list[float] = []

    async def unreachable(bootstrap: list[str], config_topics: object = ()) -> Cluster:
        attempts.append(time.monotonic())
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")

    monkeypatch.setattr(topic_check, "read_cluster", unreachable)
    monkeypatch.setattr(topic_check, "_RETRY_S", 0.05)
    with pytest.raises(ConfigError) as caught:
        topic_check.preflight({"lf.lead.commands": 8}, ["h1:9092"], 8, wait=0.3)
    assert str(caught.value).startswith("Kafka at h1:9092 (LEADFLOW_BROKER) did not answer in 0 s "
                                        "(ConnectionRefusedError: [Errno 111] Connect call failed")
    assert len(attempts) >= 3
    waiting = [r.getMessage() for r in caplog.records if "waiting for Kafka" in r.getMessage()]
    assert len(waiting) == len(attempts) - 1
    assert waiting[0].startswith("waiting for Kafka at h1:9092 (LEADFLOW_BROKER): ConnectionRefusedError")
    assert "partition check skipped" not in caplog.text


def test_preflight_goes_on_once_the_broker_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Exception | Cluster] = [TimeoutError(), ConnectionRefusedError(), Cluster({}, brokers=1)]

    async def starting(bootstrap: list[str], config_topics: object = ()) -> Cluster:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(topic_check, "read_cluster", starting)
    monkeypatch.setattr(topic_check, "_RETRY_S", 0.01)
    topic_check.preflight({"lf.lead.commands": 8}, ["h1:9092"], 8, wait=5.0)
    assert answers == []


def test_more_copies_than_brokers_is_refused_only_while_topics_are_missing() -> None:
    expected = {"lf.lead.commands": 8, "lf.team.commands": 8}
    problem = too_few_brokers(expected, Cluster({"lf.lead.commands": 8}, brokers=1), 3)
    assert problem is not None
    assert problem.startswith("LEADFLOW_REPLICATION=3, but the cluster has 1 broker(s) up")
    assert "(lf.team.commands, …)" in problem and "at most 1" in problem
    assert too_few_brokers(expected, Cluster({"lf.lead.commands": 8}, brokers=3), 3) is None
    # Every topic exists: a broker down (metadata lists only live ones) does not stop a worker.
    assert too_few_brokers(expected, Cluster({"lf.lead.commands": 8, "lf.team.commands": 8}, brokers=2), 3) is None


@pytest.mark.parametrize(("broker", "servers"), [
    ("kafka://127.0.0.1:9092", ["127.0.0.1:9092"]),
    ("kafka://h1:9092;kafka://h2:9092", ["h1:9092", "h2:9092"]),
    ("h1:9092, h2:9092", ["h1:9092", "h2:9092"]),
    ("kafka://a:9092, kafka://b:9092", ["a:9092", "b:9092"]),
])
def test_the_broker_setting_as_aiokafka_takes_it(  # the outcome board's follower and the check use it
        broker: str, servers: list[str]) -> None:
    from streams.settings import Settings

    assert Settings.from_env({"LEADFLOW_BROKER": broker}).bootstrap_servers == servers


# --- changelog topic configs ------------------------------------------------------------


def test_the_wanted_configs_are_those_of_tables_that_set_some() -> None:
    from streams.app import app
    from streams.tables.team_state import CHANGELOG_CONFIGS, team_state

    wanted = topic_check.wanted_configs(app.tables.values())
    assert wanted == {team_state.changelog_topic.get_topic_name(): CHANGELOG_CONFIGS}


def test_a_topics_own_configs_are_read_from_any_describe_version() -> None:
    v0 = [{"config_names": "cleanup.policy", "config_value": "compact", "is_default": False},
          {"config_names": "segment.bytes", "config_value": "1073741824", "is_default": True}]
    v1 = [{"config_names": "cleanup.policy", "config_value": "compact", "config_source": 1},
          {"config_names": "segment.bytes", "config_value": "1073741824", "config_source": 5}]
    assert topic_check.topic_overrides(v0) == topic_check.topic_overrides(v1) == {"cleanup.policy": "compact"}


def test_changes_keep_every_config_the_topic_has_and_skip_topics_already_right() -> None:
    wanted = {"old": {"segment.bytes": "8388608", "segment.ms": "600000"},
              "right": {"segment.bytes": "8388608"}, "missing": {"segment.bytes": "8388608"}}
    current = {"old": {"cleanup.policy": "compact", "segment.ms": "600000"},
               "right": {"cleanup.policy": "compact", "segment.bytes": "8388608"}}
    # The whole set: AlterConfigs replaces a topic's configs, and compaction must stay on.
    assert topic_check.config_changes(wanted, current) == {
        "old": {"cleanup.policy": "compact", "segment.ms": "600000", "segment.bytes": "8388608"}}

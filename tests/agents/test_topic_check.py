"""The partition-count check a worker runs before Faust starts (streams/topic_check.py)."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import pytest

from leadflow.errors import ConfigError
from streams import topic_check
from streams.topic_check import Cluster, Mismatch, describe, expected_partitions, mismatches, too_few_brokers


@pytest.fixture(autouse=True)
def _every_host_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' hosts (h1, h2) are not real names: no test asks the machine's resolver."""
    monkeypatch.setattr(topic_check, "_no_such_name", lambda host: None)


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


def test_a_broker_host_that_does_not_exist_stops_the_worker_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # LEADFLOW_BROKER=garbage waited the whole 60 s for a name that will never resolve.
    attempts: list[list[str]] = []

    async def unresolvable(bootstrap: list[str], config_topics: object = ()) -> Cluster:
        attempts.append(bootstrap)
        raise OSError("Unable to bootstrap from [('garbage', 9092, <AddressFamily.AF_UNSPEC: 0>)]")

    def no_sleep(seconds: float) -> None:
        raise AssertionError("an unresolvable host must not be waited for")

    monkeypatch.setattr(topic_check, "read_cluster", unresolvable)
    monkeypatch.setattr(topic_check, "_no_such_name", lambda host: "Name or service not known")
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        topic_check.wait_for_cluster(["garbage:9092"], wait=60.0, sleep=no_sleep)
    assert time.monotonic() - started < 5.0
    assert len(attempts) == 1
    assert str(caught.value) == ("Kafka at garbage:9092 (LEADFLOW_BROKER): no such host ('garbage': Name or service "
                                 "not known): set LEADFLOW_BROKER to a reachable broker")
    assert "\n" not in str(caught.value)


def test_a_host_that_resolves_but_does_not_answer_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def resolves(host: str) -> None:
        asked.append(host)
        return None

    async def silent(bootstrap: list[str], config_topics: object = ()) -> Cluster:
        raise TimeoutError()

    monkeypatch.setattr(topic_check, "read_cluster", silent)
    monkeypatch.setattr(topic_check, "_no_such_name", resolves)
    monkeypatch.setattr(topic_check, "_RETRY_S", 0.05)
    with pytest.raises(ConfigError, match=r"^Kafka at quiet:9092 \(LEADFLOW_BROKER\) did not answer in 0 s \(no answer\)"):
        topic_check.wait_for_cluster(["quiet:9092"], wait=0.3)
    assert len(asked) >= 3 and set(asked) == {"quiet"}  # asked again at every failed attempt


def test_one_bootstrap_host_that_does_not_exist_is_named_while_the_others_are_waited_for(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    answers: list[Exception | Cluster] = [ConnectionRefusedError(), Cluster({}, brokers=1)]

    async def starting(bootstrap: list[str], config_topics: object = ()) -> Cluster:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(topic_check, "read_cluster", starting)
    monkeypatch.setattr(topic_check, "_no_such_name", lambda host: "Name or service not known" if host == "typo" else None)
    monkeypatch.setattr(topic_check, "_RETRY_S", 0.01)
    topic_check.wait_for_cluster(["typo:9092", "h2:9092"], wait=5.0)
    assert answers == []
    assert "(no such host: typo)" in caplog.text


@pytest.mark.parametrize(("errno", "no_such_name"), [
    (socket.EAI_NONAME, True),
    (getattr(socket, "EAI_NODATA", socket.EAI_NONAME), True),
    (socket.EAI_AGAIN, False),  # the resolver cannot tell now (DNS down or slow): waited for like a silent broker
])
def test_only_the_resolvers_no_such_name_counts_as_a_host_that_does_not_exist(
        monkeypatch: pytest.MonkeyPatch, errno: int, no_such_name: bool) -> None:
    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(errno, "resolver says no")

    monkeypatch.undo()  # the autouse stub: this test is about the real _no_such_name
    monkeypatch.setattr(topic_check.socket, "getaddrinfo", getaddrinfo)
    assert topic_check._no_such_name("garbage") == ("resolver says no" if no_such_name else None)


def test_a_host_that_resolves_is_no_such_name_of_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    monkeypatch.setattr(topic_check.socket, "getaddrinfo",
                        lambda *args, **kwargs: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 0))])
    assert topic_check._no_such_name("kafka-0.kafka") is None


@pytest.mark.parametrize(("server", "host"), [
    ("h1:9092", "h1"), ("garbage", "garbage"), ("[::1]:9092", "::1"), ("10.0.0.1:9092", "10.0.0.1"),
])
def test_the_host_of_a_bootstrap_server(server: str, host: str) -> None:
    assert topic_check._host(server) == host


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

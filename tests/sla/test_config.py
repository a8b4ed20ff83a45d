"""The ``sla:`` YAML section: durations, policies, calendars, and errors a manager can act on."""
from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from leadflow.errors import ConfigError
from sla.config import SlaConfig, parse_duration
from sla.ladder import plan_deadlines
from sla.policy import DEFAULT_POLICY, EscalationStep, select_policy
from streams.config import parse_config

MADRID = ZoneInfo("Europe/Madrid")
EXAMPLE = """
sla:
  policies:
    - name: hot-inbound
      tiers: [hot]
      sources: [web, chat]
      first_contact: 5m
      steps:
        - {kind: remind, after: 0}
        - {kind: reassign, after: 2m}
        - {kind: alert_manager, after: 5m}
        - {kind: release_to_pool, after: 10m}
    - name: office-hours
      teams: [emea-sdr]
      first_contact: 1h
      business_hours: true
      steps:
        - {kind: remind, after: 0}
        - {kind: reassign, after: 30m}
        - {kind: alert_manager, after: "1h30m"}
  calendars:
    madrid:
      timezone: Europe/Madrid
      teams: [emea-sdr]
      hours:
        mon-fri: ["09:00-14:00", "15:00-18:00"]
      holidays: {country: ES, subdiv: MD}
      closed: [2026-12-24]
    everywhere-else:
      timezone: UTC
      hours: {mon-sun: ["00:00-24:00"]}
"""


def load(text: str) -> SlaConfig:
    return SlaConfig.model_validate(yaml.safe_load(text)["sla"])


def test_the_example_becomes_policies_and_calendars() -> None:
    config = load(EXAMPLE)
    hot, office = config.to_policies()
    assert (hot.name, hot.first_contact_s, hot.tiers, hot.sources, hot.teams) == (
        "hot-inbound", 300, ("hot",), ("web", "chat"), ())
    assert hot.steps == DEFAULT_POLICY.steps
    assert office.business_hours and office.steps[-1] == EscalationStep("alert_manager", 5400)
    calendars = config.to_calendars()
    madrid = calendars.for_team("emea-sdr")
    assert madrid is not None and madrid.timezone == "Europe/Madrid"
    assert madrid.hours[0] == ((time(9), time(14)), (time(15), time(18))) and 5 not in madrid.hours
    assert madrid.is_holiday(date(2026, 12, 24)) and madrid.is_holiday(date(2026, 1, 6))
    default = calendars.for_team("us-sdr")
    assert default is not None and default.timezone == "UTC" and default.hours[6] == ((time(0), time(0)),)
    assert config.team_calendars(["us-sdr"]) == {"emea-sdr": madrid, "us-sdr": default}


def test_the_example_plans_a_business_hours_ladder() -> None:
    config = load(EXAMPLE)
    policy = select_policy(config.to_policies(), team="emea-sdr", source="partner", tier=None)
    calendar = config.to_calendars().for_team("emea-sdr")
    friday = datetime(2026, 1, 2, 17, 30, tzinfo=MADRID)
    due = [d.due_at.strftime("%a %d %H:%M") for d in plan_deadlines(policy, calendar, friday)]
    assert due == ["Mon 05 09:30", "Mon 05 09:30", "Mon 05 10:00", "Mon 05 11:00"]


def _docs_config() -> SlaConfig:
    docs = Path(__file__).resolve().parents[2] / "docs" / "sla.md"
    blocks = [part.split("```", 1)[0] for part in docs.read_text(encoding="utf-8").split("```yaml\n")[1:]]
    # The example policy file: the first YAML block with an ``sla:`` section.
    return load(next(b for b in blocks if b.startswith("sla:") or "\nsla:" in b))



@pytest.mark.parametrize(("tier", "source", "assigned", "timeline"), [
    # Timeline 1: a hot web lead, around the clock.
    ("hot", "web", datetime(2026, 1, 5, 9, 0), ["Mon 09:05", "Mon 09:05", "Mon 09:07", "Mon 09:10", "Mon 09:15"]),
    # Timeline 2: office hours across a weekend.
    (None, "partner", datetime(2026, 1, 2, 17, 45), ["Mon 09:15", "Mon 09:15", "Mon 09:30", "Mon 09:45", "Mon 10:15"]),
    # Timeline 3: office hours across Epiphany (Tuesday 6 January).
    (None, "partner", datetime(2026, 1, 5, 17, 50), ["Wed 09:20", "Wed 09:20", "Wed 09:35", "Wed 09:50", "Wed 10:20"]),
    # The notes under timeline 3: lunch, a Saturday, the DST weekend.
    (None, "partner", datetime(2026, 1, 5, 13, 40), ["Mon 15:10", "Mon 15:10", "Mon 15:25", "Mon 15:40", "Mon 16:10"]),
    (None, "partner", datetime(2026, 1, 3, 11, 0), ["Mon 09:30", "Mon 09:30", "Mon 09:45", "Mon 10:00", "Mon 10:30"]),
    (None, "partner", datetime(2026, 3, 27, 17, 40), ["Mon 09:10", "Mon 09:10", "Mon 09:25", "Mon 09:40", "Mon 10:10"]),
])
def test_the_docs_timelines(tier: str | None, source: str, assigned: datetime, timeline: list[str]) -> None:
    config = _docs_config()
    policy = select_policy(config.to_policies(), team="emea-sdr", source=source, tier=tier)
    calendar = config.to_calendars().for_team("emea-sdr")
    plan = plan_deadlines(policy, calendar, assigned.replace(tzinfo=MADRID))
    assert [d.kind for d in plan] == ["breach", "remind", "reassign", "alert_manager", "release_to_pool"]
    assert [d.due_at.astimezone(MADRID).strftime("%a %H:%M") for d in plan] == timeline


@pytest.mark.parametrize(("value", "seconds"), [
    (300, 300.0), (1.5, 1.5), ("300", 300.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0),
    ("1.5h", 5400.0), ("2h 15m 10s", 8110.0), (" 5M ", 300.0),
    ("30d", 30 * 86400.0), ("1d12h", 36 * 3600.0), ("0.5d", 43200.0), ("250ms", 0.25), ("1s500ms", 1.5),
])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 min", "m5", "5m5m", "", "soon", True, None, [5], "1w", "2d3d", "d"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_a_bad_duration_names_every_unit() -> None:
    with pytest.raises(ValueError, match=r"'1w' is not a duration: .*'90s', '5m', '1h30m', '7d' or '250ms'"):
        parse_duration("1w")


def _policy(**overrides: Any) -> dict[str, Any]:
    return {"name": "p", "first_contact": 60, **overrides}


def _calendar(**overrides: Any) -> dict[str, Any]:
    return {"timezone": "Europe/Madrid", "hours": {"mon-fri": ["09:00-17:00"]}, **overrides}


@pytest.mark.parametrize(("section", "where", "message"), [
    ({"policies": [_policy(first_contact="5 min")]}, "policies.0.first_contact", "is not a duration"),
    ({"policies": [_policy(first_contact=0)]}, "policies.0.first_contact", "greater than 0"),
    ({"policies": [_policy(steps=[{"kind": "call_mom"}])]}, "policies.0.steps.0.kind", "'remind'"),
    ({"policies": [_policy(steps=[{"kind": "remind", "after": -5}])]}, "policies.0.steps.0.after", "greater than or equal to 0"),
    ({"policies": [_policy(steps=[{"kind": "reassign", "after": "2m"}, {"kind": "remind", "after": 0}])]},
     "policies.0.steps", "step 2 (remind, after 0 s) comes before step 1"),
    ({"policies": [_policy(), _policy()]}, "", "policy names must be unique"),
    ({"policies": [_policy(colour="red")]}, "policies.0.colour", "Extra inputs are not permitted"),
    ({"calendars": {"x": _calendar(timezone="Mars/Olympus")}}, "calendars.x.timezone", "unknown time zone"),
    ({"calendars": {"x": _calendar(hours={"weekdays": ["09:00-17:00"]})}}, "calendars.x.hours", "not a weekday"),
    ({"calendars": {"x": _calendar(hours={"mon": ["9-17"]})}}, "calendars.x.hours", "span of hours"),
    ({"calendars": {"x": _calendar(hours={"mon": ["09:00-25:00"]})}}, "calendars.x.hours", "not a time of day"),
    ({"calendars": {"x": _calendar(hours={"mon-fri": ["09:00-14:00"], "mon": ["13:00-18:00"]})}},
     "calendars.x.hours", "overlap"),
    ({"calendars": {"x": _calendar(hours={"sat": []})}}, "calendars.x.hours", "at least one weekday"),
    ({"calendars": {"x": _calendar(holidays={"country": "XX"})}}, "calendars.x.holidays", "not available"),
    ({"calendars": {"x": _calendar(holidays={"country": "ES", "subdiv": "ZZ"})}}, "calendars.x.holidays",
     "subdivision"),
    ({"calendars": {"a": _calendar(), "b": _calendar()}}, "", "only one calendar may leave out 'teams'"),
    ({"calendars": {"a": _calendar(teams=["t"]), "b": _calendar(teams=["t"])}}, "", "team 't' is in two calendars"),
    ({"policies": [_policy(business_hours=True)]}, "", "no default calendar"),
    ({"policies": [_policy(business_hours=True, teams=["t", "u"])], "calendars": {"a": _calendar(teams=["t"])}},
     "", "team(s) u have no calendar"),
])
def test_errors_name_the_place_and_the_problem(section: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SlaConfig.model_validate(section)
    errors = caught.value.errors()
    assert any(".".join(map(str, e["loc"])) == where and message in e["msg"] for e in errors), errors


def test_business_hours_with_a_default_calendar_is_fine() -> None:
    config = SlaConfig.model_validate({"policies": [_policy(business_hours=True)], "calendars": {"d": _calendar()}})
    assert config.to_calendars().for_team("anyone") is not None


def test_empty_section_means_the_built_in_default() -> None:
    config = SlaConfig()
    assert config.to_policies() == ()
    assert select_policy(config.to_policies(), team="t", source=None, tier=None) is DEFAULT_POLICY
    assert config.to_calendars().for_team("t") is None and config.team_calendars(["t"]) == {}


@pytest.mark.parametrize(("block", "where"), [
    ("  policies:\n    - name: p\n      first_contact: 5m\n      steps:\n        - {kind: remind, after: 0s}\n"
     "        - {kind: reassign, after: 10m}\n        - {kind: alert_manager, after: 5m}\n",
     "c.yaml:8: sla.policies[0].steps[2]: "),  # the step out of order, not the steps: line
    ("  calendars:\n    office:\n      timezone: Europe/Madrid\n      hours:\n"
     "        mon-fri: ['09:00-17:00']\n        fri: ['16:00-18:00']\n",
     "c.yaml:7: sla.calendars.office.hours.fri: "),  # the day that overlaps, not the hours: line
])
def test_a_file_error_points_at_the_entry_at_fault(block: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("sla:\n" + block, "c.yaml")
    assert where in str(caught.value), str(caught.value)

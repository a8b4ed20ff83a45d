"""Every shipped framework's criteria: what is met, what makes an SQL, which answers are refused."""
from __future__ import annotations

from typing import Any

import pytest

from rules.qualification import DEFAULT_FRAMEWORKS, check_answers, evaluate, find_framework

BANT, MEDDIC, CHAMP = (DEFAULT_FRAMEWORKS[n] for n in ("BANT", "MEDDIC", "CHAMP"))

CASES: list[tuple[str, dict[str, Any], bool, tuple[str, ...]]] = [
    ("BANT", {"budget": "approved", "authority": "decision_maker", "need": "routing is manual",
              "timeline": "this_quarter"}, True, ()),
    ("BANT", {"budget": "none", "authority": "influencer", "need": "routing is manual", "timeline": "next_quarter"},
     True, ("budget",)),
    ("BANT", {"budget": "approved", "authority": "decision_maker", "timeline": "this_quarter"}, False, ("need",)),
    ("BANT", {"budget": "being_set", "authority": "user", "need": "manual routing", "timeline": "later"}, False,
     ("budget", "authority", "timeline")),
    ("MEDDIC", {"metrics": "cut response time 50%", "economic_buyer": True, "decision_criteria": "SLA, price",
                "decision_process": "security review then CFO", "identify_pain": "leads rot", "champion": True},
     True, ()),
    ("MEDDIC", {"metrics": "cut response time", "economic_buyer": True, "decision_criteria": "SLA",
                "identify_pain": "leads rot", "champion": True}, True, ("decision_process",)),
    ("MEDDIC", {"metrics": "x50", "economic_buyer": True, "decision_criteria": "SLA", "decision_process": "CFO",
                "identify_pain": "leads rot", "champion": False}, False, ("champion",)),
    ("CHAMP", {"challenges": "slow follow-up", "authority": "decision_maker", "money": "allocated",
               "prioritization": "top"}, True, ()),
    ("CHAMP", {"challenges": "slow follow-up", "authority": "user", "money": "allocated", "prioritization": "high"},
     True, ("authority",)),
    ("CHAMP", {"authority": "decision_maker", "money": "approved", "prioritization": "top"}, False, ("challenges",)),
    ("CHAMP", {"challenges": "slow", "prioritization": "low"}, False, ("authority", "money", "prioritization")),
]


@pytest.mark.parametrize(("name", "answers", "sql", "missing"), CASES)
def test_framework_criteria(name: str, answers: dict[str, Any], sql: bool, missing: tuple[str, ...]) -> None:
    framework = DEFAULT_FRAMEWORKS[name]
    assert check_answers(framework, answers) == []
    verdict = evaluate(framework, answers)
    assert verdict.sql is sql, verdict.reason
    assert verdict.missing == missing
    assert set(verdict.met) | set(verdict.missing) == {c.key for c in framework.criteria}


def test_every_criterion_has_a_question_and_every_framework_can_be_met() -> None:
    for framework in DEFAULT_FRAMEWORKS.values():
        assert all(c.question.endswith("?") for c in framework.criteria)
        assert framework.min_met <= len(framework.criteria)
        assert sum(c.required for c in framework.criteria) <= framework.min_met


@pytest.mark.parametrize(("name", "answers", "problems"), [
    ("BANT", {"budget": 5000}, [("answers.budget", "expected one of approved, allocated, being_set, none, unknown")]),
    ("BANT", {"budget": "lots"}, [("answers.budget", "expected one of approved, allocated, being_set, none, unknown")]),
    ("BANT", {"need": ["a"]}, [("answers.need", "expected a string")]),
    ("MEDDIC", {"champion": "yes"}, [("answers.champion", "expected true or false")]),
    ("BANT", {"colour": "red"}, [("answers.colour", "not a BANT criterion (expected one of budget, authority, need, "
                                                    "timeline)")]),
])
def test_wrong_answers_are_named(name: str, answers: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    assert check_answers(DEFAULT_FRAMEWORKS[name], answers) == problems


def test_number_criteria_from_config_and_null_answers() -> None:
    from rules.qualification import Criterion, Framework

    framework = Framework(name="SEATS", description="", min_met=1, criteria=(
        Criterion(key="seats", kind="number", minimum=25, question="How many seats?"),))
    assert check_answers(framework, {"seats": True}) == [("answers.seats", "expected a number")]
    assert check_answers(framework, {"seats": None}) == []
    assert evaluate(framework, {"seats": 40}).sql and not evaluate(framework, {"seats": 10}).sql


def test_framework_names_match_case_blind() -> None:
    assert find_framework(DEFAULT_FRAMEWORKS, "bant") is BANT
    assert find_framework(DEFAULT_FRAMEWORKS, "SPICED") is None

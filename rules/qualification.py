"""Qualification frameworks as data (BANT, MEDDIC, CHAMP shipped): criteria, questions, what counts as met.

Pure. A ``Framework`` lists its criteria; each has the question an SDR asks, the kind of answer
it takes and the rule that makes it *met*. A lead is sales-qualified (SQL) when every
``required`` criterion is met and at least ``min_met`` are. Answers accumulate across calls;
``check_answers`` names each wrong answer so the API can answer 422 with the field.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = [
    "CriterionKind",
    "Criterion",
    "Framework",
    "Evaluation",
    "DEFAULT_FRAMEWORKS",
    "check_answers",
    "evaluate",
    "find_framework",
]

CriterionKind: TypeAlias = Literal["boolean", "number", "choice", "text"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Criterion:
    """One thing to find out. Met when: boolean is true; number >= ``minimum``; choice is one of
    ``met_values``; text is at least ``min_length`` characters."""

    key: str
    question: str
    kind: CriterionKind
    choices: tuple[str, ...] = ()
    met_values: tuple[str, ...] = ()
    minimum: float | None = None
    min_length: int = 3
    required: bool = False

    def is_met(self, answer: Any) -> bool:
        if answer is None:
            return False
        if self.kind == "boolean":
            return answer is True
        if self.kind == "number":
            return self.minimum is None or float(answer) >= self.minimum
        if self.kind == "choice":
            return answer in self.met_values
        return len(str(answer).strip()) >= self.min_length

    def problem(self, answer: Any) -> str | None:
        """Why ``answer`` is not a valid answer to this criterion (``None``: it is; null clears it)."""
        if answer is None:
            return None
        if self.kind == "boolean":
            return None if isinstance(answer, bool) else "expected true or false"
        if self.kind == "number":
            ok = isinstance(answer, (int, float)) and not isinstance(answer, bool) and answer == answer
            return None if ok and abs(float(answer)) < 1e15 else "expected a number"
        if self.kind == "choice":
            if not isinstance(answer, str):
                return f"expected one of {', '.join(self.choices)}"
            return None if answer in self.choices else f"expected one of {', '.join(self.choices)}"
        if not isinstance(answer, str):
            return "expected a string"
        return None if len(answer) <= 2000 else "at most 2000 characters"


@dataclass(frozen=True, slots=True, kw_only=True)
class Framework:
    name: str
    description: str
    criteria: tuple[Criterion, ...]
    #: Met criteria needed for SQL (besides every required one being met).
    min_met: int

    def criterion(self, key: str) -> Criterion | None:
        return next((c for c in self.criteria if c.key == key), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    met: tuple[str, ...]
    missing: tuple[str, ...]
    sql: bool
    reason: str


_BUDGET = ("approved", "allocated", "being_set", "none", "unknown")
_AUTHORITY = ("decision_maker", "influencer", "user", "unknown")

BANT = Framework(
    name="BANT", min_met=3,
    description="Budget, Authority, Need, Timeline: SQL with a real need and three of the four.",
    criteria=(
        Criterion(key="budget", kind="choice", choices=_BUDGET, met_values=("approved", "allocated"),
                  question="Is there budget for this purchase?"),
        Criterion(key="authority", kind="choice", choices=_AUTHORITY, met_values=("decision_maker", "influencer"),
                  question="Is the contact the decision maker, or do they influence the decision?"),
        Criterion(key="need", kind="text", required=True,
                  question="What problem do they need solved?"),
        Criterion(key="timeline", kind="choice", met_values=("this_quarter", "next_quarter"),
                  choices=("this_quarter", "next_quarter", "this_year", "later", "unknown"),
                  question="When do they plan to buy?"),
    ),
)
MEDDIC = Framework(
    name="MEDDIC", min_met=5,
    description="Metrics, Economic buyer, Decision criteria, Decision process, Identify pain, Champion: "
                "SQL with the pain, the economic buyer, a champion and five of the six.",
    criteria=(
        Criterion(key="metrics", kind="text", question="What measurable gain do they expect?"),
        Criterion(key="economic_buyer", kind="boolean", required=True,
                  question="Have we identified and spoken to the economic buyer?"),
        Criterion(key="decision_criteria", kind="text", question="How will they judge the options?"),
        Criterion(key="decision_process", kind="text", question="Which steps and people lead to a signature?"),
        Criterion(key="identify_pain", kind="text", required=True, question="What pain makes them act now?"),
        Criterion(key="champion", kind="boolean", required=True,
                  question="Is there a champion selling for us inside the account?"),
    ),
)
CHAMP = Framework(
    name="CHAMP", min_met=3,
    description="Challenges, Authority, Money, Prioritization: SQL with a stated challenge and three of four.",
    criteria=(
        Criterion(key="challenges", kind="text", required=True, question="What challenges are they facing?"),
        Criterion(key="authority", kind="choice", choices=_AUTHORITY, met_values=("decision_maker", "influencer"),
                  question="Who decides, and is the contact one of them?"),
        Criterion(key="money", kind="choice", choices=_BUDGET, met_values=("approved", "allocated"),
                  question="Is money set aside for solving it?"),
        Criterion(key="prioritization", kind="choice", choices=("top", "high", "medium", "low"),
                  met_values=("top", "high"), question="How high is solving it on their list?"),
    ),
)

#: The shipped frameworks by name; the config may add more or replace these.
DEFAULT_FRAMEWORKS: Mapping[str, Framework] = {f.name: f for f in (BANT, MEDDIC, CHAMP)}


def find_framework(frameworks: Mapping[str, Framework], name: str) -> Framework | None:
    """Framework names are matched case-blind (``bant`` is BANT)."""
    return frameworks.get(name) or next((f for k, f in frameworks.items() if k.lower() == name.lower()), None)


def check_answers(framework: Framework, answers: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, reason)`` for every answer that is unknown to the framework or of the wrong type."""
    problems = []
    for key, answer in answers.items():
        criterion = framework.criterion(key)
        if criterion is None:
            problems.append((f"answers.{key}", f"not a {framework.name} criterion (expected one of "
                                               f"{', '.join(c.key for c in framework.criteria)})"))
            continue
        problem = criterion.problem(answer)
        if problem is not None:
            problems.append((f"answers.{key}", problem))
    return problems


def evaluate(framework: Framework, answers: Mapping[str, Any]) -> Evaluation:
    """Which criteria the (valid) answers meet, and whether that makes an SQL."""
    met = tuple(c.key for c in framework.criteria if c.is_met(answers.get(c.key)))
    missing = tuple(c.key for c in framework.criteria if c.key not in met)
    required_missing = [c.key for c in framework.criteria if c.required and c.key not in met]
    if required_missing:
        return Evaluation(met=met, missing=missing, sql=False,
                          reason=f"required not met: {', '.join(required_missing)}")
    if len(met) < framework.min_met:
        return Evaluation(met=met, missing=missing, sql=False,
                          reason=f"{len(met)} of {framework.min_met} needed criteria met")
    return Evaluation(met=met, missing=missing, sql=True,
                      reason=f"{framework.name}: {len(met)} of {len(framework.criteria)} criteria met")

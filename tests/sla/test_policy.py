"""SLA policies: validation, the built-in default ladder, and first-match selection."""
from __future__ import annotations

import pytest

from sla.policy import DEFAULT_POLICY, STEP_KINDS, EscalationStep, SlaPolicy, select_policy


def policy(name: str, *, tiers: tuple[str, ...] = (), sources: tuple[str, ...] = (),
           teams: tuple[str, ...] = ()) -> SlaPolicy:
    return SlaPolicy(name, 60, (EscalationStep("remind", 0),), tiers=tiers, sources=sources, teams=teams)


def test_the_default_ladder() -> None:
    assert DEFAULT_POLICY.first_contact_s == 300
    assert [(s.kind, s.after_s) for s in DEFAULT_POLICY.steps] == [
        ("remind", 0), ("reassign", 120), ("alert_manager", 300), ("release_to_pool", 600)]
    assert not DEFAULT_POLICY.business_hours
    assert set(STEP_KINDS) == {"remind", "reassign", "alert_manager", "release_to_pool"}


POLICIES = (
    policy("hot-web-emea", tiers=("hot",), sources=("web",), teams=("emea",)),
    policy("hot", tiers=("hot",)),
    policy("partners", sources=("partner", "event")),
    policy("emea", teams=("emea",)),
)


@pytest.mark.parametrize(("team", "source", "tier", "expected"), [
    ("emea", "web", "hot", "hot-web-emea"),   # the most specific, listed first
    ("emea", "chat", "hot", "hot"),           # one criterion off: the next one
    ("apac", "web", "hot", "hot"),
    ("apac", "event", "warm", "partners"),
    ("emea", "event", None, "partners"),      # order beats specificity: partners comes before emea
    ("emea", "web", "warm", "emea"),
    ("emea", None, None, "emea"),
    ("apac", None, "hot", "hot"),
    ("apac", "web", None, "default"),         # a listed criterion never matches a missing value
    ("apac", "web", "cold", "default"),
])
def test_first_match_wins_else_the_default(team: str, source: str | None, tier: str | None, expected: str) -> None:
    assert select_policy(POLICIES, team=team, source=source, tier=tier).name == expected


def test_the_fallback_can_be_replaced() -> None:
    fallback = policy("fallback")
    assert select_policy((), team="t", source=None, tier=None, default=fallback) is fallback
    assert select_policy(iter(POLICIES), team="emea", source=None, tier=None).name == "emea"


def test_a_policy_without_criteria_matches_everything() -> None:
    catch_all = policy("all")
    assert catch_all.matches(team="x", source=None, tier=None)
    assert select_policy((catch_all, POLICIES[0]), team="emea", source="web", tier="hot") is catch_all


@pytest.mark.parametrize(("build", "message"), [
    (lambda: EscalationStep("call_mom", 0), "unknown escalation step"),  # type: ignore[arg-type]
    (lambda: EscalationStep("remind", -1), "0 or more"),
    (lambda: EscalationStep("remind", float("nan")), "finite"),
    (lambda: SlaPolicy("p", 0, ()), "greater than 0"),
    (lambda: SlaPolicy("p", float("inf"), ()), "finite"),
    (lambda: SlaPolicy("", 60, ()), "needs a name"),
    (lambda: SlaPolicy("p", 60, (EscalationStep("reassign", 120), EscalationStep("remind", 0))),
     "in the order they fire"),
])
def test_invalid_policies_are_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_policies_are_frozen_values() -> None:
    steps = [EscalationStep("remind", 0), EscalationStep("remind", 0)]  # two reminders at once is allowed
    p = SlaPolicy("p", 90, tuple(steps), tiers=("a",))
    assert p == SlaPolicy("p", 90.0, tuple(steps), tiers=("a",)) and hash(p) == hash(SlaPolicy("p", 90, tuple(steps), tiers=("a",)))
    with pytest.raises(AttributeError):
        p.name = "q"  # type: ignore[misc]

"""The lead lifecycle: its status values and the transitions allowed between them (pure).

``new`` → ``mql`` (score over the threshold or a hot source) → ``working`` (assigned and
contacted) → ``sql`` (qualification criteria met) → ``converted`` (an opportunity in the CRM)
→ ``won``, or lost and ``recycled``. Beside the path: ``nurture`` (below the threshold, or put
there by the rep), ``disqualified``, ``unresponsive``, ``recycled`` (a lost deal, back in
nurture; it may return to routing later). A new capture of a closed lead starts a new cycle
(back to ``new``), which is not a transition of the old cycle; so does a recycled lead's return
to routing, which is ``mql`` only when a configured threshold (or hot source) says so.

``won`` ↔ ``recycled`` are the CRM's corrections within the cycle: a lost deal reopened and won,
or a won corrected to lost (``rules.lead_crm``). ``won`` or ``recycled`` → ``converted``: the CRM
reopened the cycle's closed deal (a stage change after the close), so the lead is back in its
opportunity until the deal closes again.
"""
from __future__ import annotations

from typing import Final, Literal, TypeAlias

__all__ = ["Lifecycle", "STATUSES", "TRANSITIONS", "QUALIFIABLE", "LifecycleError", "check", "advance"]

Lifecycle: TypeAlias = Literal["new", "mql", "working", "sql", "converted", "won", "nurture", "disqualified",
                               "unresponsive", "recycled"]

STATUSES: Final[tuple[str, ...]] = ("new", "mql", "working", "sql", "converted", "won", "nurture",
                                    "disqualified", "unresponsive", "recycled")

_CLOSE: Final = frozenset({"nurture", "disqualified", "unresponsive", "recycled"})
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    # Without an MQL gate a routed lead stays "new" until contacted.
    "new": frozenset({"mql", "working", "sql"}) | _CLOSE,
    "mql": frozenset({"working", "sql"}) | _CLOSE,
    "working": frozenset({"sql"}) | _CLOSE,
    "sql": frozenset({"converted", "nurture", "disqualified"}),
    "converted": frozenset({"won", "recycled"}),
    # The CRM corrects a close (won → lost), or a lost deal is reopened and won (recycled → won);
    # a stage change of the closed deal reopens it (→ converted).
    "won": frozenset({"recycled", "converted"}),
    "nurture": frozenset({"mql", "disqualified"}),
    "recycled": frozenset({"mql", "nurture", "disqualified", "won", "converted"}),
    "disqualified": frozenset(),
    "unresponsive": frozenset({"mql", "nurture", "disqualified"}),
}
#: Statuses in which qualification answers may be recorded.
QUALIFIABLE: Final = frozenset({"new", "mql", "working", "sql"})


class LifecycleError(ValueError):
    """An invalid lifecycle transition; the message says from where, to where and what is allowed."""


def check(current: str, target: str) -> str | None:
    """Why ``current`` → ``target`` is not allowed, or ``None`` when it is."""
    if target not in TRANSITIONS:
        return f"unknown status {target!r} (expected one of {', '.join(STATUSES)})"
    allowed = TRANSITIONS.get(current)
    if allowed is None:
        return f"unknown status {current!r}"
    if target == current or target in allowed:
        return None
    options = ", ".join(sorted(allowed)) or "nothing (final)"
    return f"a {current} lead cannot become {target} (from {current}: {options})"


def advance(current: str, target: str) -> str:
    """``target`` when the transition is allowed; raise ``LifecycleError`` saying why not otherwise."""
    problem = check(current, target)
    if problem is not None:
        raise LifecycleError(problem)
    return target

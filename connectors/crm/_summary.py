"""A plain-text summary of an opportunity for a CRM's description field."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["describe"]


def describe(payload: Mapping[str, Any], limit: int = 32000) -> str:
    lines = [f"leadflow opportunity {payload.get('opportunity_id')} (lead {payload.get('lead_id')})"]
    score = payload.get("score") or {}
    if score:
        lines.append(f"Score {score.get('value')} (tier {score.get('tier')}): {'; '.join(score.get('reasons', []))}")
    q = payload.get("qualification") or {}
    if q:
        lines.append(f"{q.get('framework')}: met {', '.join(q.get('met', []))}; {q.get('reason')}")
        lines += [f"  {k}: {v}" for k, v in (q.get("answers") or {}).items()]
    attribution = payload.get("attribution") or {}
    first = attribution.get("first_touch") or {}
    if first:
        lines.append(f"First touch: {first.get('source')} / {first.get('campaign') or '-'}; "
                     f"touches: {attribution.get('touches')}")
    for entry in (payload.get("timeline") or [])[-20:]:
        lines.append(f"{entry.get('at')} {entry.get('kind')}")
    return "\n".join(lines)[:limit]

"""Eligibility filters on the real stack: skills, language, territory (country and state), the
daily cap and working hours each decide who gets a lead, and the decision record says why."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from rules.eligibility import WEEKDAYS
from tests.integration.harness import Receiver, SECRET, Worker, WorkerSpec, eventually, lead_in, post_lead



def _config(receiver: Receiver) -> str:
    # A weekday three days away: "closed" is never working while the test runs.
    other_day = WEEKDAYS[(datetime.now(UTC).weekday() + 3) % 7]
    hook = f'webhook_url: "{receiver.url}/hooks/{{rep}}", webhook_secret: "{SECRET}"'
    reps = {
        "sky": "skills: [enterprise], languages: [en], territories: [US]",
        "lan": "languages: [es], territories: [ES, MX]",
        "west": "languages: [en], territories: [US-CA]",
        "capped": "languages: [en], territories: [US], daily_cap: 1",
        "closed": f'timezone: UTC, working_hours: {{{other_day}: ["09:00-17:00"]}}',
    }
    lines = "\n".join(f"      - {{id: {rep}, capacity: 5, {extra}, {hook.format(rep=rep)}}}" for rep, extra in reps.items())
    return f"""
routing: {{default_team: elig}}
teams:
  - id: elig
    strategy: most_available
    reps:
{lines}
"""






def _reasons(lead: Any) -> dict[str, list[str]]:
    return {c["rep_id"]: c["reasons"] for c in lead["assignment"]["decision"]["candidates"]}


@pytest.mark.timeout(180)
async def test_each_filter_decides_and_is_explained(spec: WorkerSpec, receiver: Receiver,
                                                    api: aiohttp.ClientSession) -> None:
    spec.config_yaml = _config(receiver)
    receiver.secrets.update({rep: SECRET for rep in ("sky", "lan", "west", "capped", "closed")})
    worker = Worker(spec)
    try:
        await worker.wait_ready()
        leads = {}
        for name, fields in [
            ("skill", {"country": "US", "attributes": {"skills": "enterprise", "language": "en"}}),
            ("spanish", {"country": "MX", "attributes": {"language": "es"}}),
            ("california", {"country": "US", "attributes": {"region": "CA", "language": "en"}}),
            ("california-2", {"country": "US", "attributes": {"region": "CA", "language": "en"}}),
        ]:
            lead_id = await post_lead(api, worker, f"{name}@eligibility.example", **fields)
            leads[name] = await eventually(lambda: lead_in(api, worker, lead_id, "assigned"), what=f"the {name} lead assigned")

        # Only sky has the skill (closed is outside working hours).
        skill = _reasons(leads["skill"])
        assert leads["skill"]["assignment"]["rep_id"] == "sky"
        assert "missing skills: enterprise" in skill["lan"] and "missing skills: enterprise" in skill["west"]
        assert any("working hours" in r for r in skill["closed"]), skill["closed"]
        # Only lan speaks Spanish and covers Mexico.
        spanish = _reasons(leads["spanish"])
        assert leads["spanish"]["assignment"]["rep_id"] == "lan"
        assert "does not speak es" in spanish["sky"] and "territory MX not covered" in spanish["west"]
        # California: sky (US), west (US-CA) and capped (US) may take it; most free slots, then
        # longest idle, then the rep id: capped. Its daily cap is then reached, so the next goes to west.
        california = _reasons(leads["california"])
        assert leads["california"]["assignment"]["rep_id"] == "capped"
        assert california["sky"] == [] and california["west"] == [] and "territory US-CA not covered" in california["lan"]
        second = _reasons(leads["california-2"])
        assert leads["california-2"]["assignment"]["rep_id"] == "west"
        assert any(r.startswith("daily cap reached (1/1") for r in second["capped"]), second["capped"]
        # Every winner got a signed lead.assigned webhook; the closed rep got nothing.
        await eventually(lambda: len(receiver.deliveries) >= 4, what="four webhooks")
        assert sorted(d["rep_id"] for d in receiver.deliveries) == ["capped", "lan", "sky", "west"]
        assert all(d["verified"] for d in receiver.deliveries)
    finally:
        worker.stop()

"""The curl examples of docs/routing.md and docs/QUALIFICATION.md, sent as written to the API.

A request with a body and no ``Content-Type: application/json`` is a ``415``: an example that
leaves the header out does not work when a reader pastes it.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import orjson
import pytest

from rules.capture import CapturedLead
from rules.commands import Candidate, CaptureLead, LeadAssigned, RoutingDecision
from rules.lead import LeadPolicy, LeadState
from rules.lead import apply as apply_to_lead
from sla.clock import FakeClock
from tests.connectors.conftest import AUTH, REP_SECRET, Client, ClientFactory, FakeEngine

DOCS = Path(__file__).resolve().parents[2] / "docs"


def curls(doc: str) -> list[list[str]]:
    """Every ``curl`` command of a doc's shell blocks, continuation lines joined, split like a shell."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        pending = ""
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if not pending and not line.startswith("curl "):
                continue
            pending += line + "\n"
            try:
                commands.append(shlex.split(pending, comments=True))
            except ValueError:
                continue  # a quoted body over several lines: read on
            pending = ""
    return commands


def _header(words: list[str], name: str) -> str | None:
    for flag, value in zip(words, words[1:]):
        if flag == "-H" and value.lower().startswith(name.lower() + ":"):
            return value.split(":", 1)[1].strip()
    return None


@pytest.mark.parametrize("doc", ["routing.md", "QUALIFICATION.md"])
def test_every_example_with_a_body_says_it_is_json(doc: str) -> None:
    with_body = [words for words in curls(doc) if "-d" in words]
    assert with_body, f"no curl with a body found in {doc}: the parser is broken"
    for words in with_body:
        assert _header(words, "Content-Type") == "application/json", " ".join(words)


def _offered_to(rep_id: str, clock: FakeClock) -> LeadState:
    """A lead the real transitions offered to ``rep_id`` (the team uses the offer handshake)."""
    policy = LeadPolicy(default_team="ent-na", offer_timeouts={"ent-na": 120})
    lead = CapturedLead(email="kim@acme.com", source="web")
    state = apply_to_lead(None, CaptureLead(lead_id="ld_0123456789abcdef01234567", capture_id="c1",
                                            captured_at=clock.now(), lead=lead), clock.now(), policy).state
    assert state is not None
    decision = RoutingDecision(team_id="ent-na", strategy="least_loaded", winner=rep_id, reason="least loaded",
                               candidates=(Candidate(rep_id=rep_id, eligible=True, capacity=5),),
                               decided_at=clock.now())
    state = apply_to_lead(state, LeadAssigned(
        lead_id=state.lead_id, route_id=state.route_id, team_id="ent-na", rep_id=rep_id, rep_name="Ana",
        webhook_url="https://hooks.example.com/a", webhook_secret=REP_SECRET, decision=decision,
        assigned_at=clock.now()), clock.now(), policy).state
    assert state is not None and state.routing == "offered"
    return state


@pytest.mark.parametrize("verb", ["accept", "decline"])
async def test_the_offer_answers_work_as_written(client: Client, engine: FakeEngine, clock: FakeClock,
                                                 verb: str) -> None:
    """docs/routing.md, the offer handshake: each curl, pasted, gets the 202 the doc shows."""
    state = _offered_to("ana", clock)
    engine.leads[state.lead_id] = state
    (words,) = [w for w in curls("routing.md") if any(x.endswith(f"/{verb}") for x in w)]
    url = next(w for w in words if w.startswith("$API/"))
    headers = {v.split(":", 1)[0]: v.split(":", 1)[1].strip() for f, v in zip(words, words[1:]) if f == "-H"}
    headers["Authorization"] = AUTH["Authorization"]
    body = words[words.index("-d") + 1].encode()
    response = await client.post(url.removeprefix("$API").replace("$LEAD", state.lead_id), data=body,
                                 headers=headers)
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert answer == {"lead_id": state.lead_id, "status": "received", "answer": verb, "rep_id": "ana",
                      "route_id": state.route_id}
    # The answer the doc shows under the curl has the same fields and values (ids are placeholders there).
    text = (DOCS / "routing.md").read_text(encoding="utf-8")
    (shown,) = re.findall(rf'/{verb}" .*\n.*\n# → 202 (\{{.*\}})\n', text)
    shown_answer = orjson.loads(shown)
    assert set(shown_answer) == set(answer)
    same = ("status", "answer", "rep_id")
    assert {k: shown_answer[k] for k in same} == {k: answer[k] for k in same}


async def test_the_territory_example_is_refused_as_written(make_client: ClientFactory, engine: FakeEngine) -> None:
    """docs/routing.md: the PUT with a territory that is no region, country or state, and its 422."""
    client = await make_client(regions={"EMEA": ("DE", "FR"), "NA": ("US", "CA")})
    (words,) = [w for w in curls("routing.md") if "PUT" in w and "Narnia" in " ".join(w)]
    url = next(w for w in words if w.startswith("$API/"))
    headers = {v.split(":", 1)[0]: v.split(":", 1)[1].strip() for f, v in zip(words, words[1:]) if f == "-H"}
    headers["Authorization"] = AUTH["Authorization"]
    response = await client.put(url.removeprefix("$API"), data=words[words.index("-d") + 1].encode(),
                                headers=headers)
    assert response.status == 422
    [field] = (await response.json())["error"]["fields"]
    text = (DOCS / "routing.md").read_text(encoding="utf-8")
    assert f'"field": "{field["field"]}"' in text and f'"reason": "{field["reason"]}"' in text
    assert engine.rep_commands == []

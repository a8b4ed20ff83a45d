"""``/v1/accounts/{domain}`` over the in-memory engine: commands sent, owners' teams, 4xx naming the field."""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from connectors.api.openapi import openapi_document
from rules.account_book import PutAccount, RemoveAccount
from rules.accounts import Account
from rules.reps import RepEntry
from sla.clock import FakeClock
from tests.connectors.conftest import AUTH, Client, FakeEngine

DOC = openapi_document()


def documented(operation: str, status: int, body: Any) -> None:
    """The answer matches the schema the OpenAPI document gives for it."""
    path = "/v1/accounts/{domain}"
    response = DOC["paths"][path][operation]["responses"][str(status)]
    while "$ref" in response:
        response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": DOC["components"]}).validate(body)


async def test_put_an_account_whose_owner_is_a_known_rep(client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    engine.reps["ana"] = RepEntry(rep_id="ana", team_id="strategic", updated_at=clock.now())
    response = await client.put("/v1/accounts/www.Acme.co.uk", headers=AUTH,
                                json={"name": "Acme", "owner": "ana", "tier": "strategic"})
    assert response.status == 202
    body = await response.json()
    documented("put", 202, body)
    assert datetime.fromisoformat(body.pop("updated_at")) == clock.now()
    assert body == {"domain": "acme.co.uk", "name": "Acme", "owner": "ana", "team": "strategic",
                    "tier": "strategic", "status": "accepted"}
    [(domain, command)] = engine.account_commands
    assert domain == "acme.co.uk" and isinstance(command, PutAccount)
    assert command.account == Account(domain="acme.co.uk", name="Acme", owner="ana", team="strategic",
                                      tier="strategic", updated_at=clock.now())
    # The owner's team is read where the rep directory keeps the owner.
    assert ("rep", "ana") in engine.forwarded


async def test_an_unknown_owner_needs_a_team(client: Client, engine: FakeEngine) -> None:
    response = await client.put("/v1/accounts/acme.com", headers=AUTH, json={"owner": "zoe"})
    assert response.status == 422
    body = await response.json()
    documented("put", 422, body)
    assert body["error"]["fields"] == [
        {"field": "owner", "reason": "no rep zoe; create the rep first (PUT /v1/reps/zoe) or give the team"}]
    ok = await client.put("/v1/accounts/acme.com", headers=AUTH, json={"owner": "zoe", "team": "partners"})
    assert ok.status == 202 and (await ok.json())["team"] == "partners"
    assert len(engine.account_commands) == 1


async def test_a_team_that_is_not_the_owners_is_refused(client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    engine.reps["ana"] = RepEntry(rep_id="ana", team_id="strategic", updated_at=clock.now())
    response = await client.put("/v1/accounts/acme.com", headers=AUTH, json={"owner": "ana", "team": "smb"})
    assert response.status == 422
    assert (await response.json())["error"]["fields"] == [
        {"field": "team", "reason": "rep ana is in team strategic, not smb"}]
    assert engine.account_commands == []


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/accounts/co.uk", {}, "domain"),
    ("/v1/accounts/localhost", {}, "domain"),
    ("/v1/accounts/acme.com", {"colour": "red"}, "colour"),
    ("/v1/accounts/acme.com", {"owner": "not an id!"}, "owner"),
    ("/v1/accounts/acme.com", {"tier": ""}, "tier"),
    ("/v1/accounts/acme.com", {"name": 7}, "name"),
])
async def test_bad_input_is_a_422_naming_the_field(client: Client, engine: FakeEngine, path: str,
                                                   body: dict[str, Any], field: str) -> None:
    response = await client.put(path, headers=AUTH, json=body)
    assert response.status == 422
    answer = await response.json()
    documented("put", 422, answer)
    assert [f["field"] for f in answer["error"]["fields"]] == [field]
    assert engine.account_commands == []


@pytest.mark.parametrize(("path", "domain", "kind"), [
    ("/v1/accounts/gmail.com", "gmail.com", "free"),
    ("/v1/accounts/mail.Yahoo.com", "yahoo.com", "free"),
    ("/v1/accounts/mailinator.com", "mailinator.com", "disposable"),
])
async def test_a_mail_providers_domain_is_a_422_naming_domain(client: Client, engine: FakeEngine, path: str,
                                                               domain: str, kind: str) -> None:
    response = await client.put(path, headers=AUTH, json={"name": "Everyone", "team": "t"})
    assert response.status == 422
    answer = await response.json()
    documented("put", 422, answer)
    assert answer["error"]["fields"] == [{"field": "domain", "reason": (
        f"{domain} is a {kind} e-mail provider's domain: its addresses belong to anyone, not to one company; "
        "give the company's own domain")}]
    assert engine.account_commands == []


async def test_an_account_made_before_the_check_can_still_be_read_and_deleted(
        client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    engine.accounts["gmail.com"] = Account(domain="gmail.com", name="x", team="t", updated_at=clock.now())
    assert (await client.get("/v1/accounts/gmail.com", headers=AUTH)).status == 200
    assert (await client.delete("/v1/accounts/gmail.com", headers=AUTH)).status == 202


async def test_get_and_delete(client: Client, engine: FakeEngine, clock: FakeClock) -> None:
    missing = await client.get("/v1/accounts/acme.com", headers=AUTH)
    assert missing.status == 404
    documented("get", 404, await missing.json())
    assert (await client.delete("/v1/accounts/acme.com", headers=AUTH)).status == 404

    engine.accounts["acme.com"] = Account(domain="acme.com", name="Acme", owner="ana", team="t", updated_at=clock.now())
    found = await client.get("/v1/accounts/WWW.Acme.com", headers=AUTH)  # any host of the domain
    assert found.status == 200
    body = await found.json()
    documented("get", 200, body)
    assert (body["domain"], body["owner"], body["team"], body["tier"]) == ("acme.com", "ana", "t", None)
    assert ("account", "acme.com") in engine.forwarded

    removed = await client.delete("/v1/accounts/acme.com", headers=AUTH)
    assert removed.status == 202
    documented("delete", 202, await removed.json())
    [(domain, command)] = engine.account_commands
    assert domain == "acme.com" and command == RemoveAccount(domain="acme.com", at=clock.now())


async def test_accounts_need_the_api_key(client: Client, engine: FakeEngine) -> None:
    for method in ("get", "put", "delete"):
        response = await client.request(method, "/v1/accounts/acme.com", json={})
        assert response.status == 401
    assert engine.account_commands == []


ROUTING_DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


def _documented_put() -> tuple[dict[str, Any], dict[str, Any]]:
    """docs/routing.md section 1: the ``PUT /v1/accounts/acme.com`` body and the answer it shows."""
    text = ROUTING_DOC.read_text(encoding="utf-8")
    request = re.search(r"-X PUT \$API/v1/accounts/acme\.com .*?-d '(\{.*?\})'\n", text, re.S)
    assert request is not None
    answer = ""
    for line in text[request.end():].splitlines():
        answer += line.lstrip("#").strip().removeprefix("→ 202").strip() + " "
        if answer.count("{") == answer.count("}"):
            break
    return json.loads(request[1]), json.loads(answer)


async def test_the_documented_put_answer_is_what_the_api_answers(client: Client, engine: FakeEngine,
                                                                 clock: FakeClock) -> None:
    """The answer shows the owner's team (Ana is in ent-na in the doc's example), not the tier."""
    body, answer = _documented_put()
    engine.reps["ana"] = RepEntry(rep_id="ana", team_id="ent-na", updated_at=clock.now())
    response = await client.put("/v1/accounts/acme.com", headers=AUTH, json=body)
    assert response.status == 202
    assert await response.json() == answer

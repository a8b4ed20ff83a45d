"""The owner answers only once its tables are recovered: right after a start or in a rebalance
the tables are empty or moving, so an existing lead read as a 404 and a partial PUT of an
existing rep was taken for a new one. Until then the answer is a 503 to retry."""
from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

import streams.web as web

OWN = URL("http://127.0.0.1:6066")


def engine(*, settled: bool) -> web.Engine:
    engine = web.Engine.__new__(web.Engine)  # no app: only the ownership answer is under test
    engine.app = SimpleNamespace(tables_settled=lambda: settled)  # type: ignore[assignment]
    engine._own = web.Engine._ident(OWN)
    engine.owner_of = lambda entity, key: OWN  # type: ignore[method-assign]
    return engine


@pytest.mark.parametrize("relayed", [False, True], ids=["asked directly", "relayed by another worker"])
async def test_the_owner_loading_its_tables_answers_503_retry_not_a_wrong_answer(relayed: bool) -> None:
    headers = {"X-Leadflow-Forwarded": "1"} if relayed else {}
    request = make_mocked_request("GET", "/v1/leads/ld_1", headers=headers)
    answer = await engine(settled=False).forward_to_owner("lead", "ld_1", request)
    assert answer is not None and answer.status == 503 and answer.headers["Retry-After"] == "2"
    assert b"loading its tables" in orjson.loads(answer.body)["error"]["message"].encode()  # type: ignore[arg-type]
    # Once recovered, the owner answers itself.
    assert await engine(settled=True).forward_to_owner("lead", "ld_1", request) is None


def not_owner(owner: URL) -> web.Engine:
    engine = web.Engine.__new__(web.Engine)
    engine.app = SimpleNamespace(tables_settled=lambda: True)  # type: ignore[assignment]
    engine._own = web.Engine._ident(OWN)
    engine.owner_of = lambda entity, key: owner  # type: ignore[method-assign]
    return engine


async def test_a_relayed_request_that_reaches_a_worker_not_owning_the_key_is_503_never_a_local_answer() -> None:
    # Ownership moved while the request was relayed, or a client sent the header itself: this
    # worker's tables do not hold the key (a wrong 404; a partial PUT taken for a new rep).
    request = make_mocked_request("PUT", "/v1/reps/ana", headers={"X-Leadflow-Forwarded": "1"})
    answer = await not_owner(URL("http://10.0.0.9:6066")).forward_to_owner("rep", "ana", request)
    assert answer is not None and answer.status == 503 and answer.headers["Retry-After"] == "2"
    assert b"moving between workers" in answer.body  # type: ignore[operator]


async def test_the_relay_sends_the_path_as_received_to_an_owner_at_a_private_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import ClientSession, web as aioweb
    from aiohttp.test_utils import TestServer

    seen: list[str] = []

    async def owner_handler(request: aioweb.Request) -> aioweb.Response:
        seen.append(request.raw_path)
        return aioweb.json_response({"ok": True})

    app = aioweb.Application()
    app.router.add_route("*", "/{tail:.*}", owner_handler)
    async with TestServer(app, host="127.0.0.1") as server, ClientSession() as session:
        # The webhook guard's session would refuse 127.0.0.1 (a private address, as a VPC's are).
        monkeypatch.setattr(web, "runtime", SimpleNamespace(resources=SimpleNamespace(relay_session=session)))
        owner = URL(f"http://127.0.0.1:{server.port}")
        request = make_mocked_request("GET", "/v1/reps/%2e%2e?x=%41")
        answer = await not_owner(owner).forward_to_owner("rep", "..", request)
    assert answer is not None and answer.status == 200
    assert seen == ["/v1/reps/%2e%2e?x=%41"]  # not normalised into /v1/ by decoding

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

"""A client that closes its connection before its request is read is not a bug: one INFO line, no
traceback (was an ERROR with a traceback per request while a worker was frozen or stopping)."""
from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from connectors.api.errors import error_middleware


async def test_a_connection_reset_while_reading_the_body_is_one_info_line_without_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("Connection lost")

    request = make_mocked_request("POST", "/v1/leads/ld_1/disposition")
    with caplog.at_level(logging.INFO, logger="connectors.api.errors"):
        answer = await error_middleware(request, handler)
    assert answer.status == 499
    records = [r for r in caplog.records if r.name == "connectors.api.errors"]
    assert [(r.levelno, r.exc_info) for r in records] == [(logging.INFO, None)]
    assert "closed the connection before POST /v1/leads/ld_1/disposition was read" in records[0].getMessage()


async def test_a_bug_is_still_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise KeyError("bug")

    answer = await error_middleware(make_mocked_request("GET", "/v1/leads/ld_1"), handler)
    assert answer.status == 500
    (record,) = [r for r in caplog.records if r.name == "connectors.api.errors"]
    assert record.levelno == logging.ERROR and record.exc_info is not None

"""CSV import: streamed reading, per-row NDJSON results, chunked capture, limits, bad files, and ``leadflow import``."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from jsonschema import Draft202012Validator

from connectors.api.bulk import CHUNK_ROWS
from connectors.api.openapi import openapi_document
from leadflow.cli import main
from leadflow.errors import TransientError
from ops.metrics import Metrics
from tests.connectors.conftest import AUTH, KEYS, Client, ClientFactory, FakeEngine
from tests.connectors.test_api import error_of, fields_of, sample
from tests.connectors.test_openapi import _conforms

CSV = {**AUTH, "Content-Type": "text/csv"}
DOC = openapi_document()
LINE = Draft202012Validator({"$ref": "#/components/schemas/ImportLine", "components": DOC["components"]})

Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
def serve(make_client: ClientFactory) -> Serve:
    return make_client


@pytest.fixture
async def client(serve: Serve) -> Client:
    return await serve()


async def ndjson(response: ClientResponse) -> list[dict[str, Any]]:
    assert response.status == 202, await response.text()
    assert response.content_type == "application/x-ndjson"
    lines = [orjson.loads(line) for line in (await response.read()).splitlines()]
    for line in lines[:500] + lines[-2:]:  # (the schema check is slow; the rest are the same kind)
        assert not list(LINE.iter_errors(line)), line  # every line as documented
    assert "columns" in lines[0] and "summary" in lines[-1]
    return lines


def rows(lines: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {line["row"]: line for line in lines if "row" in line}


async def test_a_mixed_file_gets_a_result_per_row(client: Client, engine: FakeEngine, metrics: Metrics) -> None:
    body = ("\ufeffE-mail,First Name,Last Name,Company Name,Phone,Country,Plan,Notes\r\n"
            "ana.garcia@example.com,Ana,García,\"Acme, Iberia\",+34 612 345 678,es,team,\"Line one\r\nline two\"\r\n"
            "not-an-email,Bo,,Northwind,,,,\r\n"
            "\r\n"
            ",,,,,,,\r\n"
            "LI@example.org,Li,,,,SG,,\r\n"
            ",Sam,,,020 7946 0018,GB,\"He said \"\"call me\"\"\",\r\n"
            "ana.garcia@example.com,Ana,,,,,,").encode()  # no newline at the end; the first person again
    lines = await ndjson(await client.post("/v1/leads/import", data=body, headers=CSV))
    assert lines[0]["columns"] == {"E-mail": "email", "First Name": "first_name", "Last Name": "last_name",
                                   "Company Name": "company", "Phone": "phone", "Country": "country",
                                   "Plan": "attributes.Plan", "Notes": "message"}
    result = rows(lines)
    assert sorted(result) == [1, 2, 5, 6, 7]  # blank rows 3 and 4 are skipped, still counted
    assert [result[n]["status"] for n in (1, 2, 5, 6, 7)] == ["accepted", "rejected", "accepted", "accepted",
                                                              "duplicate"]
    assert result[2]["errors"] == [{"field": "email", "reason": "An email address must have an @-sign."}]
    assert result[7]["lead_id"] == result[1]["lead_id"]
    assert lines[-1] == {"summary": {"rows": 5, "accepted": 3, "duplicate": 1, "rejected": 1}}

    ana, li, sam, _ = (orjson.loads(value) for _, value in engine.captured)
    assert ana["company"] == "Acme, Iberia" and ana["message"] == "Line one\r\nline two"
    assert ana["attributes"] == {"Plan": "team"} and ana["last_name"] == "García"
    assert li["email"] == "LI@example.org" and "attributes" not in li
    assert sam["attributes"] == {"Plan": 'He said "call me"'} and sam["phone"] == "020 7946 0018"
    assert {r["_meta"]["channel"] for r in (ana, li, sam)} == {"csv"}
    assert sample(metrics, "leadflow_leads_captured_total", source="web-form", channel="csv") == 4
    assert sample(metrics, "leadflow_leads_rejected_total", channel="csv", reason="invalid") == 1


async def test_semicolons_a_source_and_full_names(client: Client, engine: FakeEngine, metrics: Metrics) -> None:
    body = '"Name";"Mail";"Job Title";Source\nAna García López;ana@example.com;"CTO; Ops";\nBo;bo@example.com;;partner-x\n'
    response = await client.post("/v1/leads/import?source=trade-show", data=body.encode(), headers=CSV)
    lines = await ndjson(response)
    assert lines[0]["columns"]["Name"] == "first_name last_name"
    ana, bo = (orjson.loads(value) for _, value in engine.captured)
    assert (ana["first_name"], ana["last_name"], ana["title"]) == ("Ana", "García López", "CTO; Ops")
    assert ana["_meta"]["default_source"] == "trade-show" and bo["source"] == "partner-x"
    # The metric is labelled by the API key, never by free-text sources.
    assert sample(metrics, "leadflow_leads_captured_total", source="web-form", channel="csv") == 2


async def test_a_header_alone_is_an_empty_import(client: Client, engine: FakeEngine) -> None:
    lines = await ndjson(await client.post("/v1/leads/import", data=b"email,phone\r\n", headers=CSV))
    assert lines == [{"columns": {"email": "email", "phone": "phone"}},
                     {"summary": {"rows": 0, "accepted": 0, "duplicate": 0, "rejected": 0}}]
    assert engine.captured == []


async def test_a_row_with_more_cells_than_columns_is_rejected(client: Client) -> None:
    body = b"email,company\na@example.com,Acme,,\nb@example.com,Acme,surprise\n"
    result = rows(await ndjson(await client.post("/v1/leads/import", data=body, headers=CSV)))
    assert result[1]["status"] == "accepted"  # trailing empty cells are what spreadsheets write
    assert result[2]["errors"] == [{"field": "(row)", "reason": "the row has 3 cells, the header names 2 columns"}]


async def test_a_huge_file_is_read_and_captured_as_it_streams(
        client: Client, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    total, per_chunk = 20_000, 1_000
    sent = 0
    captures: list[tuple[int, int]] = []  # (records, body rows the client had sent by then)
    original = engine.capture

    async def capture(records: list[tuple[str, bytes]]) -> None:
        captures.append((len(records), sent))
        await original(records)

    monkeypatch.setattr(engine, "capture", capture)

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"email,first_name,company\n"
        for start in range(0, total, per_chunk):
            yield b"".join(b"user%d@example.com,User,Acme %d\n" % (n, n % 97) for n in range(start, start + per_chunk))
            sent = start + per_chunk
            await asyncio.sleep(0)  # let the server read, as a network would

    response = await client.post("/v1/leads/import", data=body(), headers=CSV)
    lines = await ndjson(response)
    assert lines[-1]["summary"] == {"rows": total, "accepted": total, "duplicate": 0, "rejected": 0}
    assert len(lines) == total + 2
    # Captured in chunks, never the whole file at once, and already while it was being sent:
    # the memory held is a chunk, not the file.
    assert [n for n, _ in captures] == [CHUNK_ROWS] * (total // CHUNK_ROWS)
    assert captures[0][1] < total // 2
    assert len(engine.captured) == total


async def test_a_row_limit_found_early_refuses_the_file(serve: Serve, engine: FakeEngine) -> None:
    client = await serve(max_import_rows=5)
    body = b"email\n" + b"".join(b"u%d@example.com\n" % n for n in range(7))
    response = await client.post("/v1/leads/import", data=body, headers=CSV)
    error = await error_of(response, 413, "too_many_rows")
    assert "at most 5 rows" in fields_of(error)["rows[6]"]
    await _conforms(response, "/v1/leads/import", "post")
    assert engine.captured == []


async def test_a_row_limit_found_later_ends_the_stream_saying_where(serve: Serve, engine: FakeEngine) -> None:
    client = await serve(max_import_rows=250)
    body = b"email\n" + b"".join(b"u%d@example.com\n" % n for n in range(300))
    lines = await ndjson(await client.post("/v1/leads/import", data=body, headers=CSV))
    assert len(rows(lines)) == 250 and len(engine.captured) == 250
    assert lines[-1]["error"]["code"] == "too_many_rows"
    assert lines[-1]["summary"] == {"rows": 250, "accepted": 250, "duplicate": 0, "rejected": 0,
                                    "resume_from_row": 251}


async def test_bad_encoding_is_a_400_naming_the_row_and_a_charset_fixes_it(
        client: Client, engine: FakeEngine) -> None:
    body = "email,company\na@example.com,Acme\nb@example.com,Café Olé\n".encode("latin-1")
    response = await client.post("/v1/leads/import", data=body, headers=CSV)
    error = await error_of(response, 400, "bad_encoding")
    assert "row 2 (line 3) is not valid utf-8" in fields_of(error)["rows[2]"]
    await _conforms(response, "/v1/leads/import", "post")
    assert engine.captured == []

    fixed = await client.post("/v1/leads/import", data=body, headers={**CSV, "Content-Type": "text/csv; charset=latin-1"})
    assert rows(await ndjson(fixed))[2]["status"] == "accepted"
    assert orjson.loads(engine.captured[1][1])["company"] == "Café Olé"


async def test_bad_encoding_after_the_first_chunk_stops_the_stream_there(client: Client, engine: FakeEngine) -> None:
    body = b"email\n" + b"".join(b"u%d@example.com\n" % n for n in range(300)) + b"caf\xe9@example.com\n"
    lines = await ndjson(await client.post("/v1/leads/import", data=body, headers=CSV))
    assert len(engine.captured) == 300
    assert lines[-1]["error"]["code"] == "bad_encoding" and lines[-1]["summary"]["resume_from_row"] == 301


@pytest.mark.parametrize(("body", "status", "code", "field", "reason"), [
    (b"", 422, "invalid_header", "rows[0]", "header row"),
    (b"\n\n", 422, "invalid_header", "rows[0]", "header row"),
    (b"first_name,company\nAna,Acme\n", 422, "invalid_header", "columns", "no column holds an e-mail"),
    (b"E-mail,Mail\na@example.com,b@example.com\n", 422, "invalid_header", "columns[1]", "like 'E-mail'"),
    (b"email," + b",".join(b"q%d" % n for n in range(51)) + b"\n", 422, "invalid_header", "columns", "at most 50"),
    (b'email,company\na@example.com,"Acme\n', 400, "malformed_csv", "rows[1]", "never closed"),
    (b"email,company\n" + b"a" * 70_000, 400, "malformed_csv", "rows[1]", "longer than 64 KiB"),
    (b"email\xff,company\n", 400, "bad_encoding", "rows[0]", "the header row (line 1)"),
    (b"email,company\ra@example.com,Acme\r", 400, "malformed_csv", "rows[0]", "bare CR (classic Mac format)"),
    (b"email,company\r" + b"a@example.com,Acme\r" * 4000, 400, "malformed_csv", "rows[0]", "bare CR"),
])
async def test_a_file_that_cannot_be_read_is_a_4xx_naming_where(
        client: Client, engine: FakeEngine, body: bytes, status: int, code: str, field: str, reason: str) -> None:
    response = await client.post("/v1/leads/import", data=body, headers=CSV)
    error = await error_of(response, status, code)
    assert reason in fields_of(error)[field]
    await _conforms(response, "/v1/leads/import", "post")
    assert engine.captured == []


@pytest.mark.parametrize(("ctype", "reason"), [
    ("application/json", "expected Content-Type text/csv"),
    ("text/csv; charset=utf-16", "not ASCII-compatible"),
    ("text/csv; charset=klingon", "unknown charset"),
])
async def test_only_csv_in_an_ascii_compatible_charset_is_taken(client: Client, ctype: str, reason: str) -> None:
    response = await client.post("/v1/leads/import", data=b"email\na@example.com\n",
                                 headers={**AUTH, "Content-Type": ctype})
    assert reason in (await error_of(response, 415, "unsupported_media_type"))["message"]


async def test_a_bad_source_or_no_key_is_refused(client: Client) -> None:
    await error_of(await client.post("/v1/leads/import", data=b"email\n", headers={"Content-Type": "text/csv"}),
                   401, "unauthorized")
    error = await error_of(await client.post("/v1/leads/import?source=a%20b", data=b"email\n", headers=CSV), 422)
    assert "source" in fields_of(error)


async def test_kafka_down_before_the_first_chunk_is_503_and_after_it_ends_the_stream(
        client: Client, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"email\n" + b"".join(b"u%d@example.com\n" % n for n in range(450))
    engine.capture_error = TransientError("no ack")
    response = await client.post("/v1/leads/import", data=body, headers=CSV)
    await error_of(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "5"

    engine.capture_error = None
    calls = 0
    original = engine.capture

    async def flaky(records: list[tuple[str, bytes]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise TransientError("leader moved")
        await original(records)

    monkeypatch.setattr(engine, "capture", flaky)
    lines = await ndjson(await client.post("/v1/leads/import", data=body, headers=CSV))
    assert len(engine.captured) == CHUNK_ROWS
    assert lines[-1]["error"]["code"] == "unavailable"
    assert lines[-1]["summary"]["resume_from_row"] == CHUNK_ROWS + 1


async def test_an_idempotency_key_makes_a_retried_import_a_replay(client: Client, engine: FakeEngine) -> None:
    body = b"email\na@example.com\nb@example.com\n"
    headers = {**CSV, "Idempotency-Key": "import-2026-01-05"}
    for _ in range(2):
        await ndjson(await client.post("/v1/leads/import", data=body, headers=headers))
    ids = [orjson.loads(value)["_meta"]["capture_id"] for _, value in engine.captured]
    assert ids[:2] == ids[2:] and ids[0] != ids[1]  # same rows, same capture ids: the lead agent drops them


async def test_a_corrected_file_sent_with_the_same_key_captures_the_corrections(client: Client, engine: FakeEngine) -> None:
    headers = {**CSV, "Idempotency-Key": "import-2026-01-05"}
    first = b"email,company\na@example.com,Acme\nb@example.com,Initech\n"
    corrected = b"email,company\na@example.com,Acme\nb@example.com,Initech Iberia\n"
    for body in (first, corrected):
        await ndjson(await client.post("/v1/leads/import", data=body, headers=headers))
    ids = [orjson.loads(value)["_meta"]["capture_id"] for _, value in engine.captured]
    assert ids[2] == ids[0]  # row 1 unchanged: a replay the lead agent drops
    assert ids[3] != ids[1]  # row 2 corrected: a new touch, and its company is kept
    assert orjson.loads(engine.captured[3][1])["company"] == "Initech Iberia"


# --- leadflow import ------------------------------------------------------------------------


async def _run_cli(*argv: str) -> int:
    # The CLI runs its own event loop; the test server keeps serving on this one.
    return await asyncio.to_thread(main, ["import", *argv])


async def test_the_cli_imports_and_exits_0_when_every_row_is_taken(
        client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEADFLOW_API_KEY", KEYS["web-form"])
    path = tmp_path / "leads.csv"
    path.write_text("E-mail,Company\n" + "".join(f"u{n}@example.com,Acme\n" for n in range(450)) + "u1@example.com,\n")
    assert await _run_cli(str(path), "--url", str(client.make_url("/")), "--source", "fair") == 0
    out, err = capsys.readouterr()
    assert "451 rows" in out and "450 accepted, 1 duplicate, 0 rejected" in out
    assert "E-mail -> email" in err


async def test_the_cli_exits_1_with_the_first_errors_when_rows_are_rejected(
        client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("email\n" + "".join(f"bad{n}\n" for n in range(15)) + "ok@example.com\n")
    code = await _run_cli(str(path), "--url", str(client.make_url("/")), "--key", KEYS["partner"])
    out, _ = capsys.readouterr()
    assert code == 1
    assert "1 accepted, 0 duplicate, 15 rejected" in out
    assert "row 1: email: An email address must have an @-sign." in out
    assert out.count("  row ") == 10  # the first ten


async def test_the_cli_exits_2_when_the_worker_refuses_the_file(
        client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes("email\ncafé@example.com\n".encode("latin-1"))
    assert await _run_cli(str(path), "--url", str(client.make_url("/")), "--key", KEYS["partner"]) == 2
    err = capsys.readouterr().err
    assert "bad_encoding" in err and "rows[1]" in err
    # The CLI's own option, not the API's Content-Type header, in both the message and the row's reason.
    assert err.count("is not valid utf-8") == 2 and err.count("name its encoding with --encoding") == 2
    assert "Content-Type" not in err and "charset=" not in err
    # Naming the file's charset fixes it.
    assert await _run_cli(str(path), "--url", str(client.make_url("/")), "--key", KEYS["partner"],
                          "--encoding", "latin-1") == 0


async def test_the_cli_gives_its_own_advice_when_the_encoding_is_wrong_past_the_first_chunk(
        client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "leads.csv"
    rows = "".join(f"u{n}@example.com,Acme\n" for n in range(300))
    path.write_bytes(("email,company\n" + rows + "café@example.com,Acme\n").encode("latin-1"))
    assert await _run_cli(str(path), "--url", str(client.make_url("/")), "--key", KEYS["partner"]) == 2
    err = capsys.readouterr().err
    assert "stopped before row 301: bad_encoding: row 301 (line 302) is not valid utf-8" in err
    assert "name its encoding with --encoding, e.g. --encoding windows-1252" in err and "Content-Type" not in err


async def test_the_cli_exits_2_on_usage_and_connection_problems(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LEADFLOW_API_KEY", raising=False)
    path = tmp_path / "leads.csv"
    path.write_text("email\na@example.com\n")
    assert await _run_cli(str(path)) == 2
    assert "LEADFLOW_API_KEY" in capsys.readouterr().err
    assert await _run_cli(str(tmp_path / "missing.csv"), "--key", "k") == 2
    assert "no such file" in capsys.readouterr().err
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await _run_cli(str(path), "--key", "k", "--url", f"http://127.0.0.1:{port}") == 2
    assert "ClientConnectorError" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["import"])
    assert usage.value.code == 2


def test_the_cli_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["import", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "leadflow import trade-show.csv --source trade-show-2026" in out and "exit status" in out

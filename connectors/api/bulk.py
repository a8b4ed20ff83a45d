"""``POST /v1/leads/import``: a CSV file of leads, captured while it streams in, answered row by row.

The body is read as it arrives, line by line through an incremental decoder into the ``csv``
module, and captured in chunks of ``CHUNK_ROWS`` rows (each chunk on Kafka, acknowledged,
before its results are sent), so memory stays flat whatever the file's size.

The answer is NDJSON (``application/x-ndjson``), always, so a client can show progress and a
100 000-row import never has to fit one JSON document::

    {"columns": {"E-mail": "email", "Plan": "attributes.Plan"}}
    {"row": 1, "status": "accepted", "lead_id": "ld_..."}
    {"row": 2, "status": "rejected", "errors": [{"field": "email", "reason": "..."}]}
    {"summary": {"rows": 2, "accepted": 1, "duplicate": 0, "rejected": 1}}

``row`` counts the records after the header (row 1 is the first data row; blank rows are
skipped but counted). The status (``202``) is sent once the first chunk is stored: a problem
found before that (bad header, bad encoding, too many rows, Kafka down) is a plain ``4xx``/``503``
and nothing was captured. A problem found later ends the stream with
``{"error": {...}, "summary": {..., "resume_from_row": n}}``: rows before ``n`` are stored.
"""
from __future__ import annotations

import codecs
import csv
import logging
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import StreamReader, web

from connectors.api.context import ApiContext, authenticate, context
from connectors.api.errors import ApiError
from connectors.api.leads import capture_id, capture_many, idempotency_key
from connectors.lead_input import FieldError
from connectors.providers.fields import FULL_NAME, MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTES, LeadDraft, lead_field
from leadflow.errors import TransientError

__all__ = ["routes", "CHUNK_ROWS", "CSV_CONTENT_TYPES", "MAX_RECORD_BYTES", "Column", "CsvProblem", "CsvRecords",
           "map_columns"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

CHUNK_ROWS = 200
MAX_RECORD_BYTES = 64 * 1024
CSV_CONTENT_TYPES = ("text/csv", "application/csv")
_READ_BYTES = 64 * 1024
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_IDENTITY = ("email", "phone", "external_id")
# Classic Mac files (old Excel for Mac's "CSV (Macintosh)") end lines with a bare CR: say so
# rather than let the csv module's advice about "universal-newline mode" reach the user.
_BARE_CR = "lines end with a bare CR (classic Mac format); save the file with LF or CRLF line ends"


class CsvProblem(Exception):
    """The file cannot be read past ``row``: ``status`` and ``code`` say how to answer."""

    def __init__(self, row: int, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.row, self.status, self.code, self.message = row, status, code, message

    def api_error(self) -> ApiError:
        return ApiError(self.status, self.code, self.message, [FieldError(f"rows[{self.row}]", self.message)])


class _Lines:
    """What the ``csv`` reader pulls from: only ever the lines of one complete record."""

    def __init__(self) -> None:
        self.queue: deque[str] = deque()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if not self.queue:
            raise StopIteration
        return self.queue.popleft()


def _still_quoted(line: str, in_quotes: bool, delimiters: str) -> bool:
    """Whether a quoted field is still open after ``line`` (the excel dialect's rules)."""
    if not in_quotes and '"' not in line:
        return False  # the common case, without a character loop
    at_field_start = not in_quotes
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if in_quotes:
            if c == '"':
                if i + 1 < n and line[i + 1] == '"':
                    i += 1  # an escaped quote
                else:
                    in_quotes = False
        elif c == '"' and at_field_start:
            in_quotes = True
        at_field_start = not in_quotes and c in delimiters
        i += 1
    return in_quotes


class CsvRecords:
    """The records of a CSV body as they arrive: ``await header()``, then ``await next()`` until ``None``."""

    def __init__(self, content: StreamReader, encoding: str) -> None:
        self._content = content
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._pending = bytearray()
        self._eof = False
        self._line = 0
        self._row = -1  # the header is row 0
        self._lines = _Lines()
        self.delimiter = ",;\t"  # any of them until the header has chosen one
        self._reader: Iterator[list[str]] = csv.reader(self._lines)

    async def _physical_line(self) -> str | None:
        while True:
            end = self._pending.find(b"\n")
            if end >= 0:
                raw = bytes(self._pending[: end + 1])
                del self._pending[: end + 1]
                break
            if len(self._pending) > MAX_RECORD_BYTES:
                hint = f" ({_BARE_CR}?)" if b"\r" in self._pending else ""
                raise self._problem(400, "malformed_csv", f"is longer than {MAX_RECORD_BYTES // 1024} KiB "
                                                          f"without a line break{hint}")
            if self._eof:
                if not self._pending:
                    return None
                raw = bytes(self._pending)
                self._pending.clear()
                break
            chunk = await self._content.read(_READ_BYTES)
            if chunk:
                self._pending += chunk
            else:
                self._eof = True
        self._line += 1
        try:
            return self._decoder.decode(raw, final=self._eof and not self._pending)
        except UnicodeDecodeError as exc:
            problem = self._problem(400, "bad_encoding", f"(line {self._line}) is not valid {self._encoding} at "
                                    f"byte {exc.start + 1} of the line; save the file as UTF-8 or name its charset, "
                                    "e.g. Content-Type: text/csv; charset=windows-1252")
            raise problem from None

    def _problem(self, status: int, code: str, what: str) -> CsvProblem:
        row = self._row + 1
        name = "the header row" if row == 0 else f"row {row}"
        return CsvProblem(row, status, code, f"{name} {what}")

    async def _record(self) -> list[str] | None:
        lines: list[str] = []
        size = 0
        in_quotes = False
        while True:
            line = await self._physical_line()
            if line is None:
                if in_quotes:
                    raise self._problem(400, "malformed_csv", "has a quoted field that is never closed")
                return lines or None
            lines.append(line)
            size += len(line)
            if size > MAX_RECORD_BYTES:
                raise self._problem(400, "malformed_csv", f"is longer than {MAX_RECORD_BYTES // 1024} KiB "
                                                          "(a quoted field that is never closed?)")
            in_quotes = _still_quoted(line, in_quotes, self.delimiter)
            if not in_quotes:
                return lines

    async def _cells(self) -> list[str] | None:
        lines = await self._record()
        if lines is None:
            return None
        self._row += 1
        self._lines.queue.extend(lines)
        try:
            return next(self._reader)
        except csv.Error as exc:
            # The reader may be mid-record after an error: start a fresh one for the next row.
            self._lines.queue.clear()
            self._reader = csv.reader(self._lines, delimiter=self.delimiter)
            raise _RowInvalid(f"cannot be parsed as CSV: {exc}") from None

    async def header(self) -> list[str] | None:
        """The first record, which names the columns; picks ``;`` or tab when it has no comma."""
        lines = await self._record()
        if lines is None:
            return None
        first = "".join(lines)
        self.delimiter = "," if "," in first else next((d for d in (";", "\t") if d in first), ",")
        self._reader = csv.reader(self._lines, delimiter=self.delimiter)
        self._row = 0
        self._lines.queue.extend(lines)
        try:
            return next(self._reader)
        except csv.Error as exc:
            why = _BARE_CR if "\r" in first.rstrip("\r\n") else str(exc)
            raise CsvProblem(0, 400, "malformed_csv", f"the header row cannot be parsed: {why}") from None

    async def next(self) -> tuple[int, list[str] | str] | None:
        """``(row, cells)``, ``(row, reason)`` for a row the csv module refuses, or ``None`` at the end."""
        try:
            cells = await self._cells()
        except _RowInvalid as exc:
            return self._row, str(exc)
        return None if cells is None else (self._row, cells)


class _RowInvalid(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    target: str | None  # a lead field, FULL_NAME, or None: an attribute called ``name``

    def describe(self) -> str:
        if self.target is None:
            return f"attributes.{self.name}"
        return "first_name last_name" if self.target == FULL_NAME else self.target


def map_columns(header: list[str]) -> list[Column]:
    """What each column holds; a 422 naming the columns when the header cannot work."""
    columns: list[Column] = []
    errors: list[FieldError] = []
    holder: dict[str, str] = {}
    for index, raw in enumerate(header):
        name = raw.strip().lstrip("\ufeff") or f"column {index + 1}"
        target = lead_field(name)
        if target == "attributes":
            target = None
        if target is not None and target in holder:
            errors.append(FieldError(f"columns[{index}]", f"{name!r} holds {target}, like {holder[target]!r}"))
        elif target is not None:
            holder[target] = name
        elif len(name) > MAX_ATTRIBUTE_KEY:
            errors.append(FieldError(f"columns[{index}]", f"an extra column's name is at most {MAX_ATTRIBUTE_KEY} "
                                                          "characters"))
        columns.append(Column(name, target))
    extra = sorted({c.name for c in columns if c.target is None})
    if len(extra) > MAX_ATTRIBUTES:
        errors.append(FieldError("columns", f"{len(extra)} columns are not lead fields; at most {MAX_ATTRIBUTES} "
                                            "can be kept as attributes"))
    if not any(target in holder for target in _IDENTITY):
        errors.append(FieldError("columns", "no column holds an e-mail, a phone or an external id; the header "
                                            f"row names: {', '.join(c.name for c in columns)[:300]}"))
    if errors:
        raise ApiError(422, "invalid_header", "the header row cannot be used", errors)
    return columns


def _row_lead(columns: list[Column], cells: list[str]) -> dict[str, Any] | str:
    """The lead of one row, or why the row cannot be one."""
    if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns):]):
        return f"the row has {len(cells)} cells, the header names {len(columns)} columns"
    draft = LeadDraft()
    for column, cell in zip(columns, cells):
        if column.target is None:
            draft.add_attribute(column.name, cell)
        else:
            draft.set(column.target, cell, given_as=column.name)
    return draft.as_lead()


class _Import:
    """One import: reads chunks, captures them, writes their results."""

    def __init__(self, ctx: ApiContext, caller: str, default_source: str, idempotency_key: str | None,
                 columns: list[Column], records: CsvRecords) -> None:
        self.ctx, self.caller, self.default_source, self.idem = ctx, caller, default_source, idempotency_key
        self.columns, self.records = columns, records
        self.counts = {"rows": 0, "accepted": 0, "duplicate": 0, "rejected": 0}

    async def read_chunk(self) -> tuple[list[tuple[int, list[str] | str]], CsvProblem | None, bool]:
        """Up to ``CHUNK_ROWS`` non-blank rows, the problem that stopped the reading, and whether it ended."""
        rows: list[tuple[int, list[str] | str]] = []
        while len(rows) < CHUNK_ROWS:
            try:
                record = await self.records.next()
            except CsvProblem as exc:
                return rows, exc, False
            if record is None:
                return rows, None, True
            row, cells = record
            if isinstance(cells, list) and not any(c.strip() for c in cells):
                continue  # a blank row
            if self.counts["rows"] + len(rows) >= self.ctx.max_import_rows:
                return rows, CsvProblem(row, 413, "too_many_rows", f"an import holds at most "
                                        f"{self.ctx.max_import_rows} rows; row {row} is one too many"), False
            rows.append((row, cells))
        return rows, None, False

    async def capture(self, rows: list[tuple[int, list[str] | str]]) -> bytes:
        """Capture a chunk (``TransientError``: nothing of it stored) and return its result lines."""
        results: dict[int, dict[str, Any]] = {}
        leads: list[tuple[int, dict[str, Any]]] = []
        for row, cells in rows:
            lead = cells if isinstance(cells, str) else _row_lead(self.columns, cells)
            if isinstance(lead, str):
                self.ctx.metrics.leads_rejected.labels("csv", "invalid").inc()
                results[row] = {"row": row, "status": "rejected", "errors": [{"field": "(row)", "reason": lead}]}
            else:
                leads.append((row, lead))
        outcomes = await capture_many(
            self.ctx, [lead for _, lead in leads], channel="csv", default_source=self.default_source,
            metric_source=self.caller,
            # With a key, a row sent again as it was is a replay; a corrected row is a new touch.
            capture_ids=lambda i, checked: capture_id(self.caller, self.idem, leads[i][0], checked))
        for (row, _), outcome in zip(leads, outcomes):
            results[row] = {"row": row, **outcome.as_dict()}
        out = bytearray()
        for row, _ in rows:
            result = results[row]
            self.counts["rows"] += 1
            self.counts[result["status"]] += 1
            out += orjson.dumps(result) + b"\n"
        return bytes(out)

    async def respond(self, request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse | None = None
        resume_from: int | None = None
        error: dict[str, Any] | None = None
        try:
            while True:
                rows, problem, ended = await self.read_chunk()
                if problem is not None and response is None:
                    raise problem.api_error()  # found before anything was stored
                resume_from = rows[0][0] if rows else (problem.row if problem else None)
                lines = await self.capture(rows) if rows else b""
                if response is None:
                    response = await self._start(request)
                await response.write(lines)
                if problem is not None:
                    resume_from = problem.row
                    error = {"code": problem.code, "message": problem.message,
                             "fields": [{"field": f"rows[{problem.row}]", "reason": problem.message}]}
                    break
                if ended:
                    resume_from = None
                    break
        except TransientError as exc:
            if response is None:
                raise
            error = {"code": "unavailable", "message": f"not stored, retry from row {resume_from}: {exc}"}
        except ConnectionError:
            log.info("a CSV import's client went away after %d rows", self.counts["rows"])
            if response is None:
                raise
            return response  # nobody left to tell
        except Exception:
            if response is None:
                raise
            # A bug, not bad input: the status is sent already, so say it in the stream.
            log.exception("unhandled error in a CSV import")
            error = {"code": "internal", "message": "internal error; rows from resume_from_row were not processed"}
        summary: dict[str, Any] = dict(self.counts)
        if error is not None and resume_from is not None:
            summary["resume_from_row"] = resume_from
        assert response is not None
        await response.write(orjson.dumps({"error": error, "summary": summary} if error else {"summary": summary})
                             + b"\n")
        await response.write_eof()
        return response

    async def _start(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=202, headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(orjson.dumps({"columns": {c.name: c.describe() for c in self.columns}}) + b"\n")
        return response


def _encoding(request: web.Request) -> str:
    ctype = request.content_type if request.headers.get("Content-Type") else ""
    if ctype not in CSV_CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type", f"expected Content-Type text/csv, got {ctype or 'none'}")
    charset = request.charset or "utf-8"
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        raise ApiError(415, "unsupported_media_type", f"unknown charset {charset[:40]!r}") from None
    if any(c.encode(name) != c.encode("ascii") for c in ('\n', ',', ';', '"')):
        raise ApiError(415, "unsupported_media_type", f"charset {name} is not ASCII-compatible; send UTF-8")
    return "utf-8-sig" if name == "utf-8" else name  # utf-8-sig drops a leading BOM (Excel writes one)


@routes.post("/leads/import")
async def import_leads(request: web.Request) -> web.StreamResponse:
    caller = authenticate(request, "capture")
    ctx = context(request)
    encoding = _encoding(request)
    source = request.query.get("source")
    if source is not None and not _SOURCE.match(source):
        raise ApiError(422, "invalid", "the source is not valid",
                       [FieldError("source", "expected 1 to 100 letters, digits, '_', '.' or '-'")])
    idem = idempotency_key(request)
    records = CsvRecords(request.content, encoding)
    try:
        header = await records.header()
    except CsvProblem as exc:
        raise exc.api_error() from None
    if not header or not any(h.strip() for h in header):
        raise ApiError(422, "invalid_header", "the file has no header row; its first row must name the columns",
                       [FieldError("rows[0]", "expected a header row such as: email,first_name,company")])
    run = _Import(ctx, caller.name, source or caller.name, idem, map_columns(header), records)
    return await run.respond(request)

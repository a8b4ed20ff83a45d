"""Facebook (Meta) Lead Ads: the webhook's signature, its ``leadgen`` payload, and fetching a lead's answers.

Meta's webhook only says *that* a lead exists (``leadgen_id`` with its page, form and ad); the
answers are read from the Graph API (``GET /{leadgen_id}``, which returns ``field_data``). That
read is the ``LeadFetcher`` protocol: ``GraphLeadFetcher`` in production, a stand-in in tests.
A payload that already carries ``field_data`` (test mode, or a relay that fetched it) is mapped
directly without a fetch.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiohttp
import orjson

from connectors.lead_input import FieldError
from connectors.providers._shape import PayloadInvalid, array, child, mapping, optional_text, optional_unix_time, text
from connectors.providers.fields import LeadDraft, lead_field
from leadflow.errors import PermanentError, TransientError

__all__ = ["SIGNATURE_HEADER", "GRAPH_API_VERSION", "MAX_CHANGES", "FacebookSettings", "FieldDatum", "LeadFetcher",
           "GraphAccessRefused", "GraphLeadFetcher", "LeadgenChange", "check_signature", "parse_payload", "to_draft"]

SIGNATURE_HEADER = "X-Hub-Signature-256"
#: The Graph API version read by default. Meta retires each version about two years after the
#: next one ships (v21.0 is served until 21 Jan 2027); keep ``graph_api_version`` current.
GRAPH_API_VERSION = "v24.0"
#: Meta batches up to 1000 updates in one webhook notification and retries that same batch for up
#: to 36 h: a lower limit would refuse every retry and lose every lead in it. The body size is
#: bounded by the worker's ``LEADFLOW_MAX_BODY_BYTES``.
MAX_CHANGES = 1000
# Graph API error codes Meta documents as temporary (throttling, service hiccups): retry later.
_TRANSIENT_GRAPH_CODES = frozenset({1, 2, 4, 17, 32, 341, 613})
# Codes Meta's "Handling Errors" page answers with "get a new access token" (102 session, 190
# access token) or that mean a missing permission (10, 200-299): our configuration, fixable, so
# the lead is asked for again (503) rather than given up.
_ACCESS_GRAPH_CODES = frozenset({10, 102, 190, *range(200, 300)})
# Code 100 subcode 33: "does not exist, cannot be loaded due to missing permissions". Within the
# hours Meta redelivers a lead it just announced, that is a token without access to the Page's
# leads far more often than a deleted lead.
_ACCESS_GRAPH_SUBCODES = frozenset({(100, 33)})


@dataclass(frozen=True, slots=True)
class FieldDatum:
    """One answer of a lead form, as the Graph API gives it: ``{"name": ..., "values": [...]}``."""

    name: str
    values: tuple[str, ...]


class LeadFetcher(Protocol):
    """Reads a lead's answers from Meta.

    Raise ``TransientError`` when it may work later (the webhook is answered 503 and Meta
    redelivers it; ``GraphAccessRefused`` when it works once the token or its permissions are
    fixed) and ``PermanentError`` when it never will (the lead is reported rejected).
    """

    async def fetch(self, leadgen_id: str) -> Sequence[FieldDatum]: ...


class GraphAccessRefused(TransientError):
    """The Graph API refused our access token or its permissions: a configuration to fix, not a lost lead.

    The message carries Meta's error code, subcode and type only, never Meta's message text.
    """

    def __init__(self, status: int, code: int | None, subcode: int | None, kind: str) -> None:
        self.code, self.subcode = code, subcode
        super().__init__(f"the Graph API refused the access token or its permissions ({status}, code {code}"
                         f"{f', subcode {subcode}' if subcode is not None else ''}{f', {kind}' if kind else ''}): "
                         "check the Page token in providers.facebook.access_token_env and its leads_retrieval "
                         "permission")


@dataclass(frozen=True, slots=True, kw_only=True)
class FacebookSettings:
    """A Meta app's webhook settings; the secrets come from the environment and never show in a repr."""

    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    source: str = "facebook-lead-ads"
    fetcher: LeadFetcher | None = None
    #: A lead older than this is a replay, not a delivery: Meta retries for up to 36 hours.
    max_age: timedelta = timedelta(hours=48)


def check_signature(app_secret: str, body: bytes, header: str | None) -> str | None:
    """``None`` when ``header`` is ``sha256=<hex HMAC-SHA256 of body>``, else the reason it is not."""
    if not header:
        return f"missing {SIGNATURE_HEADER} header"
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or len(given) != 64:
        return f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>"
    try:
        given_digest = bytes.fromhex(given)
    except ValueError:
        return f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>"
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given_digest):
        return "the signature does not match the body (check the app secret)"
    return None


@dataclass(frozen=True, slots=True)
class LeadgenChange:
    """One ``leadgen`` change of the webhook: a new lead on a page's form."""

    path: str
    leadgen_id: str
    page_id: str | None = None
    form_id: str | None = None
    ad_id: str | None = None
    field_data: tuple[FieldDatum, ...] | None = None
    #: When Meta says the lead was made (``value.created_time``, else the entry's ``time``), and
    #: which of the two (a path) it was: signed with the body, so a replay carries its first time.
    created_at: datetime | None = None
    created_at_path: str = ""


def _graph_id(value: Any, path: str, *, required: bool) -> str | None:
    got = text(value, path, limit=64, numeric_ok=True) if required else optional_text(
        value, path, limit=64, numeric_ok=True)
    if got is not None and not got.isdigit():
        raise PayloadInvalid([FieldError(path, "expected a numeric Graph API id")])
    return got


def _field_data(value: Any, path: str) -> tuple[FieldDatum, ...]:
    out = []
    for index, item in enumerate(array(value, path, limit=100)):
        where = child(path, index)
        entry = mapping(item, where)
        values = array(entry.get("values", []), child(where, "values"), limit=50)
        out.append(FieldDatum(
            name=text(entry.get("name"), child(where, "name"), limit=100),
            # No length limit on an answer: the mapper cuts what does not fit instead of losing the lead.
            values=tuple(text(v, child(child(where, "values"), i), limit=None) for i, v in enumerate(values)
                         if not (isinstance(v, str) and not v.strip())),
        ))
    return tuple(out)


def parse_payload(data: Any) -> tuple[list[LeadgenChange], int]:
    """The payload's ``leadgen`` changes and how many other changes were ignored, or ``PayloadInvalid``."""
    body = mapping(data, "")
    if body.get("object") != "page":
        raise PayloadInvalid([FieldError("object", 'expected "page" (Lead Ads webhooks are Page events)')])
    changes: list[LeadgenChange] = []
    ignored = 0
    for i, entry in enumerate(array(body.get("entry"), "entry", limit=MAX_CHANGES)):
        entry_path = child("entry", i)
        changes_path = child(entry_path, "changes")
        entry_time = optional_unix_time(mapping(entry, entry_path).get("time"), child(entry_path, "time"))
        for j, raw in enumerate(array(mapping(entry, entry_path).get("changes"), changes_path, limit=MAX_CHANGES)):
            where = child(changes_path, j)
            change = mapping(raw, where)
            if change.get("field") != "leadgen":
                ignored += 1  # other Page fields the app may be subscribed to
                continue
            value_path = child(where, "value")
            value = mapping(change.get("value"), value_path)
            leadgen_id = _graph_id(value.get("leadgen_id"), child(value_path, "leadgen_id"), required=True)
            assert leadgen_id is not None
            created_path = child(value_path, "created_time")
            created_at = optional_unix_time(value.get("created_time"), created_path)
            if created_at is None and entry_time is not None:
                created_at, created_path = entry_time, child(entry_path, "time")
            changes.append(LeadgenChange(
                path=where, leadgen_id=leadgen_id,
                page_id=_graph_id(value.get("page_id"), child(value_path, "page_id"), required=False),
                form_id=_graph_id(value.get("form_id"), child(value_path, "form_id"), required=False),
                ad_id=_graph_id(value.get("ad_id"), child(value_path, "ad_id"), required=False),
                field_data=(_field_data(value["field_data"], child(value_path, "field_data"))
                            if value.get("field_data") is not None else None),
                created_at=created_at, created_at_path=created_path if created_at is not None else "",
            ))
            if len(changes) > MAX_CHANGES:
                raise PayloadInvalid([FieldError("entry", f"at most {MAX_CHANGES} leadgen changes per delivery")])
    return changes, ignored


def to_draft(change: LeadgenChange, field_data: Sequence[FieldDatum]) -> LeadDraft:
    """Map a lead form's answers to a lead; the ``leadgen_id`` is its external id."""
    draft = LeadDraft()
    for datum in field_data:
        value = ", ".join(v.strip() for v in datum.values if v.strip())
        target = lead_field(datum.name)
        if target in (None, "source", "external_id", "attributes") or target in draft.fields:
            # A question the form added (or a second e-mail): kept, never allowed to change identity.
            draft.add_attribute(datum.name, value, lenient=True)
        else:
            assert target is not None
            draft.set(target, value, given_as=f"field_data.{datum.name}")
    draft.set("external_id", change.leadgen_id, given_as="leadgen_id")
    for key, id_value in (("facebook_form_id", change.form_id), ("facebook_ad_id", change.ad_id),
                          ("facebook_page_id", change.page_id)):
        if id_value and id_value != "0":  # Meta sends 0 for organic leads and the testing tool
            draft.add_attribute(key, id_value, lenient=True)
    return draft


class GraphLeadFetcher:
    """``LeadFetcher`` over the Graph API, on the process's one ``ClientSession``.

    ``session`` may be a callable returning it, for processes that open their session lazily on
    the running loop. Needs a Page access token with ``leads_retrieval``; every call carries
    ``appsecret_proof`` (HMAC-SHA256 of the token with the app secret), as Meta recommends.
    """

    def __init__(self, session: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession], *,
                 access_token: str, app_secret: str,
                 api_version: str = GRAPH_API_VERSION, base_url: str = "https://graph.facebook.com",
                 timeout_s: float = 5.0) -> None:
        self._session = session
        self._token = access_token
        self._proof = hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()
        self._base = f"{base_url.rstrip('/')}/{api_version}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"GraphLeadFetcher({self._base!r})"

    async def fetch(self, leadgen_id: str) -> Sequence[FieldDatum]:
        if not leadgen_id.isdigit():
            raise PermanentError(f"not a Graph API id: {leadgen_id[:40]!r}")
        session = self._session if isinstance(self._session, aiohttp.ClientSession) else self._session()
        try:
            async with session.get(
                f"{self._base}/{leadgen_id}", params={"fields": "field_data", "appsecret_proof": self._proof},
                headers={"Authorization": f"Bearer {self._token}"}, timeout=self._timeout,
            ) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"graph api unreachable: {type(exc).__name__}") from None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if status != 200:
            error = data.get("error") if isinstance(data, dict) else None
            error = error if isinstance(error, dict) else {}
            code, subcode = error.get("code"), error.get("error_subcode")
            code = code if isinstance(code, int) else None
            subcode = subcode if isinstance(subcode, int) else None
            message = str(error.get("message", ""))[:200]
            if status >= 500 or status == 429 or code in _TRANSIENT_GRAPH_CODES:
                raise TransientError(f"graph api answered {status} (code {code}): {message}")
            if code in _ACCESS_GRAPH_CODES or (code, subcode) in _ACCESS_GRAPH_SUBCODES:
                raise GraphAccessRefused(status, code, subcode, str(error.get("type", ""))[:40])
            raise PermanentError(f"graph api answered {status} (code {code}): {message}")
        try:
            return _field_data(mapping(data, "").get("field_data", []), "field_data")
        except PayloadInvalid as exc:
            raise PermanentError(f"graph api lead has an unexpected shape: {exc}") from None

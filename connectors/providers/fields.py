"""What other systems call a lead's fields ("E-mail", "First Name", "job_title"), and a draft lead built from them.

Shared by every channel that receives name/value pairs rather than our JSON: HTML forms, CSV
headers and the provider webhooks. Values are not validated here; ``validate_lead`` does that
once for every channel, so a form and the JSON API refuse the same things for the same reasons.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from connectors.lead_input import LEAD_FIELDS, FieldError

__all__ = ["FULL_NAME", "MAX_ATTRIBUTES", "MAX_ATTRIBUTE_KEY", "MAX_ATTRIBUTE_VALUE", "LeadDraft", "lead_field",
           "squash"]

#: Not a lead field: split into first and last name when those are not given.
FULL_NAME = "full_name"
#: The bounds ``validate_lead`` puts on ``attributes`` (see ``connectors.lead_input``).
MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTE_VALUE = 50, 100, 200

_SCALAR_FIELDS = tuple(f for f in LEAD_FIELDS if f != "attributes")

# Keys are "squashed" names: lower case, letters and digits only ("E-mail" -> "email").
_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail", "workemail", "businessemail"),
    "phone": ("phone", "phonenumber", "telephone", "tel", "mobile", "mobilephone", "mobilenumber", "cell",
              "cellphone", "workphone", "workphonenumber", "businessphone"),
    "first_name": ("firstname", "givenname", "forename", "fname"),
    "last_name": ("lastname", "surname", "familyname", "lname"),
    FULL_NAME: ("fullname", "name", "contactname", "yourname"),
    "company": ("company", "companyname", "organization", "organisation", "org", "account", "accountname",
                "business", "businessname"),
    "title": ("title", "jobtitle", "position", "role"),
    "country": ("country", "countrycode"),
    "source": ("source", "leadsource"),
    "external_id": ("externalid", "id", "recordid", "leadid"),
    "campaign": ("campaign", "campaignname", "utmcampaign"),
    "message": ("message", "comments", "comment", "notes", "note", "description", "enquiry", "inquiry"),
}
_BY_SQUASHED = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def squash(name: str) -> str:
    return _NOT_ALNUM.sub("", name.strip().lower())


def lead_field(name: str) -> str | None:
    """The lead field a column or input called ``name`` holds, ``FULL_NAME``, or ``None`` (an attribute)."""
    if name in _SCALAR_FIELDS:
        return name
    return _BY_SQUASHED.get(squash(name))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class LeadDraft:
    """A lead being assembled from name/value pairs, with the problems found on the way."""

    fields: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)
    _origin: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, value: str, *, given_as: str) -> None:
        """Set lead field ``name`` (or ``FULL_NAME``); a second, different value is an error."""
        value = value.strip()
        if not value:
            return  # an empty input is an input left blank
        if name in self.fields and self.fields[name] != value:
            self.errors.append(FieldError(given_as, f"{name} is given twice, also as {self._origin[name]!r}"))
            return
        self.fields[name] = value
        self._origin[name] = given_as

    def add_attribute(self, key: str, value: str, *, lenient: bool = False) -> None:
        """Keep an extra value; repeats are joined. ``lenient`` cuts what would not fit instead of
        leaving it for validation to refuse (for providers: a lead we cannot send back)."""
        key, value = key.strip(), value.strip()
        if not key or not value:
            return
        if key in self.attributes:
            value = f"{self.attributes[key]}, {value}"
        if lenient:
            if key not in self.attributes and len(self.attributes) >= MAX_ATTRIBUTES:
                return
            key, value = _cut(key, MAX_ATTRIBUTE_KEY), _cut(value, MAX_ATTRIBUTE_VALUE)
        self.attributes[key] = value

    def as_lead(self) -> dict[str, Any]:
        """The lead as the JSON API would receive it (a full name is split when no parts were given)."""
        lead: dict[str, Any] = {k: v for k, v in self.fields.items() if k != FULL_NAME}
        attributes = dict(self.attributes)
        full = self.fields.get(FULL_NAME)
        if full and "first_name" not in lead and "last_name" not in lead:
            # "Ana García López" -> Ana / García López: right for most, and nothing is lost.
            first, _, rest = full.partition(" ")
            lead["first_name"] = first
            if rest.strip():
                lead["last_name"] = rest.strip()
        elif full:
            attributes.setdefault(FULL_NAME, full)
        if attributes:
            lead["attributes"] = attributes
        return lead

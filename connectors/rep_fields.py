"""Validated field types for a rep's profile, shared by the YAML config and the HTTP API."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from connectors.netguard import validate_webhook_url
from connectors.webhook_signing import validate_secret
from leadflow.errors import ConfigError
from rules.eligibility import check_holidays_country, parse_working_hours
from sla.config import zone_name

__all__ = ["ID_PATTERN", "MAX_ID_LENGTH", "Identifier", "identifier_problem", "TimeZoneName", "WorkingHours",
           "HolidaysCountry", "WebhookUrl", "WebhookSecret", "secret_from_env"]


#: Rep and team ids, in the YAML and the API (the body's ``team`` and the path's ``rep_id``): ASCII
#: letters and digits first, then also '_', '.' or '-'. ASCII only: ``str.isalnum`` let through a
#: Cyrillic "А" that looks like a rep's "A", and Arabic digits; a letter or digit first rules out
#: "." and "..".
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_ID_LENGTH = 64
#: An id in a pydantic model (pydantic's patterns are Rust regexes: "$" is the end of the text).
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
# The same for Python's re, which would take a "\n" before "$".
_IDENTIFIER = re.compile(ID_PATTERN.removesuffix("$") + r"\Z")
_IDENTIFIER_RULE = f"1-{MAX_ID_LENGTH} ASCII letters, digits, '_', '.' or '-', beginning with a letter or digit"


def identifier_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an id (``Identifier``'s rule), or ``None``."""
    if len(value) > MAX_ID_LENGTH or _IDENTIFIER.match(value) is None:
        return _IDENTIFIER_RULE
    return None


def _hours(value: dict[str, list[str]]) -> dict[str, list[str]]:
    parse_working_hours(value)
    return value


def _country(value: str) -> str:
    check_holidays_country(value)
    return value


def _webhook_url(value: str) -> str:
    # What is wrong without DNS and whatever the deployment allows; whether a private or loopback
    # host is allowed is the deployment's choice (LEADFLOW_WEBHOOK_ALLOW_PRIVATE): the API checks it
    # with its setting, and every delivery checks the addresses the host resolves to.
    problem = validate_webhook_url(value, allow_private=True)
    if problem is not None:
        raise ValueError(problem)
    return value


def _webhook_secret(value: str) -> str:
    validate_secret(value)  # its message says what is wrong and never quotes the secret
    return value


TimeZoneName = Annotated[str, AfterValidator(zone_name)]
WorkingHours = Annotated[dict[str, Annotated[list[str], Field(max_length=10)]], Field(max_length=7),
                         AfterValidator(_hours)]
HolidaysCountry = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_country)]
#: A rep's webhook destination: http(s), a host, no credentials in the URL.
WebhookUrl = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_webhook_url)]
#: A Standard Webhooks signing secret: ``whsec_`` and base64.
WebhookSecret = Annotated[str, AfterValidator(_webhook_secret)]


def secret_from_env(env: Mapping[str, str], name: str, who: str) -> str:
    """The ``whsec_`` secret in the environment variable ``name``, checked as ``WebhookSecret`` checks
    one written in the config: a malformed one had every webhook to ``who`` dead-lettered."""
    value = env.get(name)
    if not value:
        raise ConfigError(f"{who}: environment variable {name} is not set")
    try:
        validate_secret(value)
    except ValueError as exc:  # its message never quotes the secret
        raise ConfigError(f"{who}: environment variable {name}: {exc}") from None
    return value

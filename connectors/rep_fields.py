"""Validated field types for a rep's profile, shared by the YAML config and the HTTP API."""
from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, StringConstraints

from rules.eligibility import check_holidays_country, parse_working_hours

__all__ = ["TimeZoneName", "WorkingHours", "HolidaysCountry"]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: keys naming a tzdata directory ("America") or too long for the filesystem.
        raise ValueError(f"unknown time zone {value[:64]!r} (use an IANA name such as Europe/Madrid)") from None
    return value


def _hours(value: dict[str, list[str]]) -> dict[str, list[str]]:
    parse_working_hours(value)
    return value


def _country(value: str) -> str:
    check_holidays_country(value)
    return value


TimeZoneName = Annotated[str, AfterValidator(_zone)]
WorkingHours = Annotated[dict[str, Annotated[list[str], Field(max_length=10)]], Field(max_length=7),
                         AfterValidator(_hours)]
HolidaysCountry = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_country)]

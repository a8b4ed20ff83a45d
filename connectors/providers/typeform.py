"""Typeform: the webhook's signature and mapping a ``form_response`` to a lead.

Typeform signs the raw body: ``Typeform-Signature: sha256=<base64 HMAC-SHA256 of the body>``
with the webhook's secret. Answers are matched to lead fields by their ``field.ref`` through a
per-form map from the config; without one, the first ``email`` and ``phone_number`` answers are
used and every other answer is kept as an attribute named by the question's title.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.lead_input import FieldError
from connectors.providers._shape import PayloadInvalid, array, child, mapping, optional_iso_time, optional_text, text
from connectors.providers.fields import FULL_NAME, LeadDraft, lead_field

__all__ = ["SIGNATURE_HEADER", "MAP_TARGETS", "TypeformSettings", "Answer", "FormResponse", "check_signature",
           "parse_payload", "to_draft"]

SIGNATURE_HEADER = "Typeform-Signature"
#: What a field map may point an answer at (identity fields other than e-mail and phone are ours).
MAP_TARGETS = frozenset({"email", "phone", "first_name", "last_name", FULL_NAME, "company", "title", "country",
                         "campaign", "message"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeformSettings:
    """``forms``: form id -> {answer ``field.ref`` or ``hidden.<name>`` -> lead field}."""

    secret: str = field(repr=False)
    source: str = "typeform"
    forms: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: A response submitted longer ago than this is a replay, not a delivery.
    max_age: timedelta = timedelta(hours=48)


def check_signature(secret: str, body: bytes, header: str | None) -> str | None:
    """``None`` when ``header`` is ``sha256=<base64 HMAC-SHA256 of body>``, else the reason it is not."""
    if not header:
        return f"missing {SIGNATURE_HEADER} header"
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        return f"{SIGNATURE_HEADER} must be sha256=<base64 digest>"
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    # Compare the encoded forms: decoding first would accept non-canonical base64 spellings.
    if not hmac.compare_digest(expected, given.encode("ascii", "replace")):
        return "the signature does not match the body (check the webhook secret)"
    return None


@dataclass(frozen=True, slots=True)
class Answer:
    key: str          # the field's ref (its id when it has none)
    kind: str         # Typeform's answer type: email, phone_number, text, choice, ...
    value: str
    title: str | None  # the question, from the form definition, when sent


@dataclass(frozen=True, slots=True)
class FormResponse:
    form_id: str
    token: str
    answers: tuple[Answer, ...]
    hidden: Mapping[str, str]
    score: str | None
    #: ``form_response.submitted_at``: signed with the body, so a replay carries its first time.
    submitted_at: datetime | None = None


def _answer_value(answer: Mapping[str, Any], kind: str, path: str) -> str | None:
    """The answer as text, by its type; ``None`` for types that say nothing about the lead (payment).

    No length limit (the body size bounds it): the mapper cuts a long answer to fit an attribute.
    Typeform retries a 4xx five times and then drops the response, so refusing it loses the lead.
    """
    raw = answer.get(kind)
    if kind in ("text", "email", "phone_number", "url", "file_url", "date"):
        return text(raw, child(path, kind), limit=None)
    if kind == "number":
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            raise PayloadInvalid([FieldError(child(path, kind), "expected a number")])
        return str(raw)
    if kind == "boolean":
        if not isinstance(raw, bool):
            raise PayloadInvalid([FieldError(child(path, kind), "expected true or false")])
        return "yes" if raw else "no"
    if kind == "choice":
        choice = mapping(raw, child(path, kind))
        return text(choice.get("label") or choice.get("other"), child(child(path, kind), "label"), limit=None)
    if kind == "choices":
        choices = mapping(raw, child(path, kind))
        labels = [text(v, child(child(child(path, kind), "labels"), i), limit=None)
                  for i, v in enumerate(array(choices.get("labels", []), child(child(path, kind), "labels"),
                                              limit=100))]
        other = optional_text(choices.get("other"), child(child(path, kind), "other"), limit=None)
        return ", ".join(labels + ([other] if other else [])) or None
    return None


def parse_payload(data: Any) -> FormResponse | None:
    """The submitted response, ``None`` for other event types, or ``PayloadInvalid`` naming the field."""
    body = mapping(data, "")
    event_type = text(body.get("event_type"), "event_type", limit=100)
    if event_type != "form_response":
        return None
    response = mapping(body.get("form_response"), "form_response")
    titles: dict[str, str] = {}
    definition = response.get("definition")
    if isinstance(definition, dict) and isinstance(definition.get("fields"), list):
        for item in definition["fields"]:  # optional and only for names: skipped when odd, never refused
            if isinstance(item, dict) and isinstance(item.get("title"), str):
                for key in (item.get("ref"), item.get("id")):
                    if isinstance(key, str):
                        titles[key] = item["title"]
    answers = []
    for index, raw in enumerate(array(response.get("answers", []), "form_response.answers", limit=200)):
        where = child("form_response.answers", index)
        answer = mapping(raw, where)
        kind = text(answer.get("type"), child(where, "type"), limit=50)
        question = mapping(answer.get("field"), child(where, "field"))
        key = optional_text(question.get("ref"), child(child(where, "field"), "ref"), limit=200) or text(
            question.get("id"), child(child(where, "field"), "id"), limit=200)
        value = _answer_value(answer, kind, where)
        if value is not None:
            answers.append(Answer(key=key, kind=kind, value=value, title=titles.get(key)))
    hidden_raw = response.get("hidden") or {}
    hidden = {k: text(v, child("form_response.hidden", k), limit=None)
              for k, v in mapping(hidden_raw, "form_response.hidden").items() if v not in ("", None)}
    score = None
    calculated = response.get("calculated")
    if isinstance(calculated, dict) and isinstance(calculated.get("score"), int | float):
        score = str(calculated["score"])
    return FormResponse(
        form_id=text(response.get("form_id"), "form_response.form_id", limit=100),
        token=text(response.get("token"), "form_response.token", limit=100),
        answers=tuple(answers), hidden=hidden, score=score,
        submitted_at=optional_iso_time(response.get("submitted_at"), "form_response.submitted_at"),
    )


def to_draft(response: FormResponse, field_map: Mapping[str, str]) -> LeadDraft:
    """Map a response to a lead: the field map first, then e-mail/phone answers, the rest as attributes."""
    draft = LeadDraft()
    draft.set("external_id", response.token, given_as="form_response.token")
    for answer in response.answers:
        target = field_map.get(answer.key)
        if target is None and answer.kind in ("email", "phone_number"):
            target = "email" if answer.kind == "email" else "phone"
            if target in draft.fields:
                target = None
        if target is not None and target not in draft.fields:
            draft.set(target, answer.value, given_as=f"answers.{answer.key}")
        else:
            draft.add_attribute(answer.title or answer.key, answer.value, lenient=True)
    for name, value in response.hidden.items():
        target = field_map.get(f"hidden.{name}") or lead_field(name)
        if target in MAP_TARGETS or target == "source":
            assert target is not None
            if target not in draft.fields:
                draft.set(target, value, given_as=f"hidden.{name}")
                continue
        draft.add_attribute(name, value, lenient=True)
    draft.add_attribute("typeform_form_id", response.form_id, lenient=True)
    if response.score is not None:
        draft.add_attribute("typeform_score", response.score, lenient=True)
    return draft

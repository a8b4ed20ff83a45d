"""The ``leadflow`` Faust codec: our frozen dataclasses on the wire and in tables, as JSON.

The pure core (``rules/``) defines commands and state as plain dataclasses and cannot import
Faust, so instead of mirroring every type as a ``faust.Record`` the wire format is
``{"type": <class name>, "data": <fields>}`` encoded by orjson and decoded by pydantic.
Unknown types and invalid fields raise ``ValueError`` naming what was wrong.
"""
from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

import orjson
from faust.serializers import codecs
from pydantic import TypeAdapter, ValidationError

from rules import commands
from rules.account_book import MatchAccount, PutAccount, RemoveAccount
from rules.accounts import Account
from rules.delivery import DeliveryBacklog, PendingDelivery, RetryDue
from rules.lead import LeadState, SlaTimer
from rules.opportunity import PendingCrm
from rules.outcomes import OutcomeBoard, RecordOutcome
from rules.reps import RepEntry
from rules.roster import Holding
from rules.team import QueueSlot, TeamState
from streams.tables.team_record import TeamRecord

__all__ = ["CODEC", "SCHEMA", "encode", "decode", "timer_fields", "WIRE_TYPES"]

WIRE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        commands.CaptureLead, commands.LeadAssigned, commands.LeadQueued, commands.RecordDelivery,
        commands.DispositionLead, commands.RouteLead, commands.ReleaseLead, commands.UpsertRep,
        commands.RemoveRep, commands.SetPresence, commands.PutRep, commands.ChangePresence,
        commands.Notify, commands.RecordActivity, commands.SlaDue, LeadState, SlaTimer, TeamState, TeamRecord, RepEntry,
        commands.RecordQualification, commands.RecordCrmSync, commands.RecordCrmEvent, commands.ReturnToRouting,
        commands.UpsertOpportunity, commands.DeferCommand, RecordOutcome, OutcomeBoard, PendingCrm,
        commands.AnswerOffer, commands.WithdrawLead, QueueSlot, Holding, commands.DrainQueue, commands.KeepAssignment,
        commands.SetHeldElsewhere, commands.ReportHeld, commands.ReportJoin, commands.RetireRep, commands.ApplyRoster,
        RetryDue, PendingDelivery, DeliveryBacklog,
        PutAccount, RemoveAccount, MatchAccount, Account,
    )
}


@cache
def _adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(WIRE_TYPES[name])


def encode(value: Any) -> bytes:
    name = type(value).__name__
    if name not in WIRE_TYPES:
        raise TypeError(f"{name} is not a leadflow wire type")
    return orjson.dumps({"type": name, "data": value})


def decode(raw: bytes) -> Any:
    try:
        envelope = orjson.loads(raw)
        name = envelope["type"]
        data = envelope["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ValueError("not a leadflow message (expected {\"type\", \"data\"})") from None
    if name not in WIRE_TYPES:
        raise ValueError(f"unknown message type {name!r}")
    try:
        return _adapter(name).validate_python(data)
    except ValidationError as exc:
        raise ValueError(f"invalid {name}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None


def timer_fields(raw: bytes) -> tuple[float, int, int] | None:
    """``(due timestamp, cycle, step)`` of an encoded ``SlaTimer``, or ``None`` if ``raw`` is not one.

    For rebuilding the timer index from ``sla_timers`` after an assignment: it skips building the
    object through pydantic, about 2.4× faster per row, and a million rows are read each time.
    """
    try:
        envelope = orjson.loads(raw)
        if envelope["type"] != "SlaTimer":
            return None
        data = envelope["data"]
        due = datetime.fromisoformat(data["due_at"])
        if due.tzinfo is None:
            return None
        return due.timestamp(), int(data["cycle"]), int(data["step"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class LeadflowCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return encode(obj)

    def _loads(self, s: bytes) -> Any:
        return decode(s)


CODEC = "leadflow"
codecs.register(CODEC, LeadflowCodec())


def _schema() -> Any:
    import faust

    # str keys as raw UTF-8 everywhere, so a key hashes to the same partition in every topic
    # and table changelog (and Faust's router finds the owner of a key).
    return faust.Schema(key_type=str, key_serializer="raw", value_serializer=CODEC)


SCHEMA = _schema()

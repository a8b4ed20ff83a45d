"""Salesforce Outbound Messages: read the SOAP 1.1 ``notifications`` envelope, answer it, map it to leadflow events.

A flow or workflow rule's Outbound Message POSTs (``Content-Type: text/xml``) one envelope with up
to 100 notifications (Salesforce's "Understanding the Outbound Messaging WSDL")::

    <soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                      xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
     <soapenv:Body>
      <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
       <OrganizationId>00D…</OrganizationId> <ActionId>04k…</ActionId> <SessionId xsi:nil="true"/>
       <EnterpriseUrl>…</EnterpriseUrl> <PartnerUrl>…</PartnerUrl>
       <Notification>
        <Id>04l…</Id>
        <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
         <sf:Id>006…</sf:Id> <sf:StageName>Closed Lost</sf:StageName> <sf:IsClosed>true</sf:IsClosed> …
        </sObject>
       </Notification>
      </notifications>
     </soapenv:Body>
    </soapenv:Envelope>

and counts it delivered only on ``notificationsResponse`` with ``<Ack>true</Ack>``; anything
else is retried (with growing gaps, up to two hours apart) until the message is 24 hours old.
A message can arrive more than once: the notification ``Id`` is the same each time, so it is the
``webhook-id`` leadflow dedups on.

The XML is read with defusedxml, DTDs forbidden (SOAP 1.1 allows none): no entity expansion
("billion laughs"), no external entities (XXE), no network or file access while parsing.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

__all__ = ["EnvelopeError", "NotLeadflows", "Notification", "OutboundMessage", "SalesforceFields", "ACK", "fault",
           "parse_outbound_message", "same_org", "salesforce_event", "MAX_NOTIFICATIONS"]

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
#: Salesforce's own bound ("A single SOAP message can include up to 100 notifications").
MAX_NOTIFICATIONS = 100
_ORG_ID = re.compile(r"00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")

ACK = ('<?xml version="1.0" encoding="UTF-8"?>\n'
       f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
       f'<notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
       '</soapenv:Body></soapenv:Envelope>\n').encode()


def fault(code: str, message: str) -> bytes:
    """A SOAP 1.1 Fault; ``code`` is ``Client`` (the message is at fault) or ``Server`` (try again later)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><soapenv:Fault>'
            f'<faultcode>soapenv:{code}</faultcode><faultstring>{escape(message)}</faultstring>'
            '</soapenv:Fault></soapenv:Body></soapenv:Envelope>\n').encode()


class EnvelopeError(ValueError):
    """The body is not an Outbound Message leadflow can read; the text says where."""


class NotLeadflows(ValueError):
    """A notification about an Opportunity without leadflow's lead id nor its opportunity id
    (``SalesforceFields.opportunity_id``, when set): one leadflow did not make.

    Nothing in it is for leadflow, and no redelivery can change that, so the relay takes the
    message's other notifications and acknowledges it (a fault would have Salesforce send the
    whole message again for 24 hours). The text names the notification and the field, no value.
    """

    def __init__(self, message: str, *, notification_id: str, record_id: str | None) -> None:
        super().__init__(message)
        self.notification_id = notification_id
        self.record_id = record_id


@dataclass(frozen=True, slots=True)
class Notification:
    notification_id: str
    sobject_type: str
    #: The sObject's fields by API name; ``None`` for ``xsi:nil``. Absent fields were not chosen
    #: in the outbound message (or, Salesforce sends no null values, are empty).
    fields: Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    organization_id: str
    action_id: str
    notifications: tuple[Notification, ...]


def _text(parent: Element, tag: str, where: str) -> str:
    element = parent.find(tag)
    if element is None or not (element.text or "").strip():
        raise EnvelopeError(f"{where}: {tag.rsplit('}', 1)[-1]} is missing")
    return (element.text or "").strip()


def parse_outbound_message(body: bytes) -> OutboundMessage:
    """The envelope's notifications; ``EnvelopeError`` saying what is wrong and where."""
    try:
        root = fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise EnvelopeError(f"refused XML: {type(exc).__name__} (a SOAP message has no DTD or entities)") from None
    except ParseError as exc:
        raise EnvelopeError(f"not well-formed XML ({exc})") from None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise EnvelopeError("not a SOAP 1.1 envelope (the root must be soapenv:Envelope)")
    notifications = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND}}}notifications")
    if notifications is None:
        raise EnvelopeError(f"Envelope/Body has no notifications element in {OUTBOUND}")
    where = "notifications"
    organization_id = _text(notifications, f"{{{OUTBOUND}}}OrganizationId", where)
    if not _ORG_ID.fullmatch(organization_id):
        raise EnvelopeError("notifications/OrganizationId is not a Salesforce org id (00D…)")
    action_id = _text(notifications, f"{{{OUTBOUND}}}ActionId", where)
    items = notifications.findall(f"{{{OUTBOUND}}}Notification")
    if not items:
        raise EnvelopeError("notifications has no Notification")
    if len(items) > MAX_NOTIFICATIONS:
        raise EnvelopeError(f"notifications has {len(items)} Notification elements (Salesforce sends at most "
                            f"{MAX_NOTIFICATIONS})")
    parsed = []
    for index, item in enumerate(items):
        where = f"Notification[{index}]"
        notification_id = _text(item, f"{{{OUTBOUND}}}Id", where)
        if not _RECORD_ID.fullmatch(notification_id):
            raise EnvelopeError(f"{where}/Id is not a Salesforce id")
        sobject = item.find(f"{{{OUTBOUND}}}sObject")
        if sobject is None:
            raise EnvelopeError(f"{where}: sObject is missing")
        sobject_type = (sobject.get(f"{{{XSI}}}type") or "").rsplit(":", 1)[-1]
        fields: dict[str, str | None] = {}
        for child in sobject:
            namespace, _, name = child.tag.partition("}")
            if namespace != f"{{{SOBJECT}" or len(child):  # skip foreign elements and related records
                continue
            nil = (child.get(f"{{{XSI}}}nil") or "").lower() == "true"
            fields[name] = None if nil else (child.text or "").strip()
        parsed.append(Notification(notification_id=notification_id, sobject_type=sobject_type, fields=fields))
    return OutboundMessage(organization_id=organization_id, action_id=action_id, notifications=tuple(parsed))


_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id15(sf_id: str) -> str:
    """The case-sensitive 15-character form of a Salesforce id; ``ValueError`` if it is none.

    An 18-character id is the 15-character one plus 3 characters that encode which of its letters
    are capitals (5 a character), so it survives a change of case: its first 15 characters are
    read back through the suffix (review s16-b L6: an 18-character org id typed in other capitals
    was refused forever).
    """
    if len(sf_id) == 15 and sf_id.isascii() and sf_id.isalnum():
        return sf_id
    if len(sf_id) != 18 or not (sf_id.isascii() and sf_id.isalnum()):
        raise ValueError("a Salesforce id has 15 or 18 letters and digits")
    out = []
    for chunk in range(3):
        bits = _SUFFIX.find(sf_id[15 + chunk].upper())
        if bits < 0:
            raise ValueError("the 18-character Salesforce id's last 3 characters are no checksum")
        for i, char in enumerate(sf_id[chunk * 5:chunk * 5 + 5]):
            capital = bool(bits >> i & 1)
            if capital and not char.isalpha():
                raise ValueError("the 18-character Salesforce id's checksum does not fit its first 15 characters")
            out.append(char.upper() if capital else char.lower())
    return "".join(out)


def same_org(configured: str, sent: str) -> bool:
    """Salesforce ids are case-sensitive; an 18-character id is the 15-character one plus a checksum
    of its capitals, so its case may change (``id15``)."""
    try:
        return id15(configured) == id15(sent)
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class SalesforceFields:
    """Which Opportunity fields the relay reads (the outbound message must include them)."""

    lead_id: str = "Leadflow_Lead_Id__c"
    opportunity_id: str | None = "Leadflow_Id__c"
    loss_reason: str | None = None
    #: Used only when the message lacks IsWon/IsClosed (orgs rename stages: include those two).
    won_stage: str = "Closed Won"
    lost_stage: str = "Closed Lost"


def _flag(value: str | None, name: str, notification_id: str) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ValueError(f"notification {notification_id}: {name} is not a boolean")


def salesforce_event(notification: Notification, fields: SalesforceFields) -> tuple[str, dict[str, Any]]:
    """``(webhook-id, event)`` for ``POST /v1/crm/events``; ``ValueError`` naming the notification and field
    (``NotLeadflows`` when the Opportunity has no lead id, nor leadflow's opportunity id: one that has
    the second and not the first is leadflow's, and the relay's setup is wrong: a ``ValueError``).

    ``IsWon`` true is ``opportunity.won`` (with ``Amount``), ``IsClosed`` true and not won is
    ``opportunity.lost`` (with the loss reason field, if configured), any other stage
    ``opportunity.stage_changed``. The id is the notification's, so Salesforce's redeliveries are
    answered once by leadflow.
    """
    nid, values = notification.notification_id, notification.fields
    if notification.sobject_type != "Opportunity":
        raise ValueError(f"notification {nid}: the sObject is {notification.sobject_type or 'untyped'}, "
                         "not an Opportunity")
    lead_id, stage, record_id = values.get(fields.lead_id), values.get("StageName"), values.get("Id")
    if not lead_id and fields.opportunity_id and values.get(fields.opportunity_id):
        # Leadflow's own opportunity id, but no lead id: the relay reads the wrong field (a typo in
        # --salesforce-lead-id-field, a managed package's prefix) or Salesforce does not send it (not
        # in the outbound message, hidden from its user). Skipped, every won or lost would be acked
        # and lost for good; a fault keeps the message in Salesforce's queue until that is fixed.
        raise ValueError(f"notification {nid}: the Opportunity has {fields.opportunity_id}, so leadflow made it, "
                         f"but no {fields.lead_id}: check that --salesforce-lead-id-field is that field's API name "
                         "(with any namespace prefix), that the outbound message includes it and that its user "
                         "may read it")
    if not lead_id:
        raise NotLeadflows(f"notification {nid}: the Opportunity has no {fields.lead_id} (add it to the outbound "
                           f"message's fields; filter opportunities leadflow did not make out in the flow: "
                           f"{fields.lead_id} is not blank)", notification_id=nid,
                           record_id=record_id if record_id and _RECORD_ID.fullmatch(record_id) else None)
    for name, value in (("StageName", stage), ("Id", record_id)):
        if not value:
            raise ValueError(f"notification {nid}: the Opportunity has no {name} (add it to the outbound "
                             "message's fields)")
    assert lead_id and stage and record_id
    won = _flag(values.get("IsWon"), "IsWon", nid)
    closed = _flag(values.get("IsClosed"), "IsClosed", nid)
    if won is None:
        won = stage == fields.won_stage
    if closed is None:
        closed = won or stage == fields.lost_stage
    data: dict[str, Any] = {"lead_id": lead_id, "crm_id": record_id[:64]}
    if fields.opportunity_id and values.get(fields.opportunity_id):
        data["opportunity_id"] = values[fields.opportunity_id]
    if won:
        kind = "opportunity.won"
        if values.get("Amount"):
            try:
                data["amount"] = float(values["Amount"] or "")
            except ValueError:
                raise ValueError(f"notification {nid}: Amount is not a number") from None
    elif closed:
        kind = "opportunity.lost"
        reason = values.get(fields.loss_reason) if fields.loss_reason else None
        if reason:
            data["reason"] = reason[:500]
    else:
        kind, data["stage"] = "opportunity.stage_changed", stage[:100]
    event: dict[str, Any] = {"type": kind, "data": data}
    modified = values.get("LastModifiedDate")
    if modified:
        try:  # when the stage changed, not when Salesforce got round to sending it
            at = datetime.fromisoformat(modified)
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            event["timestamp"] = at.isoformat()
    return f"sfdc_{nid}", event

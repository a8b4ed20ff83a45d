"""Salesforce Outbound Messages: the envelope read safely, each notification mapped to an event leadflow takes."""
from __future__ import annotations

import pytest
from defusedxml.ElementTree import fromstring

from connectors.api.crm_events import CRM_EVENT_MODEL
from ops.salesforce_outbound import (
    ACK,
    EnvelopeError,
    NotLeadflows,
    SalesforceFields,
    fault,
    id15,
    parse_outbound_message,
    salesforce_event,
    same_org,
)
from tests.ops.salesforce_envelopes import LEAD_ID, OPPORTUNITY_ID, ORG_ID, envelope, opportunity

FIELDS = SalesforceFields(loss_reason="Loss_Reason__c")


def test_a_documented_envelope_is_read() -> None:
    message = parse_outbound_message(envelope(opportunity(), opportunity("04l5e00000Gx7R0AAJ", stage="Negotiation/Review",
                                                                          won="false", closed="false")))
    assert message.organization_id == ORG_ID and message.action_id == "04k5e000000CaRkAAK"
    first, second = message.notifications
    assert first.notification_id == "04l5e00000Gx7QzAAJ" and first.sobject_type == "Opportunity"
    assert first.fields["StageName"] == "Closed Lost" and first.fields["Leadflow_Lead_Id__c"] == LEAD_ID
    assert second.fields["StageName"] == "Negotiation/Review"


def test_notifications_map_to_events_leadflow_validates() -> None:
    lost_id, lost = salesforce_event(parse_outbound_message(envelope(opportunity())).notifications[0], FIELDS)
    assert lost_id == "sfdc_04l5e00000Gx7QzAAJ"
    assert lost == {"type": "opportunity.lost", "timestamp": "2026-03-02T10:15:00+00:00",
                    "data": {"lead_id": LEAD_ID, "crm_id": "0065e00000AbCdEAAV", "opportunity_id": OPPORTUNITY_ID,
                             "reason": "No budget this year"}}
    cases = {
        "won": opportunity(stage="Closed Won", won="true", closed="true"),
        # An org that renamed its stages: IsWon/IsClosed decide, not the stage's name.
        "renamed won": opportunity(stage="Signed", won="true", closed="true"),
        "moved": opportunity(stage="Proposal/Price Quote", won="false", closed="false"),
        # Without IsWon/IsClosed in the message, Salesforce's default stage names decide.
        "default names": opportunity(stage="Closed Won", won=None, closed=None),
    }
    events = {name: salesforce_event(parse_outbound_message(envelope(n)).notifications[0], FIELDS)[1]
              for name, n in cases.items()}
    assert events["won"]["type"] == events["renamed won"]["type"] == events["default names"]["type"] == "opportunity.won"
    assert events["won"]["data"]["amount"] == 48000.0 and "reason" not in events["won"]["data"]
    assert events["moved"]["type"] == "opportunity.stage_changed"
    assert events["moved"]["data"]["stage"] == "Proposal/Price Quote"
    for event in (lost, *events.values()):
        CRM_EVENT_MODEL.model_validate(event)
    # No loss reason field configured: a lost deal without a reason.
    _, bare = salesforce_event(parse_outbound_message(envelope(opportunity())).notifications[0], SalesforceFields())
    assert "reason" not in bare["data"]


@pytest.mark.parametrize(("notification", "says"), [
    (opportunity(lead_id=None, opportunity_id=None),
     "has no Leadflow_Lead_Id__c (add it to the outbound message's fields; filter"),
    (opportunity(lead_id=None), "has Leadflow_Id__c, so leadflow made it, but no Leadflow_Lead_Id__c: check that "
                                "--salesforce-lead-id-field is that field's API name"),
    (opportunity().replace("<sf:StageName>Closed Lost</sf:StageName>", ""), "has no StageName"),
    (opportunity(won="maybe"), "IsWon is not a boolean"),
    (opportunity().replace('sf:Opportunity"', 'sf:Account"'), "the sObject is Account, not an Opportunity"),
])
def test_a_notification_that_cannot_be_mapped_says_which_and_why(notification: str, says: str) -> None:
    (parsed,) = parse_outbound_message(envelope(notification)).notifications
    with pytest.raises(ValueError, match="^notification 04l5e00000Gx7QzAAJ: ") as caught:
        salesforce_event(parsed, FIELDS)
    assert says in str(caught.value)


def test_a_nil_field_is_no_value() -> None:
    (parsed,) = parse_outbound_message(envelope(opportunity(lead_id=None, opportunity_id=None, extra=(
        '<sf:Leadflow_Lead_Id__c xsi:nil="true"/>')))).notifications
    assert parsed.fields["Leadflow_Lead_Id__c"] is None
    with pytest.raises(NotLeadflows, match="has no Leadflow_Lead_Id__c") as caught:
        salesforce_event(parsed, FIELDS)
    assert (caught.value.notification_id, caught.value.record_id) == ("04l5e00000Gx7QzAAJ", "0065e00000AbCdEAAV")


@pytest.mark.parametrize("notification", [
    opportunity().replace("<sf:StageName>Closed Lost</sf:StageName>", ""),
    opportunity(won="maybe"),
    opportunity().replace('sf:Opportunity"', 'sf:Account"'),
    opportunity(lead_id=None),  # leadflow's opportunity id without a lead id: the relay's setup (review s17-a C1)
])
def test_only_a_missing_lead_id_says_the_opportunity_is_not_leadflows(notification: str) -> None:
    # The others are the outbound message's configuration, for its admin to see and fix: still faults.
    (parsed,) = parse_outbound_message(envelope(notification)).notifications
    with pytest.raises(ValueError) as caught:
        salesforce_event(parsed, FIELDS)
    assert not isinstance(caught.value, NotLeadflows)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&lol3;</soapenv:Body>
</soapenv:Envelope>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&xxe;</soapenv:Body>
</soapenv:Envelope>"""


@pytest.mark.parametrize(("body", "says"), [
    (BILLION_LAUGHS, "refused XML: DTDForbidden"),
    (XXE, "refused XML: DTDForbidden"),
    (b"", "not well-formed XML"),
    (b'{"not": "xml"}', "not well-formed XML"),
    (b"<Envelope/>", "not a SOAP 1.1 envelope"),
    (envelope(opportunity()).replace(b"http://soap.sforce.com/2005/09/outbound", b"urn:other"),
     "Envelope/Body has no notifications element"),
    (envelope(opportunity(), org_id=""), "notifications: OrganizationId is missing"),
    (envelope(opportunity(), org_id="not-an-org"), "OrganizationId is not a Salesforce org id"),
    (envelope(), "notifications has no Notification"),
    (envelope(*[opportunity(f"04l5e00000Gx{i:03d}AAJ") for i in range(101)]), "101 Notification elements"),
    (envelope(opportunity("04l<bad>")), "not well-formed XML"),
    (envelope(opportunity("not an id")), "Notification[0]/Id is not a Salesforce id"),
    (envelope("<Notification><Id>04l5e00000Gx7QzAAJ</Id></Notification>"), "Notification[0]: sObject is missing"),
])
def test_bad_envelopes_are_refused_saying_where(body: bytes, says: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_outbound_message(body)
    assert says in str(caught.value)


def test_org_ids_match_by_their_15_case_sensitive_characters() -> None:
    assert same_org(ORG_ID, ORG_ID) and same_org(ORG_ID[:15], ORG_ID) and same_org(ORG_ID, ORG_ID[:15])
    assert not same_org(ORG_ID, ORG_ID[:15].lower()) and not same_org(ORG_ID, "00D5e000000KQ2fEAG")


def test_an_18_character_org_id_in_other_capitals_is_the_same_org() -> None:
    # Review s16-b L6: its suffix encodes the capitals of the first 15; a retyped id was refused forever.
    assert id15(ORG_ID.lower()) == id15(ORG_ID.upper()) == ORG_ID[:15]
    assert same_org(ORG_ID.lower(), ORG_ID) and same_org(ORG_ID, ORG_ID.upper()) and same_org(ORG_ID.swapcase(), ORG_ID[:15])
    with pytest.raises(ValueError, match="checksum"):
        id15("00D5e000000KQ2eEA5")  # 5 = capitals at every place of the last 5, digits among them


def test_the_ack_and_faults_are_soap_salesforce_reads() -> None:
    ack = fromstring(ACK)
    assert ack.findtext("{http://schemas.xmlsoap.org/soap/envelope/}Body/"
                        "{http://soap.sforce.com/2005/09/outbound}notificationsResponse/"
                        "{http://soap.sforce.com/2005/09/outbound}Ack") == "true"
    bad = fromstring(fault("Client", "a < b & c"))
    body = bad.find("{http://schemas.xmlsoap.org/soap/envelope/}Body/{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert body is not None and body.findtext("faultcode") == "soapenv:Client"
    assert body.findtext("faultstring") == "a < b & c"


@pytest.mark.parametrize("lead_id_field", ["Leadflow_Lead_ID__c", "lf__Leadflow_Lead_Id__c"])
def test_a_wrong_lead_id_field_is_a_fault_not_every_outcome_skipped(lead_id_field: str) -> None:
    """Review s17-a C1: a typo or a managed package's prefix in --salesforce-lead-id-field had every
    notification of leadflow's own opportunities skipped and acked, every won and lost lost for good."""
    (parsed,) = parse_outbound_message(envelope(opportunity())).notifications
    with pytest.raises(ValueError, match=f"has Leadflow_Id__c, so leadflow made it, but no {lead_id_field}: ") as caught:
        salesforce_event(parsed, SalesforceFields(lead_id=lead_id_field))
    assert not isinstance(caught.value, NotLeadflows)
    assert "op_0123456789abcdef01234567" not in str(caught.value)  # the field is named, its value is not
    # Without leadflow's opportunity id configured, nothing tells it apart: skipped as before.
    with pytest.raises(NotLeadflows):
        salesforce_event(parsed, SalesforceFields(lead_id=lead_id_field, opportunity_id=None))

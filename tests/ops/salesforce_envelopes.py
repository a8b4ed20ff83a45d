"""Outbound Message envelopes as Salesforce sends them (the documented ``notifications`` shape)."""
from __future__ import annotations

ORG_ID = "00D5e000000KQ2eEAG"
LEAD_ID = "ld_0123456789abcdef01234567"
OPPORTUNITY_ID = "op_0123456789abcdef01234567"


def opportunity(notification_id: str = "04l5e00000Gx7QzAAJ", *, record_id: str = "0065e00000AbCdEAAV",
                stage: str = "Closed Lost", won: str | None = "false", closed: str | None = "true",
                lead_id: str | None = LEAD_ID, opportunity_id: str | None = OPPORTUNITY_ID, extra: str = "") -> str:
    """One ``Notification`` of an Opportunity with the fields the docs tell the outbound message to carry."""
    fields = [f"<sf:Id>{record_id}</sf:Id>", f"<sf:StageName>{stage}</sf:StageName>",
              "<sf:Amount>48000.0</sf:Amount>", "<sf:LastModifiedDate>2026-03-02T10:15:00.000Z</sf:LastModifiedDate>",
              "<sf:Loss_Reason__c>No budget this year</sf:Loss_Reason__c>"]
    if opportunity_id is not None:
        fields.insert(4, f"<sf:Leadflow_Id__c>{opportunity_id}</sf:Leadflow_Id__c>")
    if won is not None:
        fields.append(f"<sf:IsWon>{won}</sf:IsWon>")
    if closed is not None:
        fields.append(f"<sf:IsClosed>{closed}</sf:IsClosed>")
    if lead_id is not None:
        fields.append(f"<sf:Leadflow_Lead_Id__c>{lead_id}</sf:Leadflow_Lead_Id__c>")
    return (f"<Notification><Id>{notification_id}</Id>"
            '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            + "".join(fields) + extra + "</sObject></Notification>")


def envelope(*notifications: str, org_id: str = ORG_ID) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
            ' <soapenv:Body>\n'
            '  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">\n'
            f'   <OrganizationId>{org_id}</OrganizationId>\n'
            '   <ActionId>04k5e000000CaRkAAK</ActionId>\n'
            '   <SessionId xsi:nil="true"/>\n'
            '   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/62.0/00D5e000000KQ2e</EnterpriseUrl>\n'
            '   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/62.0/00D5e000000KQ2e</PartnerUrl>\n'
            + "".join(f"   {n}\n" for n in notifications)
            + '  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n').encode()

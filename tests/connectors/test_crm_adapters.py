"""The CRM adapters against the local stand-ins: upsert by leadflow's id, transient vs permanent errors."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.crm import CrmAdapter, RateLimited, retry_after_header
from connectors.crm._hubspot_errors import describe_errors, is_permanent
from connectors.crm.hubspot import HubspotCrm
from connectors.crm.salesforce import SalesforceCrm
from connectors.crm.webhook import WebhookCrm
from connectors.netguard import DestinationRefused
from leadflow.errors import PermanentError, TransientError
from ops.standins.crm import CrmStandIn

PAYLOAD: dict[str, Any] = {
    "opportunity_id": "op_1", "lead_id": "ld_1", "name": "Northwind – María López", "source": "web-demo-form",
    "created_at": "2026-03-02T10:00:00+00:00", "score": {"value": 82, "tier": "A", "reasons": ["+22 seniority vp"]},
    "qualification": {"framework": "BANT", "met": ["budget", "need"], "reason": "ok", "answers": {"need": "x"}},
    "attribution": {"first_touch": {"source": "web-demo-form", "campaign": None}, "touches": 1}, "timeline": [],
}


@pytest.fixture
async def standin() -> AsyncIterator[CrmStandIn]:
    s = CrmStandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def adapters(s: CrmStandIn, session: aiohttp.ClientSession, **wrong: str) -> dict[str, CrmAdapter]:
    return {
        "salesforce": SalesforceCrm(session, login_url=s.url, client_id=s.client_id,
                                    client_secret=wrong.get("secret", s.client_secret), api_version="v62.0",
                                    external_id_field="Leadflow_Id__c", stage="Qualification", close_in_days=30,
                                    timeout_s=2),
        "hubspot": HubspotCrm(session, base_url=s.url, token=wrong.get("token", s.hubspot_token),
                              id_property="leadflow_id", pipeline="default", stage="appointmentscheduled",
                              timeout_s=2),
        "webhook": WebhookCrm(session, url=f"{s.url}/crm/webhook", timeout_s=2, allow_private=True,
                              secret=wrong.get("whsec", s.webhook_secret)),
    }


@pytest.mark.parametrize("crm", ["salesforce", "hubspot", "webhook"])
async def test_an_upsert_replayed_keeps_one_record(standin: CrmStandIn, session: aiohttp.ClientSession,
                                                   crm: str) -> None:
    adapter = adapters(standin, session)[crm]
    first = await adapter.upsert("op_1", PAYLOAD)
    again = await adapter.upsert("op_1", PAYLOAD)
    assert first.created and not again.created and first.crm_id == again.crm_id
    (stored,) = standin.stored(crm)
    assert stored.writes == 2
    if crm == "salesforce":
        assert stored.fields["Name"] == PAYLOAD["name"] and stored.fields["StageName"] == "Qualification"
        assert stored.fields["CloseDate"] == "2026-04-01" and "Score 82 (tier A)" in stored.fields["Description"]
    if crm == "hubspot":
        assert stored.fields["leadflow_id"] == "op_1" and stored.fields["dealname"] == PAYLOAD["name"]


@pytest.mark.parametrize("crm", ["salesforce", "hubspot", "webhook"])
async def test_the_upsert_key_is_the_given_id_whatever_the_payload_says(
        standin: CrmStandIn, session: aiohttp.ClientSession, crm: str) -> None:
    adapter = adapters(standin, session)[crm]
    await adapter.upsert("op_1", PAYLOAD)
    # A replayed message whose payload lacks the id (or names another) still updates op_1.
    bare = {k: v for k, v in PAYLOAD.items() if k != "opportunity_id"}
    await adapter.upsert("op_1", bare)
    await adapter.upsert("op_1", {**PAYLOAD, "opportunity_id": "op_other"})
    (stored,) = standin.stored(crm)
    assert stored.writes == 3 and stored.key.endswith("op_1")


@pytest.mark.parametrize("crm", ["salesforce", "hubspot", "webhook"])
async def test_a_crm_that_is_down_is_a_transient_error(standin: CrmStandIn, session: aiohttp.ClientSession,
                                                        crm: str) -> None:
    standin.down = True
    with pytest.raises(TransientError):
        await adapters(standin, session)[crm].upsert("op_1", PAYLOAD)
    assert standin.opportunities == {}


@pytest.mark.parametrize("url", ["http://127.0.0.1:8077/crm/webhook", "http://[::ffff:169.254.169.254]/latest",
                                 "http://10.0.0.5/crm", "http://2130706433/crm"])
async def test_the_crm_webhook_is_guarded_like_a_reps(standin: CrmStandIn, session: aiohttp.ClientSession,
                                                      url: str) -> None:
    # Private, loopback, link-local and disguised addresses are refused before anything is sent
    # (a dead letter naming why), unless LEADFLOW_WEBHOOK_ALLOW_PRIVATE allows them.
    crm = WebhookCrm(session, url=url, secret=standin.webhook_secret, timeout_s=2)
    with pytest.raises(DestinationRefused):
        await crm.upsert("op_1", PAYLOAD)
    allowed = WebhookCrm(session, url=f"{standin.url}/crm/webhook", secret=standin.webhook_secret, timeout_s=2,
                         allow_private=True)
    assert (await allowed.upsert("op_1", PAYLOAD)).created


async def test_an_unreachable_crm_is_a_transient_error(session: aiohttp.ClientSession) -> None:
    s = CrmStandIn(port=1)  # never started: nothing listens there
    for adapter in adapters(s, session).values():
        with pytest.raises(TransientError):
            await adapter.upsert("op_1", PAYLOAD)


@pytest.mark.parametrize(("crm", "wrong"), [("salesforce", {"secret": "nope"}), ("hubspot", {"token": "nope"}),
                                            ("webhook", {"whsec": "whsec_" + "A" * 43})])
async def test_refused_credentials_are_permanent(standin: CrmStandIn, session: aiohttp.ClientSession, crm: str,
                                                 wrong: dict[str, str]) -> None:
    with pytest.raises(PermanentError):
        await adapters(standin, session, **wrong)[crm].upsert("op_1", PAYLOAD)


async def test_salesforce_logs_in_again_when_the_session_expired(standin: CrmStandIn,
                                                                 session: aiohttp.ClientSession) -> None:
    adapter = adapters(standin, session)["salesforce"]
    await adapter.upsert("op_1", PAYLOAD)
    standin.expire_tokens()
    assert not (await adapter.upsert("op_1", PAYLOAD)).created
    logins = [r for r in standin.requests if r[1] == "/services/oauth2/token"]
    assert len(logins) == 2 and ("PATCH", "/services/data/v62.0/sobjects/Opportunity/Leadflow_Id__c/op_1", 401) \
        in standin.requests


@pytest.mark.parametrize("host", ["login.salesforce.com", "test.salesforce.com"])
async def test_the_standin_refuses_client_credentials_on_the_generic_login_hosts(
        standin: CrmStandIn, session: aiohttp.ClientSession, host: str) -> None:
    # As Salesforce does (help article 000886201): only the org's My Domain issues such tokens.
    form = {"grant_type": "client_credentials", "client_id": standin.client_id, "client_secret": standin.client_secret}
    async with session.post(f"{standin.url}/services/oauth2/token", data=form, headers={"Host": host}) as r:
        assert r.status == 400
        assert await r.json() == {"error": "invalid_request", "error_description": "request not supported on this domain"}
    async with session.post(f"{standin.url}/services/oauth2/token", data=form,
                            headers={"Host": "acme.my.salesforce.com"}) as r:
        assert r.status == 200


async def test_a_refused_salesforce_login_says_what_salesforce_said(standin: CrmStandIn,
                                                                    session: aiohttp.ClientSession) -> None:
    with pytest.raises(PermanentError, match=r"HTTP 400, invalid_client: invalid client credentials"):
        await adapters(standin, session, secret="nope")["salesforce"].upsert("op_1", PAYLOAD)


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# 2026-03-02 23:30 UTC: the next UTC midnight is 30 minutes away.
LATE = 1772494200.0


@pytest.mark.parametrize(("now", "wait"), [(LATE, 1800.0), (LATE - 6 * 3600, 3600.0)])
async def test_hubspot_daily_limit_is_rate_limited_until_the_next_hour_or_utc_midnight(
        standin: CrmStandIn, session: aiohttp.ClientSession, now: float, wait: float) -> None:
    # HubSpot's daily limit resets at midnight in the account's time zone, which leadflow does not know.
    clock = _Clock(now)
    crm = HubspotCrm(session, base_url=standin.url, token=standin.hubspot_token, id_property="leadflow_id",
                     pipeline="default", stage="appointmentscheduled", timeout_s=2, clock=clock)
    standin.hubspot_rate_limited = 1
    with pytest.raises(RateLimited, match="HubSpot answered HTTP 429 DAILY") as caught:
        await crm.upsert("op_1", PAYLOAD)
    assert caught.value.retry_after == wait and caught.value.quota == "DAILY"
    # Until then no request is spent on a quota known to be used up.
    clock.now += wait - 1
    with pytest.raises(RateLimited, match="not called") as again:
        await crm.upsert("op_1", PAYLOAD)
    assert again.value.retry_after == 1.0 and len(standin.requests) == 1
    clock.now += 1
    assert (await crm.upsert("op_1", PAYLOAD)).created


async def test_hubspot_secondly_limit_honours_retry_after(standin: CrmStandIn, session: aiohttp.ClientSession) -> None:
    standin.hubspot_rate_limited, standin.hubspot_policy, standin.hubspot_retry_after = 1, "TEN_SECONDLY_ROLLING", 3
    with pytest.raises(RateLimited) as caught:
        await adapters(standin, session)["hubspot"].upsert("op_1", PAYLOAD)
    assert caught.value.retry_after == 3.0 and caught.value.quota == "TEN_SECONDLY_ROLLING"


async def test_salesforce_request_limit_exceeded_waits_an_hour(standin: CrmStandIn,
                                                               session: aiohttp.ClientSession) -> None:
    # REQUEST_LIMIT_EXCEEDED is a 403 against the org's rolling 24-hour allowance.
    standin.salesforce_limit_exceeded = 1
    with pytest.raises(RateLimited, match="REQUEST_LIMIT_EXCEEDED") as caught:
        await adapters(standin, session)["salesforce"].upsert("op_1", PAYLOAD)
    assert caught.value.retry_after == 3600.0


@pytest.mark.parametrize(("header", "seconds"), [("120", 120.0), ("Mon, 02 Mar 2026 23:31:00 GMT", 60.0),
                                                 (None, None), ("soon", None)])
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_header(header, LATE) == seconds


async def test_salesforce_api_45_answers_an_update_with_204_and_no_id(standin: CrmStandIn,
                                                                      session: aiohttp.ClientSession) -> None:
    # Why the config requires v46.0+: the stand-in answers as Salesforce does, and the adapter says so.
    crm = SalesforceCrm(session, login_url=standin.url, client_id=standin.client_id,
                        client_secret=standin.client_secret, api_version="v45.0", external_id_field="Leadflow_Id__c",
                        stage="Qualification", close_in_days=30, timeout_s=2)
    assert (await crm.upsert("op_1", PAYLOAD)).created
    with pytest.raises(PermanentError, match=r"204 without the record id \(API v45.0\); use api_version v46.0"):
        await crm.upsert("op_1", PAYLOAD)
    assert standin.stored("salesforce")[0].writes == 2


def _hubspot(s: CrmStandIn, session: aiohttp.ClientSession, **overrides: Any) -> HubspotCrm:
    options: dict[str, Any] = {"base_url": s.url, "token": s.hubspot_token, "id_property": "leadflow_id",
                               "pipeline": "default", "stage": "appointmentscheduled", "timeout_s": 2, **overrides}
    return HubspotCrm(session, **options)


async def test_hubspot_207_with_a_validation_error_is_permanent_and_says_which_property(
        standin: CrmStandIn, session: aiohttp.ClientSession) -> None:
    """A 207 with ``errors[]`` was a TransientError without the errors: retried until gave_up, never logged."""
    with pytest.raises(PermanentError) as caught:
        await _hubspot(standin, session, stage="Qualified To Buy").upsert("op_1", PAYLOAD)
    assert str(caught.value) == "HubSpot refused the deal: HTTP 207 VALIDATION_ERROR (dealstage: INVALID_OPTION)"
    standin.hubspot_properties.discard("description")
    with pytest.raises(PermanentError, match=r"VALIDATION_ERROR \(description: PROPERTY_DOESNT_EXIST\)"):
        await _hubspot(standin, session).upsert("op_1", PAYLOAD)
    assert standin.opportunities == {} and ("POST", "/crm/v3/objects/deals/batch/upsert", 207) in standin.requests


async def test_hubspot_207_with_a_temporary_error_stays_transient(standin: CrmStandIn,
                                                                  session: aiohttp.ClientSession) -> None:
    standin.hubspot_errors.append({"status": "error", "category": "INTERNAL_ERROR", "message": "try again"})
    crm = _hubspot(standin, session)
    with pytest.raises(TransientError, match="HubSpot answered HTTP 207: INTERNAL_ERROR") as caught:
        await crm.upsert("op_1", PAYLOAD)
    assert not isinstance(caught.value, PermanentError)
    assert (await crm.upsert("op_1", PAYLOAD)).created


def test_hubspot_error_reasons_name_properties_and_codes_never_values() -> None:
    bad = [{"isValid": False, "message": "María López was not a valid number", "error": "INVALID_INTEGER",
            "name": "dealname"}]
    errors = [{"status": "error", "category": "VALIDATION_ERROR",
               "message": "Property values were not valid: " + orjson.dumps(bad).decode()},
              {"status": "error", "category": "VALIDATION_ERROR", "message": "maria@example.com is not allowed"}]
    reason = describe_errors(errors)
    assert reason == "VALIDATION_ERROR (dealname: INVALID_INTEGER); VALIDATION_ERROR"
    assert is_permanent(errors) and not is_permanent([{"category": "INTERNAL_ERROR"}])


async def test_the_lead_id_is_written_into_the_crm_so_its_events_can_name_the_lead(
        standin: CrmStandIn, session: aiohttp.ClientSession) -> None:
    """POST /v1/crm/events needs data.lead_id; before, the CRM held only the opportunity id (a one-way hash)."""
    await _hubspot(standin, session, lead_id_property="leadflow_lead_id").upsert("op_1", PAYLOAD)
    sf = SalesforceCrm(session, login_url=standin.url, client_id=standin.client_id,
                       client_secret=standin.client_secret, api_version="v62.0", external_id_field="Leadflow_Id__c",
                       stage="Qualification", close_in_days=30, timeout_s=2, lead_id_field="Leadflow_Lead_Id__c")
    await sf.upsert("op_1", PAYLOAD)
    assert standin.stored("hubspot")[0].fields["leadflow_lead_id"] == "ld_1"
    assert standin.stored("salesforce")[0].fields["Leadflow_Lead_Id__c"] == "ld_1"
    # A portal where the property was not created refuses the deal naming it (HubSpot's 207).
    standin.hubspot_properties.discard("leadflow_lead_id")
    with pytest.raises(PermanentError, match=r"leadflow_lead_id: PROPERTY_DOESNT_EXIST"):
        await _hubspot(standin, session, lead_id_property="leadflow_lead_id").upsert("op_2", PAYLOAD)


@pytest.mark.parametrize("id_property", ["leadflow_id_typo", "dealname"])
async def test_hubspot_refuses_an_id_property_that_is_no_unique_value_deal_property(
        standin: CrmStandIn, session: aiohttp.ClientSession, id_property: str) -> None:
    """HubSpot's idProperty "refers to a property whose values are unique for the object": any other is a 400."""
    with pytest.raises(PermanentError) as caught:
        await _hubspot(standin, session, id_property=id_property).upsert("op_1", PAYLOAD)
    assert str(caught.value) == (f"HubSpot refused the deal: HTTP 400 VALIDATION_ERROR (property {id_property} is "
                                 "not a unique-value property of deals)")
    assert standin.opportunities == {}


@pytest.mark.parametrize(("headers", "limited"), [({"Retry-After": "7"}, True), ({}, False)])
async def test_the_crm_webhook_429_with_retry_after_is_a_wait(session: aiohttp.ClientSession,
                                                               headers: dict[str, str], limited: bool) -> None:
    async def busy(_: web.Request) -> web.Response:
        return web.json_response({"error": "slow down"}, status=429, headers=headers)

    app = web.Application()
    app.router.add_post("/crm", busy)
    async with TestServer(app) as server:
        crm = WebhookCrm(session, url=str(server.make_url("/crm")), secret=CrmStandIn().webhook_secret, timeout_s=2,
                         allow_private=True)
        with pytest.raises(TransientError) as caught:
            await crm.upsert("op_1", PAYLOAD)
    assert isinstance(caught.value, RateLimited) is limited
    if limited:
        assert isinstance(caught.value, RateLimited) and caught.value.retry_after == 7.0


def _salesforce(s: CrmStandIn, session: aiohttp.ClientSession, **overrides: Any) -> SalesforceCrm:
    options: dict[str, Any] = {"login_url": s.url, "client_id": s.client_id, "client_secret": s.client_secret,
                               "api_version": "v62.0", "external_id_field": "Leadflow_Id__c", "stage": "Qualification",
                               "close_in_days": 30, "timeout_s": 2, "lead_id_field": "Leadflow_Lead_Id__c",
                               **overrides}
    return SalesforceCrm(session, **options)


async def test_the_salesforce_standin_refuses_a_field_the_org_lacks_as_salesforce_does(
        standin: CrmStandIn, session: aiohttp.ClientSession) -> None:
    """Salesforce REST: 400 [{"message": "No such column ...", "errorCode": "INVALID_FIELD"}], nothing written."""
    standin.salesforce_custom_fields.discard("Leadflow_Lead_Id__c")
    form = {"grant_type": "client_credentials", "client_id": standin.client_id, "client_secret": standin.client_secret}
    async with session.post(f"{standin.url}/services/oauth2/token", data=form) as r:
        token = (await r.json())["access_token"]
    url = f"{standin.url}/services/data/v62.0/sobjects/Opportunity/Leadflow_Id__c/op_1"
    body = {"Name": "x", "StageName": "Qualification", "CloseDate": "2026-04-01", "Leadflow_Lead_Id__c": "ld_1"}
    async with session.patch(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 400
        assert await r.json() == [{"message": "No such column 'Leadflow_Lead_Id__c' on sobject of type Opportunity",
                                   "errorCode": "INVALID_FIELD", "fields": []}]
    # Field names are case-insensitive, as in Salesforce; a standard field is always there.
    async with session.patch(url, json={**body, "Leadflow_Lead_Id__c": None, "amount": 10},
                             headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 400 and "Leadflow_Lead_Id__c" in (await r.json())[0]["message"]
    del body["Leadflow_Lead_Id__c"]
    async with session.patch(url, json={**body, "amount": 10}, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 201


async def test_salesforce_invalid_field_is_a_dead_letter_naming_the_field_and_what_to_do(
        standin: CrmStandIn, session: aiohttp.ClientSession) -> None:
    """An org without Leadflow_Lead_Id__c: permanent (never retried), the reason names the field, never a value."""
    standin.salesforce_custom_fields.discard("Leadflow_Lead_Id__c")
    with pytest.raises(PermanentError) as caught:
        await _salesforce(standin, session).upsert("op_1", PAYLOAD)
    assert str(caught.value) == (
        "Salesforce refused the opportunity: HTTP 400 INVALID_FIELD (Leadflow_Lead_Id__c: the org's Opportunity has "
        "no such field (or the integration user cannot see it): create it, or set crm.salesforce.lead_id_field: null "
        "to write no lead id)")
    assert standin.opportunities == {}
    assert PAYLOAD["name"] not in str(caught.value) and "ld_1" not in str(caught.value)
    # What the docs say to do: without the lead id field the same opportunity goes through.
    assert (await _salesforce(standin, session, lead_id_field=None).upsert("op_1", PAYLOAD)).created
    # A lead id field named in the config but absent in the org is named whatever its name.
    standin.salesforce_custom_fields.add("Leadflow_Lead_Id__c")
    with pytest.raises(PermanentError, match=r"INVALID_FIELD \(Lead_Ref__c: "):
        await _salesforce(standin, session, lead_id_field="Lead_Ref__c").upsert("op_2", PAYLOAD)


async def test_salesforce_without_the_external_id_field_is_a_dead_letter_naming_it(
        standin: CrmStandIn, session: aiohttp.ClientSession) -> None:
    standin.salesforce_external_ids.clear()
    with pytest.raises(PermanentError) as caught:
        await _salesforce(standin, session).upsert("op_1", PAYLOAD)
    assert str(caught.value).startswith("Salesforce refused the opportunity: HTTP 404 NOT_FOUND (Leadflow_Id__c: "
                                        "create it on Opportunity as a Text field marked External ID and Unique")
    assert standin.opportunities == {}

"""Salesforce Outbound Messages end to end: real HTTP, real Redis, a real worker and the sandbox API,
SOAP messages shaped as Salesforce's outbound-messaging WSDL sends them."""

from __future__ import annotations

from xml.etree.ElementTree import fromstring as trusted_fromstring

import pytest
import requests
from redis import Redis

from crmsync.erasure.audit import list_erasures
from crmsync.operations.source_items import ignored_counts, rejected_items, version_fallbacks
from jobs.worker import SyncWorker
from sandbox import RunningSandbox
from tests.support import (
    P1,
    P2,
    SALESFORCE_TOKEN,
    Platform,
    corpus,
    customers,
    personal_values_found,
    redis_round_trips,
    run,
    salesforce_account,
    salesforce_message,
    salesforce_sobject,
    seed_purchases,
    stats,
)

SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
ACCOUNT = "0015g00000QmNoPAAV"


def post(crm: str, body: bytes, token: str | None = SALESFORCE_TOKEN) -> requests.Response:
    query = "" if token is None else f"?token={token}"
    headers = {"content-type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    return requests.post(f"{crm}/webhooks/salesforce{query}", data=body, headers=headers, timeout=10)


def acknowledged(response: requests.Response) -> bool:
    """The answer is Salesforce's Ack: text/xml, notificationsResponse/Ack = true."""
    ack = trusted_fromstring(response.content).find(
        f"{SOAP}Body/{{http://soap.sforce.com/2005/09/outbound}}notificationsResponse/"
        "{http://soap.sforce.com/2005/09/outbound}Ack"
    )
    return response.headers["content-type"].startswith("text/xml") and ack is not None and ack.text == "true"


def fault(response: requests.Response) -> str:
    """The faultstring of a SOAP fault answer."""
    found = trusted_fromstring(response.content).find(f"{SOAP}Body/{SOAP}Fault")
    assert found is not None, response.text
    return found.findtext("faultstring") or ""


def test_a_message_is_acknowledged_and_its_accounts_sync_while_the_rest_is_set_aside(
    crm: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    contact = salesforce_sobject("Contact", {"Id": "0035g", "LastModifiedDate": "2026-11-20T09:30:00Z"})
    invalid = salesforce_account("0015g00000ZZZZZAAV", modified="last tuesday", Name="Secret Person Ltd")
    body = salesforce_message(
        ("04l000000000001AAA", salesforce_account(Description="Cargo", Industry="Freight;Logistics")),
        ("04l000000000002AAA", contact),
        ("04l000000000003AAA", invalid),
    )
    response = post(crm, body)
    assert response.status_code == 200 and acknowledged(response)
    run(worker)
    [customer] = customers(platform, ACCOUNT)
    assert (customer["name"], customer["description"], customer["labels"]) == (
        "Orbital Freight Ltd", "Cargo", ["freight", "logistics"],
    )  # fmt: skip
    assert ignored_counts(redis) == {("salesforce", "Contact"): 1}
    [rejected] = rejected_items(redis)
    assert rejected.reason == "version field LastModifiedDate is not a date-time"
    assert rejected.identifiers["notification_id"] == "04l000000000003AAA"
    assert personal_values_found(redis, ["Secret Person"]) == []


def test_a_redelivered_message_queues_nothing_new(crm: str, redis: Redis) -> None:
    body = salesforce_message(("04l000000000001AAA", salesforce_account()))
    assert acknowledged(post(crm, body)) and acknowledged(post(crm, body))
    assert redis.llen("rq:queue:crmsync") == 1


def test_an_older_message_arriving_late_does_not_win(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    newer = salesforce_account(modified="2026-11-20T10:00:00.000Z", Name="Orbital Freight Group")
    post(crm, salesforce_message(("04l000000000002AAA", newer)))
    post(
        crm,
        salesforce_message(("04l000000000001AAA", salesforce_account(modified="2026-11-20T09:00:00.000Z"))),
    )
    run(worker)
    assert [c["name"] for c in customers(platform, ACCOUNT)] == ["Orbital Freight Group"]


def test_a_deleted_account_deletes_the_customer(crm: str, worker: SyncWorker, platform: Platform) -> None:
    post(crm, salesforce_message(("04l000000000001AAA", salesforce_account())))
    run(worker)
    deleted = salesforce_account(modified="2026-11-20T10:00:00.000Z", IsDeleted="true")
    post(crm, salesforce_message(("04l000000000002AAA", deleted)))
    run(worker)
    assert customers(platform, ACCOUNT) == []


def test_a_privacy_request_object_erases_the_customer_through_the_erasure_path(
    crm: str, worker: SyncWorker, sandbox: RunningSandbox, platform: Platform, redis: Redis
) -> None:
    seed_purchases(sandbox.base_url, P1, P2)
    post(crm, salesforce_message(("04l000000000001AAA", salesforce_account(Description="Cargo"))))
    run(worker)
    request = salesforce_sobject("Privacy_Request__c", {
        "Id": "a0B5g000001XyZaEAK", "CreatedDate": "2026-11-21T08:00:00.000Z",
        "Account_External_Id__c": ACCOUNT, "Purchase_Ids__c": f"{P1}; {P2}",
    })  # fmt: skip
    assert acknowledged(post(crm, salesforce_message(("04l000000000009AAA", request))))
    run(worker)
    (record,) = list_erasures(redis, 30)
    assert (record.webhook_id, record.external_id, record.status) == (
        "salesforce:04l000000000009AAA", ACCOUNT, "completed",
    )  # fmt: skip
    assert record.purchase_ids == [P1, P2]
    assert stats(sandbox)["deletePersonalCustomerData"] == {str(P1): 1, str(P2): 1}
    assert personal_values_found(redis, ["Orbital Freight", "Cargo"]) == []


@pytest.mark.parametrize(
    ("token", "organization", "reason"),
    [
        (None, "00D5g000004ABCDEAU", "no token query parameter"),
        ("guessed-token-0123456789abcdef", "00D5g000004ABCDEAU", "token does not match"),
        (SALESFORCE_TOKEN, "00D5g000004ZZZZEAU", "OrganizationId is not configured"),
    ],
    ids=["no-token", "wrong-token", "other-organization"],
)
def test_every_authentication_failure_is_401_and_records_nothing(
    crm: str, redis: Redis, token: str | None, organization: str, reason: str
) -> None:
    body = salesforce_message(("04l000000000001AAA", salesforce_account()), organization=organization)
    response = post(crm, body, token=token)
    assert response.status_code == 401
    assert reason in fault(response)
    assert redis.dbsize() == 0


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">&lol3;</soapenv:Envelope>"""


@pytest.mark.parametrize(
    "body",
    [
        BOMB,
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>',
        b"<nope",
    ],
    ids=["entity-bomb", "external-entity", "broken"],
)
def test_a_body_that_cannot_be_read_is_a_400_soap_fault_never_a_500(
    crm: str, redis: Redis, body: bytes
) -> None:
    response = post(crm, body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/xml")
    assert fault(response)
    assert redis.dbsize() == 0


def test_a_message_of_100_notifications_is_accepted_in_one_redis_round_trip(crm: str, redis: Redis) -> None:
    post(crm, salesforce_message(("04l000000000000AAA", salesforce_account())))  # loads the script
    notifications = [
        (f"04l{n:015d}", salesforce_account(f"001{n:015d}", Name=f"Company {n}")) for n in range(1, 101)
    ]
    with redis_round_trips(redis) as commands:
        assert acknowledged(post(crm, salesforce_message(*notifications)))
    assert [command.split()[0] for command in commands] == ["EVALSHA"]
    assert redis.llen("rq:queue:crmsync") == 101


# Bodies from tests/corpus/salesforce (origins in its README).
def test_either_id_form_of_one_account_is_one_customer(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    assert acknowledged(post(crm, corpus("salesforce", "account-id-15.xml")))
    assert acknowledged(post(crm, corpus("salesforce", "account-id-18.xml")))
    run(worker)
    assert [c["name"] for c in customers(platform, "001d000001XD5XKAA1")] == ["Orbital Freight Group"]
    assert customers(platform, "001d000001XD5XK") == []


def test_a_message_without_last_modified_date_syncs_and_the_fallback_is_counted_with_its_fix(
    crm: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    assert acknowledged(post(crm, corpus("salesforce", "account-system-modstamp.xml")))
    run(worker)
    assert [c["name"] for c in customers(platform, ACCOUNT)] == ["Orbital Freight Ltd"]
    assert acknowledged(post(crm, corpus("salesforce", "account-no-version.xml")))
    run(worker)
    assert [(f.record_type, f.used, f.count) for f in version_fallbacks(redis)] == [
        ("Account", "SystemModstamp", 1), ("Account", "received_at", 1),
    ]  # fmt: skip
    assert version_fallbacks(redis)[0].fix == "add LastModifiedDate to the outbound message's fields"


def test_a_merge_loser_with_its_master_record_id_is_merged_into_the_master(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    master = salesforce_account("001d000001XD5XKAA1", "2026-11-20T09:00:00.000Z", Name="Orbital Freight")
    loser = salesforce_account("001d000001XD5XLAA1", "2026-11-20T09:00:00.000Z", Name="Orbital Dup")
    post(crm, salesforce_message(("04l000000000001AAA", master), ("04l000000000002AAA", loser)))
    run(worker)
    assert acknowledged(post(crm, corpus("salesforce", "account-merge-loser.xml")))
    run(worker)
    assert [c["name"] for c in customers(platform, "001d000001XD5XKAA1")] == ["Orbital Freight"]
    assert customers(platform, "001d000001XD5XLAA1") == []


def test_a_merge_into_a_master_never_synced_re_keys_the_loser_s_customer(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    loser = salesforce_account("001d000001XD5XL", "2026-11-20T09:00:00.000Z", Name="Orbital Dup")
    post(crm, salesforce_message(("04l000000000002AAA", loser)))
    run(worker)
    assert acknowledged(post(crm, corpus("salesforce", "account-merge-loser.xml")))
    run(worker)
    assert [c["name"] for c in customers(platform, "001d000001XD5XKAA1")] == ["Orbital Dup"]
    assert customers(platform, "001d000001XD5XLAA1") == []

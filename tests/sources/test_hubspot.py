"""HubSpot (webhooks/sources/hubspot.py): signatures checked against HubSpot's SDK as signer, events
shaped as HubSpot sends them; then end to end: real HTTP to the app, real Redis, a real worker and the
sandbox API, every request signed by HubSpot's own SDK."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
import requests
from hubspot.utils.signature import Signature
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from crmsync.core.settings import Settings
from crmsync.operations.source_items import ignored_counts, rejected_items
from jobs.worker import SyncWorker
from sandbox.server import RunningSandbox
from tests.support import (
    HUBSPOT_SECRET,
    Platform,
    corpus,
    customers,
    hubspot_event,
    hubspot_object_event,
    hubspot_signed_headers,
    personal_values_found,
    redis_round_trips,
    release_scheduled,
    run,
    stats,
    work,
)
from webhooks.mappings import DEFAULT_MAPPINGS
from webhooks.sources.hubspot import (
    HubSpotMapping,
    HubSpotSource,
    read_events,
    request_uri,
    sign_v3,
    verify_signature,
)
from webhooks.sources.items import AuthenticationFailed, InboundRequest, UnparseableBody

SECRET = HUBSPOT_SECRET
URL = "https://crmsync.example.com/webhooks/hubspot"
NOW_MS = 1_763_630_460_000
NOW = NOW_MS / 1000


def body_of(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def signed(
    body: bytes, version: str = "v3", uri: str = URL, timestamp_ms: int = NOW_MS, secret: str = SECRET
) -> InboundRequest:
    """A request signed by HubSpot's SDK (an independent signer), as the app at `URL` receives it."""
    signature = Signature.get_signature(
        secret, body.decode(), version, http_uri=uri, http_method="POST", timestamp=str(timestamp_ms)
    )
    if version == "v3":
        headers = {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": str(timestamp_ms)}
    else:
        headers = {"x-hubspot-signature": signature, "x-hubspot-signature-version": version}
    return InboundRequest("POST", "https", "crmsync.example.com", "/webhooks/hubspot", headers, body)


def test_the_sdk_and_our_signer_agree_on_the_sdk_test_vector_timestamp() -> None:
    body = body_of(hubspot_event())
    expected = Signature.get_signature(SECRET, body.decode(), "v3", http_uri=URL, timestamp="1693657560000")
    assert sign_v3(SECRET, "POST", URL, body, 1693657560000) == expected


def test_a_v3_signature_by_the_sdk_is_accepted() -> None:
    request = signed(body_of(hubspot_event()))
    verify_signature(request, SECRET, request_uri(request), now=NOW)


def test_a_v3_signature_over_another_body_is_refused() -> None:
    request = signed(body_of(hubspot_event()))
    tampered = InboundRequest(
        request.method,
        request.scheme,
        request.host,
        request.target,
        request.headers,
        body_of(hubspot_event(objectId=1)),
    )
    with pytest.raises(AuthenticationFailed) as caught:
        verify_signature(tampered, SECRET, URL, now=NOW)
    assert caught.value.reason == "invalid_signature"


def test_a_v3_signature_with_another_secret_is_refused() -> None:
    request = signed(body_of(hubspot_event()), secret="another-secret")
    with pytest.raises(AuthenticationFailed, match="does not match"):
        verify_signature(request, SECRET, URL, now=NOW)


def test_a_v3_signature_for_another_url_is_refused() -> None:
    request = signed(body_of(hubspot_event()), uri="https://attacker.example.com/webhooks/hubspot")
    with pytest.raises(AuthenticationFailed):
        verify_signature(request, SECRET, URL, now=NOW)


@pytest.mark.parametrize("age_seconds", [301, -301])
def test_a_v3_timestamp_more_than_five_minutes_away_is_refused(age_seconds: int) -> None:
    request = signed(body_of(hubspot_event()), timestamp_ms=NOW_MS - age_seconds * 1000)
    with pytest.raises(AuthenticationFailed) as caught:
        verify_signature(request, SECRET, URL, now=NOW)
    assert caught.value.reason == "timestamp_out_of_tolerance"


def test_a_v3_timestamp_within_five_minutes_is_accepted() -> None:
    request = signed(body_of(hubspot_event()), timestamp_ms=NOW_MS - 299_000)
    verify_signature(request, SECRET, URL, now=NOW)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_signature"),
        ({"x-hubspot-signature-v3": "abc"}, "missing_header"),
        ({"x-hubspot-signature-v3": "abc", "x-hubspot-request-timestamp": "soon"}, "malformed_timestamp"),
    ],
    ids=["no-signature", "no-timestamp", "bad-timestamp"],
)
def test_missing_or_malformed_headers_are_refused(headers: dict[str, str], reason: str) -> None:
    request = InboundRequest("POST", "https", "h", "/webhooks/hubspot", headers, b"[]")
    with pytest.raises(AuthenticationFailed) as caught:
        verify_signature(request, SECRET, URL, now=NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_legacy_signatures_are_refused_unless_allowed(version: str) -> None:
    request = signed(body_of(hubspot_event()), version=version)
    with pytest.raises(AuthenticationFailed) as caught:
        verify_signature(request, SECRET, URL, now=NOW)
    assert caught.value.reason == "legacy_signature_refused"
    verify_signature(request, SECRET, URL, allow_legacy=True, now=NOW)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_wrong_legacy_signature_is_refused_when_allowed(version: str) -> None:
    request = signed(body_of(hubspot_event()), version=version, secret="another-secret")
    with pytest.raises(AuthenticationFailed, match="does not match"):
        verify_signature(request, SECRET, URL, allow_legacy=True, now=NOW)


def test_the_url_is_the_requests_own_scheme_host_and_target() -> None:
    request = signed(body_of(hubspot_event()))
    # The scheme as the trusted proxy set it (crmsync/web/proxies.py), the Host the router routed by.
    proxied = InboundRequest("POST", "https", "crmsync.example.com", "/webhooks/hubspot",
                             request.headers, request.body)  # fmt: skip
    assert request_uri(proxied) == URL
    verify_signature(proxied, SECRET, request_uri(proxied), now=NOW)


def test_a_clients_forwarded_host_is_never_read() -> None:
    """Issue 27: a signature made for another URL passed when the client named its host."""
    request = signed(body_of(hubspot_event()), uri="https://evil.example/webhooks/hubspot")
    headers = {**request.headers, "x-forwarded-host": "evil.example"}
    proxied = InboundRequest("POST", "https", "crmsync.example.com", request.target, headers, request.body)
    assert request_uri(proxied) == URL
    with pytest.raises(AuthenticationFailed, match="does not match"):
        verify_signature(proxied, SECRET, request_uri(proxied), now=NOW)


def test_the_configured_public_url_wins_over_the_request() -> None:
    request = InboundRequest("POST", "http", "10.1.2.3:8000", "/webhooks/hubspot", {}, b"[]")
    assert request_uri(request, URL) == URL


def test_a_query_string_signed_decoded_is_accepted() -> None:
    # Several receivers decode a few escapes before signing; both forms are accepted.
    body = body_of(hubspot_event())
    target = "/webhooks/hubspot?next=a%3Ab"
    request = signed(body, uri="https://crmsync.example.com/webhooks/hubspot?next=a:b")
    request = InboundRequest("POST", "https", "crmsync.example.com", target, request.headers, body)
    verify_signature(request, SECRET, request_uri(request), now=NOW)


def test_the_source_authenticates_then_reads() -> None:
    source = HubSpotSource(SECRET, DEFAULT_MAPPINGS.of("hubspot"), webhook_url=URL)
    request = signed(body_of(hubspot_event()))
    source.authenticate(request, now=NOW)
    assert len(source.read(request.body).events) == 1


# --- mapping ------------------------------------------------------------------------------------------


def test_a_name_change_writes_the_name_only_ordered_by_occurred_at() -> None:
    batch = read_events(body_of(hubspot_event()), DEFAULT_MAPPINGS.of("hubspot"))
    [mapped] = batch.events
    assert mapped.delivery_id == "hubspot:7001:88:4417:5150:1763630400000"
    assert mapped.event == {
        "type": "customer.updated",
        "timestamp": "2025-11-20T09:20:00.000000+00:00",
        "data": {"external_id": "5150", "name": "Orbital Freight"},
    }


def test_a_redelivery_has_the_same_delivery_id() -> None:
    first = read_events(body_of(hubspot_event()), DEFAULT_MAPPINGS.of("hubspot")).events[0]
    again = read_events(body_of(hubspot_event(attemptNumber=3)), DEFAULT_MAPPINGS.of("hubspot")).events[0]
    assert again.delivery_id == first.delivery_id


def test_a_batch_maps_each_event_on_its_own() -> None:
    events = [hubspot_event(eventId=n, objectId=5000 + n, propertyValue=f"Company {n}") for n in range(100)]
    batch = read_events(body_of(*events), DEFAULT_MAPPINGS.of("hubspot"))
    assert len(batch.events) == 100
    assert len({mapped.delivery_id for mapped in batch.events}) == 100


def test_a_deletion_maps_to_customer_deleted() -> None:
    deletion = hubspot_object_event("company.deletion")
    [mapped] = read_events(body_of(deletion), DEFAULT_MAPPINGS.of("hubspot")).events
    assert (mapped.event["type"], mapped.event["data"]) == ("customer.deleted", {"external_id": "5150"})


def test_a_merge_maps_to_one_merge_of_the_merged_away_companies_into_the_primary() -> None:
    merge = hubspot_object_event(
        "company.merge", objectId=5150, primaryObjectId=5150, mergedObjectIds=[5150, 6001, 6002]
    )
    [mapped] = read_events(body_of(merge), DEFAULT_MAPPINGS.of("hubspot")).events
    assert (mapped.event["type"], mapped.event["data"]) == (
        "customer.merged",
        {"external_id": "5150", "merged_ids": ["6001", "6002"]},
    )


# HubSpot's changelog "New subscription types for webhooks": `newObjectId` is "the Id of the object
# that was created from the result of the merge", separate from `primaryObjectId`.
def test_a_merge_into_a_new_record_re_keys_the_primary_first_then_the_merged_ones() -> None:
    merge = hubspot_object_event(
        "company.merge", objectId=5150, primaryObjectId=5150, mergedObjectIds=[6001], newObjectId=7777,
        numberOfPropertiesMoved=3,
    )  # fmt: skip
    mapping = HubSpotMapping(fields={"name": "name"}, external_id_prefix="hs-")
    [mapped] = read_events(body_of(merge), mapping).events
    assert mapped.event["data"] == {"external_id": "hs-7777", "merged_ids": ["hs-5150", "hs-6001"]}


def test_a_merge_with_nothing_merged_away_is_ignored() -> None:
    merge = hubspot_object_event("company.merge", primaryObjectId=5150, mergedObjectIds=[5150])
    batch = read_events(body_of(merge), DEFAULT_MAPPINGS.of("hubspot"))
    assert (batch.events, batch.ignored_by_type()) == ([], {"company.merge": 1})


# HubSpot's changelog "Public Beta: Generic Webhook Subscriptions" (2024-08): `object.<change>` with the
# object's raw type id in `objectTypeId`.
@pytest.mark.parametrize("object_setting", ["company", "0-2"])
def test_the_generic_format_maps_a_company_like_the_legacy_one(object_setting: str) -> None:
    mapping = HubSpotMapping(fields={"name": "name"}, object=object_setting)
    change = hubspot_event(subscriptionType="object.propertyChange", objectTypeId="0-2")
    deletion = hubspot_object_event("object.deletion", objectTypeId="0-2", eventId=2)
    batch = read_events(body_of(change, deletion), mapping)
    assert [(m.event["type"], m.event["data"]) for m in batch.events] == [
        ("customer.updated", {"external_id": "5150", "name": "Orbital Freight"}),
        ("customer.deleted", {"external_id": "5150"}),
    ]


def test_the_generic_format_maps_a_custom_object_named_by_its_type_id() -> None:
    mapping = HubSpotMapping(fields={"name": "name"}, object="2-12345")
    custom = hubspot_event(subscriptionType="object.propertyChange", objectTypeId="2-12345")
    company = hubspot_event(subscriptionType="object.propertyChange", objectTypeId="0-2", eventId=2)
    batch = read_events(body_of(custom, company), mapping)
    assert [m.event["data"]["name"] for m in batch.events] == ["Orbital Freight"]
    assert batch.ignored_by_type() == {"object.propertyChange/0-2": 1}


def test_a_generic_merge_is_a_merge() -> None:
    merge = hubspot_object_event(
        "object.merge", objectTypeId="0-2", primaryObjectId=5150, mergedObjectIds=[6001], newObjectId=5150
    )
    [mapped] = read_events(body_of(merge), DEFAULT_MAPPINGS.of("hubspot")).events
    assert mapped.event["data"] == {"external_id": "5150", "merged_ids": ["6001"]}


def test_generic_events_of_other_objects_are_ignored_and_counted_with_their_type_id() -> None:
    contact = hubspot_object_event("object.creation", objectTypeId="0-1")
    batch = read_events(body_of(contact), DEFAULT_MAPPINGS.of("hubspot"))
    assert (batch.events, batch.ignored_by_type()) == ([], {"object.creation/0-1": 1})


def test_a_generic_event_without_its_type_id_is_rejected_with_its_type() -> None:
    batch = read_events(
        body_of(hubspot_event(subscriptionType="object.propertyChange")), DEFAULT_MAPPINGS.of("hubspot")
    )
    [rejected] = batch.rejected
    assert (rejected.reason, rejected.type) == ("missing or invalid objectTypeId", "object.propertyChange")


def test_event_type_is_taken_for_subscription_type() -> None:
    legacy = hubspot_event()
    legacy["eventType"] = legacy.pop("subscriptionType")
    [mapped] = read_events(body_of(legacy), DEFAULT_MAPPINGS.of("hubspot")).events
    assert mapped.event["data"] == {"external_id": "5150", "name": "Orbital Freight"}


@pytest.mark.parametrize(
    "subscription",
    [
        "company.creation",
        "company.restore",
        "company.associationChange",
        "contact.creation",
        "contact.propertyChange",
        "contact.privacyDeletion",
        "deal.deletion",
    ],
)
def test_unmapped_types_are_ignored_and_counted_by_type(subscription: str) -> None:
    batch = read_events(body_of(hubspot_object_event(subscription)), DEFAULT_MAPPINGS.of("hubspot"))
    assert (batch.events, batch.rejected) == ([], [])
    assert batch.ignored_by_type() == {subscription: 1}


def test_a_change_of_an_unmapped_property_is_ignored() -> None:
    batch = read_events(
        body_of(hubspot_event(propertyName="phone", propertyValue="+44")), DEFAULT_MAPPINGS.of("hubspot")
    )
    assert batch.events == []
    assert batch.ignored_by_type() == {"company.propertyChange": 1}
    assert "+44" not in repr(batch)


def test_a_multi_select_property_becomes_labels_and_the_prefix_applies() -> None:
    mapping = HubSpotMapping(fields={"name": "name", "labels": "industry"}, external_id_prefix="hs-")
    change = hubspot_event(propertyName="industry", propertyValue="Freight;Logistics")
    [mapped] = read_events(body_of(change), mapping).events
    assert mapped.event["data"] == {"external_id": "hs-5150", "labels": ["Freight", "Logistics"]}


def test_a_cleared_description_writes_an_empty_description() -> None:
    change = hubspot_event(propertyName="description", propertyValue="")
    [mapped] = read_events(body_of(change), DEFAULT_MAPPINGS.of("hubspot")).events
    assert mapped.event["data"] == {"external_id": "5150", "description": ""}


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ({"objectId": None}, "missing or invalid objectId"),
        ({"occurredAt": "yesterday"}, "missing or invalid occurredAt"),
        ({"eventId": None}, "missing or invalid eventId"),
        ({"propertyName": None}, "missing propertyName"),
        ({"propertyValue": ""}, "invalid event: data.name:"),
        ({"subscriptionType": None}, "missing or invalid subscriptionType"),
    ],
    ids=["no-object-id", "bad-occurred-at", "no-event-id", "no-property", "empty-name", "no-type"],
)
def test_an_invalid_event_is_rejected_alone_with_its_ids_and_no_value(
    broken: dict[str, Any], reason: str
) -> None:
    good = hubspot_event(eventId=1, objectId=77, propertyValue="Kept Ltd")
    bad = hubspot_event(**{"eventId": 2, "propertyValue": "Secret Name Ltd", **broken})
    batch = read_events(body_of(good, bad), DEFAULT_MAPPINGS.of("hubspot"))
    assert [m.event["data"]["external_id"] for m in batch.events] == ["77"]
    [rejected] = batch.rejected
    assert rejected.reason.startswith(reason)
    assert rejected.identifiers["index"] == "1"
    assert rejected.type == (bad["subscriptionType"] or "unknown")
    assert "Secret Name" not in repr(rejected)


def test_an_item_that_is_not_an_object_is_rejected_alone() -> None:
    batch = read_events(json.dumps([hubspot_event(), "junk"]).encode(), DEFAULT_MAPPINGS.of("hubspot"))
    assert (len(batch.events), batch.rejected[0].identifiers) == (1, {"index": "1"})


# JSON that is not UTF-8 JSON text (RFC 8259), or that the parser cannot hold: each once a 500 or a guess.
NOT_UTF8_JSON = [b"[" * 10_000 + b"]" * 10_000, b"[" + b"9" * 5_000 + b"]", b'["\\ud800"]', b"\xef\xbb\xbf[]",
                 "[]".encode("utf-16"), b"[NaN]"]  # fmt: skip
NOT_UTF8_JSON_IDS = ["nested-10000", "int-5000-digits", "lone-surrogate", "bom", "utf-16", "nan"]


@pytest.mark.parametrize(
    ("body"),
    [b"{not json", b'{"eventId": 1}', b"\xff\xfe", *NOT_UTF8_JSON],
    ids=["json", "object", "bytes", *NOT_UTF8_JSON_IDS],
)
def test_a_body_that_is_not_a_json_array_is_unparseable(body: bytes) -> None:
    with pytest.raises(UnparseableBody):
        read_events(body, DEFAULT_MAPPINGS.of("hubspot"))


# -- end to end: real HTTP, Redis, a worker and the sandbox ----------------------------------------


def post(crm: str, events: list[dict[str, Any]], **signing: Any) -> requests.Response:
    """POST `events` to /webhooks/hubspot, signed by HubSpot's SDK for the URL the app sees."""
    url = f"{crm}/webhooks/hubspot"
    body = json.dumps(events).encode()
    headers = {**hubspot_signed_headers(url, body, **signing), **signing.pop("extra", {})}
    return requests.post(url, data=body, headers=headers, timeout=10)


def post_body(crm: str, body: bytes) -> requests.Response:
    """POST a saved body (tests/corpus) to /webhooks/hubspot exactly as it is, signed by HubSpot's SDK."""
    url = f"{crm}/webhooks/hubspot"
    return requests.post(url, data=body, headers=hubspot_signed_headers(url, body), timeout=10)


def name_change(object_id: int, name: str, at_ms: int, event_id: int) -> dict[str, Any]:
    return hubspot_event(objectId=object_id, propertyValue=name, occurredAt=at_ms, eventId=event_id)


def test_a_batch_creates_the_customer_and_sets_aside_what_it_cannot_map(
    crm: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    batch = [
        hubspot_object_event("company.creation", eventId=1),
        hubspot_event(eventId=2, propertyName="name", propertyValue="Orbital Freight"),
        hubspot_event(eventId=3, propertyName="description", propertyValue="Cargo to orbit"),
        hubspot_event(eventId=4, propertyName="industry", propertyValue="Freight;Logistics"),
        hubspot_event(eventId=5, propertyName="phone", propertyValue="+44 20 7946 0000"),
        hubspot_object_event("contact.creation", eventId=6, objectId=901),
        hubspot_event(eventId=7, objectId=None, propertyValue="Secret Person Ltd"),
    ]
    response = post(crm, batch)
    assert response.status_code == 200
    assert response.json() == {
        "status": "accepted",
        "queued": 3,
        "duplicates": 0,
        "ignored": 3,
        "rejected": 1,
    }
    run(worker)
    [customer] = customers(platform, "5150")
    assert (customer["name"], customer["description"]) == ("Orbital Freight", "Cargo to orbit")
    assert customer["labels"] == ["freight", "logistics"]
    assert ignored_counts(redis) == {
        ("hubspot", "company.creation"): 1,
        ("hubspot", "company.propertyChange"): 1,
        ("hubspot", "contact.creation"): 1,
    }
    [rejected] = rejected_items(redis)
    assert (rejected.source, rejected.reason) == ("hubspot", "missing or invalid objectId")
    assert rejected.identifiers["eventId"] == "7"
    assert personal_values_found(redis, ["Secret Person", "+44 20"]) == []


def test_a_redelivered_batch_queues_nothing_new(crm: str, redis: Redis) -> None:
    batch = [hubspot_event(eventId=n, objectId=6000 + n, propertyValue=f"Company {n}") for n in range(3)]
    assert post(crm, batch).json()["queued"] == 3
    redelivered = [{**event, "attemptNumber": 1} for event in batch]
    assert post(crm, redelivered).json() == {
        "status": "accepted", "queued": 0, "duplicates": 3, "ignored": 0, "rejected": 0,
    }  # fmt: skip
    assert redis.llen("rq:queue:crmsync") == 3


def test_an_older_name_change_arriving_late_does_not_win(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    post(crm, [name_change(5150, "Orbital Freight Ltd", 1763630460000, event_id=2)])
    run(worker)
    post(crm, [name_change(5150, "Orbital Freight", 1763630400000, event_id=1)])
    run(worker)
    assert [c["name"] for c in customers(platform, "5150")] == ["Orbital Freight Ltd"]


def test_a_description_before_the_name_waits_for_the_name_to_create_the_customer(
    crm: str, settings: Settings, platform: Platform, redis: Redis
) -> None:
    description = hubspot_event(
        eventId=1, propertyName="description", propertyValue="Cargo", occurredAt=1763630460000
    )
    post(crm, [description])
    post(
        crm,
        [hubspot_object_event(eventId=2), name_change(5150, "Orbital Freight", 1763630400000, event_id=3)],
    )
    # The description finds no customer yet: its retry waits (a minute here) while the name creates it.
    # (Event by event: coalesced, the two would be one create, as the next test shows.)
    waiting = replace(settings, retry_schedule=(60, 60), coalesce_events=False)
    work(waiting, redis)
    assert [c["description"] for c in customers(platform, "5150")] == [""]
    release_scheduled(redis)
    work(waiting, redis)
    [customer] = customers(platform, "5150")
    assert (customer["name"], customer["description"]) == ("Orbital Freight", "Cargo")


def test_a_description_queued_before_the_name_is_created_with_it_in_one_request(
    crm: str, settings: Settings, platform: Platform, redis: Redis, sandbox: RunningSandbox
) -> None:
    description = hubspot_event(
        eventId=1, propertyName="description", propertyValue="Cargo", occurredAt=1763630460000
    )
    post(crm, [description])
    post(crm, [name_change(5150, "Orbital Freight", 1763630400000, event_id=3)])
    work(settings, redis)
    [customer] = customers(platform, "5150")
    assert (customer["name"], customer["description"]) == ("Orbital Freight", "Cargo")
    assert stats(sandbox)["mutations"] == {"createCustomer": 1, "updateCustomer": 0, "deleteCustomer": 0,
                                           "deletePersonalCustomerData": 0}  # fmt: skip


def test_a_deletion_deletes_the_customer(crm: str, worker: SyncWorker, platform: Platform) -> None:
    post(crm, [name_change(3, "Company 3", 1763630400000, 3)])
    run(worker)
    deletion = hubspot_object_event("company.deletion", eventId=11, objectId=3, occurredAt=1763630500000)
    assert post(crm, [deletion]).json()["queued"] == 1
    run(worker)
    assert customers(platform, "3") == []


# The generic format (apps created since 2024) and the older `eventType` key: bodies from
# tests/corpus/hubspot (origins in its README). Both were once ignored or rejected.
def test_generic_company_events_sync_the_customer_and_other_objects_are_counted_by_type_id(
    crm: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    response = post_body(crm, corpus("hubspot", "generic-company-changes.json"))
    assert (response.json()["queued"], response.json()["ignored"]) == (2, 2)
    run(worker)
    [customer] = customers(platform, "5150")
    assert (customer["name"], customer["description"]) == ("Orbital Freight", "Cargo to orbit")
    assert ignored_counts(redis) == {
        ("hubspot", "object.creation/0-2"): 1,
        ("hubspot", "object.creation/0-1"): 1,
    }
    assert post_body(crm, corpus("hubspot", "generic-company-deletion.json")).json()["queued"] == 1
    run(worker)
    assert customers(platform, "5150") == []


def test_a_change_named_by_event_type_syncs_the_customer(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    assert post_body(crm, corpus("hubspot", "event-type-property-change.json")).json()["queued"] == 1
    run(worker)
    assert [c["name"] for c in customers(platform, "5150")] == ["Orbital Freight"]


def test_rejected_items_are_counted_on_metrics_with_their_type(crm: str) -> None:
    post(
        crm,
        [hubspot_event(objectId=None), hubspot_event(subscriptionType="object.propertyChange", eventId=2)],
    )
    labels = {"source": "hubspot", "outcome": "rejected"}
    assert metric_samples(crm, "crmsync_source_items_total", labels) == {
        "company.propertyChange": 1,
        "object.propertyChange": 1,
    }


@pytest.mark.parametrize(
    ("signing", "reason"),
    [
        ({"secret": "not-the-client-secret"}, "invalid_signature"),
        ({"timestamp_ms": int(time.time() * 1000) - 6 * 60 * 1000}, "timestamp_out_of_tolerance"),
        ({"version": "v1"}, "legacy_signature_refused"),
        ({"version": "v2"}, "legacy_signature_refused"),
    ],
    ids=["wrong-secret", "stale", "v1", "v2"],
)
def test_every_authentication_failure_is_401_and_records_nothing(
    crm: str, redis: Redis, signing: dict[str, Any], reason: str
) -> None:
    response = post(crm, [hubspot_event()], **signing)
    assert (response.status_code, response.json()["error"]) == (401, reason)
    assert redis.dbsize() == 0


def test_an_unsigned_request_or_one_for_another_url_is_401(crm: str, redis: Redis) -> None:
    body = json.dumps([hubspot_event()]).encode()
    unsigned = requests.post(f"{crm}/webhooks/hubspot", data=body, timeout=10)
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "missing_signature")
    elsewhere = hubspot_signed_headers("https://attacker.example/webhooks/hubspot", body)
    assert (
        requests.post(f"{crm}/webhooks/hubspot", data=body, headers=elsewhere, timeout=10).status_code == 401
    )
    assert redis.dbsize() == 0


def test_behind_heroku_the_signed_url_takes_the_routers_scheme_and_the_host(crm: str) -> None:
    """Heroku's router appends the scheme it was reached by: the rightmost X-Forwarded-Proto value
    (TRUSTED_PROXY_HOPS=1); a client's own value, left of it, is not believed."""
    body = json.dumps([hubspot_event()]).encode()
    headers = hubspot_signed_headers("https://crmsync.example.com/webhooks/hubspot", body)
    routed = {"host": "crmsync.example.com", "x-forwarded-for": "203.0.113.9"}
    for proto, status in (("https", 200), ("http, https", 200), ("https, http", 401)):
        forwarded = {**routed, "x-forwarded-proto": proto}
        response = requests.post(
            f"{crm}/webhooks/hubspot", data=body, headers={**headers, **forwarded}, timeout=10
        )
        assert response.status_code == status, proto


def test_a_signature_for_the_host_a_client_forwards_is_refused(crm: str, redis: Redis) -> None:
    """Issue 27: signed for https://evil.example/..., sent with `X-Forwarded-Host: evil.example`."""
    body = json.dumps([hubspot_event()]).encode()
    headers = hubspot_signed_headers("https://evil.example/webhooks/hubspot", body)
    forwarded = {"host": "crmsync.example.com", "x-forwarded-proto": "https",
                 "x-forwarded-host": "evil.example"}  # fmt: skip
    url = f"{crm}/webhooks/hubspot"
    response = requests.post(url, data=body, headers={**headers, **forwarded}, timeout=10)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_signature")
    assert redis.dbsize() == 0


def test_a_body_that_is_not_an_array_of_events_is_400(crm: str, redis: Redis) -> None:
    body = b'{"eventId": 1}'
    headers = hubspot_signed_headers(f"{crm}/webhooks/hubspot", body)
    response = requests.post(f"{crm}/webhooks/hubspot", data=body, headers=headers, timeout=10)
    assert (response.status_code, response.json()["error"]) == (400, "unparseable_body")


def test_a_batch_of_100_events_is_accepted_in_one_redis_round_trip(crm: str, redis: Redis) -> None:
    post(crm, [hubspot_event(eventId=0)])  # the script is loaded once per Redis, not per request
    batch = [hubspot_event(eventId=n, objectId=7000 + n, propertyValue=f"Company {n}") for n in range(1, 101)]
    with redis_round_trips(redis) as commands:
        assert post(crm, batch).json()["queued"] == 100
    assert [command.split()[0] for command in commands] == ["EVALSHA"]
    assert redis.llen("rq:queue:crmsync") == 101


def test_ignored_items_are_counted_on_metrics_by_type(crm: str) -> None:
    post(
        crm,
        [hubspot_object_event("deal.creation", eventId=1), hubspot_object_event("deal.creation", eventId=2)],
    )
    labels = {"source": "hubspot", "outcome": "ignored"}
    assert metric_samples(crm, "crmsync_source_items_total", labels) == {"deal.creation": 2}


def metric_samples(crm: str, name: str, labels: dict[str, str]) -> dict[str, float]:
    """`type` → value of the samples of `name` on /metrics that carry `labels`."""
    return {
        sample.labels["type"]: sample.value
        for family in text_string_to_metric_families(requests.get(f"{crm}/metrics", timeout=5).text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    }


def test_the_client_secret_signs_with_the_sdk_as_hubspot_does() -> None:
    # The SDK is the signer of every test here: check it signs what the settings hold.
    assert hubspot_signed_headers(
        "https://x/webhooks/hubspot", b"[]", timestamp_ms=1693657560000, secret=HUBSPOT_SECRET
    )


# Merges end to end (tests/corpus/hubspot; origins in its README): the platform's end state.
def test_a_merge_into_a_new_record_re_keys_the_primary_and_deletes_the_merged_away(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    post(
        crm,
        [
            name_change(5150, "Orbital Freight", 1795599000000, 1),
            name_change(6001, "Orbital Dup", 1795599000000, 2),
        ],
    )
    run(worker)
    assert post_body(crm, corpus("hubspot", "legacy-merge-new-object.json")).json()["queued"] == 1
    run(worker)
    assert [c["name"] for c in customers(platform, "7777")] == ["Orbital Freight"]
    assert (customers(platform, "5150"), customers(platform, "6001")) == ([], [])
    # A later change HubSpot still sends under the old primary's id reaches the survivor.
    post(crm, [name_change(5150, "Orbital Freight Group", 1795599180000, 3)])
    run(worker)
    assert [c["name"] for c in customers(platform, "7777")] == ["Orbital Freight Group"]
    assert customers(platform, "5150") == []


def test_a_generic_merge_keeps_the_primary_and_deletes_every_merged_away_company(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    post(crm, [name_change(object_id, f"Company {object_id}", 1795599000000, object_id)
               for object_id in (5150, 6001, 6002)])  # fmt: skip
    run(worker)
    body = corpus("hubspot", "generic-merge.json")
    assert post_body(crm, body).json()["queued"] == 1
    assert post_body(crm, body).json()["duplicates"] == 1
    run(worker)
    assert [len(customers(platform, str(object_id))) for object_id in (5150, 6001, 6002)] == [1, 0, 0]

"""HubSpot: signatures checked against HubSpot's SDK as signer; events shaped as HubSpot sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot.utils.signature import Signature

from tests.support import HUBSPOT_SECRET, hubspot_event, hubspot_object_event
from webhooks.mappings import DEFAULT_MAPPINGS, HubSpotMapping
from webhooks.sources.hubspot import HubSpotSource, read_events, request_uri, sign_v3, verify_signature
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
    source = HubSpotSource(SECRET, DEFAULT_MAPPINGS.hubspot, webhook_url=URL)
    request = signed(body_of(hubspot_event()))
    source.authenticate(request, now=NOW)
    assert len(source.read(request.body).events) == 1


# --- mapping ------------------------------------------------------------------------------------------


def test_a_name_change_writes_the_name_only_ordered_by_occurred_at() -> None:
    batch = read_events(body_of(hubspot_event()), DEFAULT_MAPPINGS.hubspot)
    [mapped] = batch.events
    assert mapped.delivery_id == "hubspot:7001:88:4417:5150:1763630400000"
    assert mapped.event == {
        "type": "customer.updated",
        "timestamp": "2025-11-20T09:20:00.000000+00:00",
        "data": {"external_id": "5150", "name": "Orbital Freight"},
    }


def test_a_redelivery_has_the_same_delivery_id() -> None:
    first = read_events(body_of(hubspot_event()), DEFAULT_MAPPINGS.hubspot).events[0]
    again = read_events(body_of(hubspot_event(attemptNumber=3)), DEFAULT_MAPPINGS.hubspot).events[0]
    assert again.delivery_id == first.delivery_id


def test_a_batch_maps_each_event_on_its_own() -> None:
    events = [hubspot_event(eventId=n, objectId=5000 + n, propertyValue=f"Company {n}") for n in range(100)]
    batch = read_events(body_of(*events), DEFAULT_MAPPINGS.hubspot)
    assert len(batch.events) == 100
    assert len({mapped.delivery_id for mapped in batch.events}) == 100


def test_a_deletion_deletes_the_customer() -> None:
    deletion = hubspot_object_event("company.deletion")
    [mapped] = read_events(body_of(deletion), DEFAULT_MAPPINGS.hubspot).events
    assert (mapped.event["type"], mapped.event["data"]) == ("customer.deleted", {"external_id": "5150"})


def test_a_merge_maps_to_one_merge_of_the_merged_away_companies_into_the_primary() -> None:
    merge = hubspot_object_event(
        "company.merge", objectId=5150, primaryObjectId=5150, mergedObjectIds=[5150, 6001, 6002]
    )
    [mapped] = read_events(body_of(merge), DEFAULT_MAPPINGS.hubspot).events
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
    batch = read_events(body_of(merge), DEFAULT_MAPPINGS.hubspot)
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
    [mapped] = read_events(body_of(merge), DEFAULT_MAPPINGS.hubspot).events
    assert mapped.event["data"] == {"external_id": "5150", "merged_ids": ["6001"]}


def test_generic_events_of_other_objects_are_ignored_and_counted_with_their_type_id() -> None:
    contact = hubspot_object_event("object.creation", objectTypeId="0-1")
    batch = read_events(body_of(contact), DEFAULT_MAPPINGS.hubspot)
    assert (batch.events, batch.ignored_by_type()) == ([], {"object.creation/0-1": 1})


def test_a_generic_event_without_its_type_id_is_rejected_with_its_type() -> None:
    batch = read_events(
        body_of(hubspot_event(subscriptionType="object.propertyChange")), DEFAULT_MAPPINGS.hubspot
    )
    [rejected] = batch.rejected
    assert (rejected.reason, rejected.type) == ("missing or invalid objectTypeId", "object.propertyChange")


def test_event_type_is_taken_for_subscription_type() -> None:
    legacy = hubspot_event()
    legacy["eventType"] = legacy.pop("subscriptionType")
    [mapped] = read_events(body_of(legacy), DEFAULT_MAPPINGS.hubspot).events
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
    batch = read_events(body_of(hubspot_object_event(subscription)), DEFAULT_MAPPINGS.hubspot)
    assert (batch.events, batch.rejected) == ([], [])
    assert batch.ignored_by_type() == {subscription: 1}


def test_a_change_of_an_unmapped_property_is_ignored() -> None:
    batch = read_events(
        body_of(hubspot_event(propertyName="phone", propertyValue="+44")), DEFAULT_MAPPINGS.hubspot
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
    [mapped] = read_events(body_of(change), DEFAULT_MAPPINGS.hubspot).events
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
    batch = read_events(body_of(good, bad), DEFAULT_MAPPINGS.hubspot)
    assert [m.event["data"]["external_id"] for m in batch.events] == ["77"]
    [rejected] = batch.rejected
    assert rejected.reason.startswith(reason)
    assert rejected.identifiers["index"] == "1"
    assert rejected.type == (bad["subscriptionType"] or "unknown")
    assert "Secret Name" not in repr(rejected)


def test_an_item_that_is_not_an_object_is_rejected_alone() -> None:
    batch = read_events(json.dumps([hubspot_event(), "junk"]).encode(), DEFAULT_MAPPINGS.hubspot)
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
        read_events(body, DEFAULT_MAPPINGS.hubspot)

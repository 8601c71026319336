"""HubSpot end to end: real HTTP to the app, real Redis, a real worker and the sandbox API; every
request signed by HubSpot's own SDK, every event shaped as HubSpot sends it."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
import requests
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

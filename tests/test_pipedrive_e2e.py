"""Pipedrive webhooks v2 and v1 end to end: real HTTP, real Redis, a real worker and the sandbox API,
bodies shaped as Pipedrive sends them, HTTP Basic credentials."""

from __future__ import annotations

import json

import pytest
import requests
from redis import Redis

from crmsync.operations.source_items import ignored_counts, rejected_items
from jobs.worker import SyncWorker
from tests.support import (
    Platform,
    basic_auth,
    corpus,
    customers,
    personal_values_found,
    pipedrive_body,
    run,
)


def post(crm: str, body: bytes, authorization: str | None = None) -> requests.Response:
    headers = {"content-type": "application/json", "authorization": authorization or basic_auth()}
    return requests.post(f"{crm}/webhooks/pipedrive", data=body, headers=headers, timeout=10)


def change(event_id: str, name: str, at: str = "2026-11-20T09:30:00.123Z") -> bytes:
    return pipedrive_body("change", data={"id": 42, "name": name}, id=event_id, timestamp=at)


def test_a_change_creates_the_customer_and_other_entities_are_ignored(
    crm: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    response = post(crm, change("e-1", "Orbital Freight"))
    assert response.json() == {
        "status": "accepted",
        "queued": 1,
        "duplicates": 0,
        "ignored": 0,
        "rejected": 0,
    }
    assert (
        post(crm, pipedrive_body("change", entity="person", data={"id": 9, "name": "Jane"}, id="e-2")).json()[
            "ignored"
        ]
        == 1
    )
    run(worker)
    assert [c["name"] for c in customers(platform, "42")] == ["Orbital Freight"]
    assert ignored_counts(redis) == {("pipedrive", "person.change"): 1}


def test_a_redelivered_event_queues_nothing_new(crm: str, redis: Redis) -> None:
    assert post(crm, change("e-1", "Orbital Freight")).json()["queued"] == 1
    assert post(crm, change("e-1", "Orbital Freight")).json()["duplicates"] == 1
    assert redis.llen("rq:queue:crmsync") == 1


def test_an_older_change_arriving_late_does_not_win(crm: str, worker: SyncWorker, platform: Platform) -> None:
    post(crm, change("e-2", "Orbital Freight Group", at="1795599000"))  # 10-digit seconds, 2026-11-25
    post(crm, change("e-1", "Orbital Freight", at="2026-11-20T09:30:00.123Z"))
    run(worker)
    assert [c["name"] for c in customers(platform, "42")] == ["Orbital Freight Group"]


def test_a_delete_deletes_the_customer(crm: str, worker: SyncWorker, platform: Platform) -> None:
    post(crm, change("e-1", "Orbital Freight"))
    run(worker)
    deleted = pipedrive_body("delete", previous={"id": 42, "name": "Orbital Freight"}, id="e-2",
                             timestamp="2026-11-20T10:00:00Z")  # fmt: skip
    assert post(crm, deleted).json()["queued"] == 1
    run(worker)
    assert customers(platform, "42") == []


def test_an_event_that_cannot_be_mapped_is_acknowledged_and_kept_as_rejected(crm: str, redis: Redis) -> None:
    body = pipedrive_body("change", data={"name": "Secret Person Ltd"}, id="e-7")
    response = post(crm, body)
    assert (response.status_code, response.json()["rejected"]) == (200, 1)
    [rejected] = rejected_items(redis)
    assert (rejected.source, rejected.reason, rejected.identifiers["id"]) == (
        "pipedrive", "missing external id field id", "e-7",
    )  # fmt: skip
    assert personal_values_found(redis, ["Secret Person"]) == []


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("none", "missing_credentials"),
        (basic_auth(password="not-the-password"), "invalid_credentials"),
        (basic_auth(user="someone-else"), "invalid_credentials"),
    ],
    ids=["none", "wrong-password", "wrong-user"],
)
def test_every_authentication_failure_is_401_and_records_nothing(
    crm: str, redis: Redis, authorization: str, reason: str
) -> None:
    response = post(crm, change("e-1", "Orbital Freight"), authorization=authorization)
    assert (response.status_code, response.json()["error"]) == (401, reason)
    assert redis.dbsize() == 0


def test_a_body_that_is_not_json_is_400(crm: str, redis: Redis) -> None:
    assert post(crm, b"{not json").status_code == 400
    assert redis.dbsize() == 0


# Webhooks v1, still the default in many accounts: each body from tests/corpus/pipedrive (origins in
# its README). On a v1 body the receiver once answered 200 and dropped it.
def test_v1_added_and_updated_sync_the_organization_and_a_retry_is_a_duplicate(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    assert post(crm, corpus("pipedrive", "v1-added-organization.json")).json()["queued"] == 1
    assert post(crm, corpus("pipedrive", "v1-updated-organization.json")).json()["queued"] == 1
    assert post(crm, corpus("pipedrive", "v1-updated-organization-retry.json")).json()["duplicates"] == 1
    run(worker)
    assert [c["name"] for c in customers(platform, "42")] == ["Orbital Freight Group"]


def test_v1_an_older_update_arriving_late_does_not_win(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    post(crm, corpus("pipedrive", "v1-updated-organization.json"))
    post(crm, corpus("pipedrive", "v1-added-organization.json"))
    run(worker)
    assert [c["name"] for c in customers(platform, "42")] == ["Orbital Freight Group"]


def test_v1_deleted_deletes_the_customer(crm: str, worker: SyncWorker, platform: Platform) -> None:
    post(crm, corpus("pipedrive", "v1-added-organization.json"))
    run(worker)
    assert post(crm, corpus("pipedrive", "v1-deleted-organization.json")).json()["queued"] == 1
    run(worker)
    assert customers(platform, "42") == []


def test_v1_other_objects_are_ignored_and_counted(crm: str, redis: Redis) -> None:
    assert post(crm, corpus("pipedrive", "v1-updated-person.json")).json()["ignored"] == 1
    assert ignored_counts(redis) == {("pipedrive", "person.updated"): 1}


def test_a_body_that_is_neither_v1_nor_v2_is_400_and_queues_nothing(crm: str, redis: Redis) -> None:
    response = post(crm, b'{"event": "updated.organization", "current": {"id": 42}}')
    assert (response.status_code, response.json()["error"]) == (400, "unparseable_body")
    assert redis.llen("rq:queue:crmsync") == 0


def named(organization_id: int, name: str, event_id: str) -> bytes:
    return pipedrive_body("change", data={"id": organization_id, "name": name}, id=event_id,
                          timestamp="2026-11-20T09:30:00Z")  # fmt: skip


@pytest.mark.parametrize("merge", ["v1-merged-organization.json", "v2-delete-merged-organization.json"])
def test_a_merge_keeps_the_organization_merged_into_and_deletes_the_other(
    crm: str, worker: SyncWorker, platform: Platform, merge: str
) -> None:
    post(crm, named(40, "Orbital Freight", "e-40"))
    post(crm, named(42, "Orbital Freight Ltd", "e-42"))
    run(worker)
    assert post(crm, corpus("pipedrive", merge)).json()["queued"] == 1
    run(worker)
    assert [c["name"] for c in customers(platform, "40")] == ["Orbital Freight"]
    assert customers(platform, "42") == []


@pytest.mark.parametrize("merge", ["v1-merged-organization.json", "v2-delete-merged-organization.json"])
def test_a_merge_into_an_organization_never_synced_re_keys_the_merged_away_customer(
    crm: str, worker: SyncWorker, platform: Platform, merge: str
) -> None:
    post(crm, named(42, "Orbital Freight Ltd", "e-42"))
    run(worker)
    post(crm, corpus("pipedrive", merge))
    run(worker)
    assert [c["name"] for c in customers(platform, "40")] == ["Orbital Freight Ltd"]
    assert customers(platform, "42") == []


def test_v1_s_deletion_of_the_merged_away_organization_after_its_merge_leaves_the_survivor(
    crm: str, worker: SyncWorker, platform: Platform
) -> None:
    # Pipedrive v1 reports a merge twice: `merged` of the kept one and `deleted` of the other ("Current
    # and previous" in its webhooks guide); the deletion may carry a later time than the merge.
    post(crm, named(40, "Orbital Freight", "e-40"))
    post(crm, named(42, "Orbital Freight Ltd", "e-42"))
    run(worker)
    post(crm, corpus("pipedrive", "v1-merged-organization.json"))
    deleted = json.loads(corpus("pipedrive", "v1-deleted-organization.json"))
    deleted["meta"].update(timestamp=1795176001, timestamp_micro=1795176001000000)
    assert post(crm, json.dumps(deleted).encode()).json()["queued"] == 1
    run(worker)
    assert [c["name"] for c in customers(platform, "40")] == ["Orbital Freight"]
    assert customers(platform, "42") == []

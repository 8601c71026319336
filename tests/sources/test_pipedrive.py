"""Pipedrive webhooks v2 and v1 (webhooks/sources/pipedrive.py): bodies shaped as Pipedrive sends them,
HTTP Basic authentication; then end to end: real HTTP, real Redis, a real worker and the sandbox API."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis

from crmsync.operations.source_items import ignored_counts, rejected_items
from jobs.worker import SyncWorker
from tests.support import (
    PIPEDRIVE_PASSWORD,
    PIPEDRIVE_USER,
    Platform,
    basic_auth,
    corpus,
    customers,
    personal_values_found,
    pipedrive_body,
    run,
)
from webhooks.mappings import DEFAULT_MAPPINGS, load_mappings
from webhooks.sources.items import AuthenticationFailed, InboundRequest, UnparseableBody
from webhooks.sources.pipedrive import PipedriveSource, read_event, verify_basic_auth

USER, PASSWORD = PIPEDRIVE_USER, PIPEDRIVE_PASSWORD


def test_a_change_writes_the_mapped_fields_of_the_record_ordered_by_meta_timestamp() -> None:
    batch = read_event(pipedrive_body(previous={"name": "Orbital"}), DEFAULT_MAPPINGS.of("pipedrive"))
    [mapped] = batch.events
    assert mapped.delivery_id == "pipedrive:8e3b3ad0-5bde-4c0c-a8b7-2f6a4ac5a2f1"
    assert mapped.event == {
        "type": "customer.updated",
        "timestamp": "2026-11-20T09:30:00.123000+00:00",
        "data": {"external_id": "42", "name": "Orbital Freight"},
    }


def test_a_create_also_writes_the_record() -> None:
    [mapped] = read_event(pipedrive_body("create"), DEFAULT_MAPPINGS.of("pipedrive")).events
    assert mapped.event["type"] == "customer.updated"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-20T09:30:00.123Z", "2026-11-20T09:30:00.123000+00:00"),
        ("1795599000", "2026-11-25T09:30:00.000000+00:00"),
        (1795599000, "2026-11-25T09:30:00.000000+00:00"),
    ],
    ids=["iso", "ten-digits", "number"],
)
def test_meta_timestamp_is_iso_or_ten_digit_seconds(timestamp: Any, expected: str) -> None:
    [mapped] = read_event(pipedrive_body(timestamp=timestamp), DEFAULT_MAPPINGS.of("pipedrive")).events
    assert mapped.event["timestamp"] == expected


def test_a_delete_takes_the_id_from_previous() -> None:
    body = pipedrive_body("delete", previous={"id": 42, "name": "Orbital Freight"})
    [mapped] = read_event(body, DEFAULT_MAPPINGS.of("pipedrive")).events
    assert (mapped.event["type"], mapped.event["data"]) == ("customer.deleted", {"external_id": "42"})


def test_a_delete_without_previous_takes_the_id_from_meta() -> None:
    [mapped] = read_event(pipedrive_body("delete", entity_id="43"), DEFAULT_MAPPINGS.of("pipedrive")).events
    assert mapped.event["data"] == {"external_id": "43"}


def test_a_v2_delete_naming_the_record_merged_into_is_a_merge() -> None:
    body = corpus("pipedrive", "v2-delete-merged-organization.json")
    [mapped] = read_event(body, DEFAULT_MAPPINGS.of("pipedrive")).events
    assert (mapped.event["type"], mapped.event["data"]) == (
        "customer.merged",
        {"external_id": "40", "merged_ids": ["42"]},
    )


def test_v1_added_and_updated_write_the_current_record_ordered_by_timestamp_micro() -> None:
    added, updated = (read_event(corpus("pipedrive", name), DEFAULT_MAPPINGS.of("pipedrive")).events[0]
                      for name in ("v1-added-organization.json", "v1-updated-organization.json"))  # fmt: skip
    assert added.event == {
        "type": "customer.updated",
        "timestamp": "2026-11-20T09:30:00.384700+00:00",
        "data": {"external_id": "42", "name": "Orbital Freight"},
    }
    assert updated.event["data"] == {"external_id": "42", "name": "Orbital Freight Group"}
    assert updated.delivery_id != added.delivery_id


def test_a_v1_redelivery_has_the_same_delivery_id() -> None:
    names = ("v1-updated-organization.json", "v1-updated-organization-retry.json")
    first, retried = (
        read_event(corpus("pipedrive", name), DEFAULT_MAPPINGS.of("pipedrive")).events[0] for name in names
    )
    assert first.delivery_id == retried.delivery_id


@given(st.integers(min_value=0, max_value=3))
def test_a_v1_delivery_id_is_the_same_whatever_the_retry_count(retry: int) -> None:
    body = json.loads(corpus("pipedrive", "v1-updated-organization.json"))
    [first] = read_event(json.dumps(body).encode(), DEFAULT_MAPPINGS.of("pipedrive")).events
    [again] = read_event(
        json.dumps({**body, "retry": retry}).encode(), DEFAULT_MAPPINGS.of("pipedrive")
    ).events
    assert again.delivery_id == first.delivery_id


@given(st.sampled_from(["timestamp_micro", "id", "webhook_id", "company_id"]), st.integers(1, 10**6))
def test_v1_changes_differing_in_any_id_or_time_have_different_delivery_ids(key: str, delta: int) -> None:
    body = json.loads(corpus("pipedrive", "v1-updated-organization.json"))
    [first] = read_event(json.dumps(body).encode(), DEFAULT_MAPPINGS.of("pipedrive")).events
    body["meta"][key] = int(body["meta"][key]) + delta
    [other] = read_event(json.dumps(body).encode(), DEFAULT_MAPPINGS.of("pipedrive")).events
    assert other.delivery_id != first.delivery_id


def test_v1_deleted_takes_the_id_from_previous() -> None:
    [mapped] = read_event(
        corpus("pipedrive", "v1-deleted-organization.json"), DEFAULT_MAPPINGS.of("pipedrive")
    ).events
    assert (mapped.event["type"], mapped.event["data"]) == ("customer.deleted", {"external_id": "42"})


def test_v1_merged_is_a_merge_of_merge_what_id_into_current_ordered_by_timestamp_milli() -> None:
    [mapped] = read_event(
        corpus("pipedrive", "v1-merged-organization.json"), DEFAULT_MAPPINGS.of("pipedrive")
    ).events
    assert mapped.event == {
        "type": "customer.merged",
        "timestamp": "2026-11-20T12:00:00.572000+00:00",
        "data": {"external_id": "40", "merged_ids": ["42"]},
    }


def test_v1_merged_without_merge_what_id_takes_the_merged_away_id_from_previous() -> None:
    body = json.loads(corpus("pipedrive", "v1-merged-organization.json"))
    del body["current"]["merge_what_id"]
    [mapped] = read_event(json.dumps(body).encode(), DEFAULT_MAPPINGS.of("pipedrive")).events
    assert mapped.event["data"] == {"external_id": "40", "merged_ids": ["42"]}


def test_v1_uses_the_same_mapping_file_as_v2_dotted_paths_and_prefix_included(tmp_path: Path) -> None:
    path = tmp_path / "mappings.toml"
    path.write_text('[pipedrive]\nexternal_id_prefix = "pd-"\n[pipedrive.organization.fields]\n'
                    'name = "name"\nlabels = "owner_name"\n')  # fmt: skip
    body = corpus("pipedrive", "v1-added-organization.json")
    [mapped] = read_event(body, load_mappings(str(path)).of("pipedrive")).events
    assert mapped.event["data"] == {
        "external_id": "pd-42",
        "name": "Orbital Freight",
        "labels": ["Owner Name"],
    }


def test_v1_other_objects_are_ignored_and_counted_by_type() -> None:
    batch = read_event(corpus("pipedrive", "v1-updated-person.json"), DEFAULT_MAPPINGS.of("pipedrive"))
    assert (batch.events, batch.ignored_by_type()) == ([], {"person.updated": 1})


def test_a_v1_event_that_cannot_be_mapped_is_rejected_with_its_type() -> None:
    body = json.loads(corpus("pipedrive", "v1-updated-organization.json"))
    body["meta"]["action"] = "archived"
    [rejected] = read_event(json.dumps(body).encode(), DEFAULT_MAPPINGS.of("pipedrive")).rejected
    assert (rejected.reason, rejected.type) == (
        "unknown meta.action for organization",
        "organization.archived",
    )


@pytest.mark.parametrize(
    ("entity", "action"), [("person", "change"), ("deal", "create"), ("activity", "delete")]
)
def test_other_entities_are_ignored_and_counted_by_type(entity: str, action: str) -> None:
    batch = read_event(
        pipedrive_body(action, entity=entity, data={"id": 1}), DEFAULT_MAPPINGS.of("pipedrive")
    )
    assert (batch.events, batch.rejected) == ([], [])
    assert batch.ignored_by_type() == {f"{entity}.{action}": 1}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"id": None}, "missing meta.id"),
        ({"timestamp": "soon"}, "missing or invalid meta.timestamp"),
        ({"data": {"name": "Secret Ltd"}}, "missing external id field id"),
        ({"data": {"id": 42, "name": ""}}, "invalid event: data.name:"),
        ({"action": "merge"}, "unknown meta.action"),
    ],
    ids=["no-id", "bad-timestamp", "no-record-id", "empty-name", "unknown-action"],
)
def test_an_invalid_event_is_rejected_with_ids_and_no_value(overrides: dict[str, Any], reason: str) -> None:
    data = overrides.pop("data", {"id": 42, "name": "Secret Ltd"})
    batch = read_event(pipedrive_body(data=data, **overrides), DEFAULT_MAPPINGS.of("pipedrive"))
    [rejected] = batch.rejected
    assert rejected.reason.startswith(reason)
    assert rejected.identifiers["entity"] == "organization"
    assert rejected.type == f"organization.{overrides.get('action', 'change')}"
    assert "Secret" not in repr(rejected)


@pytest.mark.parametrize(
    "body", [b'{"current": {"id": 1}, "event": "updated.organization"}', b'{"meta": {"action": "updated"}}']
)
def test_a_body_that_is_neither_v1_nor_v2_is_unparseable(body: bytes) -> None:
    with pytest.raises(UnparseableBody, match="neither|v1 or v2"):
        read_event(body, DEFAULT_MAPPINGS.of("pipedrive"))


# JSON that is not UTF-8 JSON text (RFC 8259), or that the parser cannot hold: each once a 500 or a guess.
NOT_UTF8_JSON = [b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b'{"a": ' + b"9" * 5_000 + b"}",
                 b'{"a": "\\ud800"}', b"\xef\xbb\xbf{}", "{}".encode("utf-16"), b'{"a": NaN}']  # fmt: skip
NOT_UTF8_JSON_IDS = ["nested-10000", "int-5000-digits", "lone-surrogate", "bom", "utf-16", "nan"]


@pytest.mark.parametrize(
    "body", [b"{nope", b"[]", b"\xff", *NOT_UTF8_JSON], ids=["json", "array", "bytes", *NOT_UTF8_JSON_IDS]
)
def test_a_body_that_is_not_a_json_object_is_unparseable(body: bytes) -> None:
    with pytest.raises(UnparseableBody):
        read_event(body, DEFAULT_MAPPINGS.of("pipedrive"))


def test_a_mapped_erasure_entity_requests_an_erasure_on_create(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[pipedrive]\nexternal_id_prefix = "pd-"\n'
        '[pipedrive.organization.fields]\nname = "name"\n'
        '[pipedrive.privacy_request]\naction = "erasure"\n'
        'external_id = "custom_fields.org_id"\npurchase_ids = "custom_fields.purchases"\n'
    )
    mappings = load_mappings(str(path)).of("pipedrive")
    data = {"id": 9, "custom_fields": {"org_id": "42", "purchases": "101;102"}}
    [mapped] = read_event(pipedrive_body("create", entity="privacy_request", data=data), mappings).events
    assert mapped.event["type"] == "customer.erasure_requested"
    assert mapped.event["data"] == {"external_id": "pd-42", "purchase_ids": [101, 102]}
    later = read_event(pipedrive_body("change", entity="privacy_request", data=data), mappings)
    assert later.ignored_by_type() == {"privacy_request.change": 1}


# --- authentication -------------------------------------------------------------------------------


def test_the_configured_credentials_pass() -> None:
    verify_basic_auth(basic_auth(USER, PASSWORD), USER, PASSWORD)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "missing_credentials"),
        ("Bearer abc", "missing_credentials"),
        ("Basic !!!", "malformed_credentials"),
        (basic_auth(USER, "wrong"), "invalid_credentials"),
        (basic_auth("someone", PASSWORD), "invalid_credentials"),
        ("Basic " + base64.b64encode(USER.encode()).decode(), "invalid_credentials"),
    ],
    ids=["none", "other-scheme", "not-base64", "wrong-password", "wrong-user", "no-colon"],
)
def test_every_other_authorization_is_refused(header: str, reason: str) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        verify_basic_auth(header, USER, PASSWORD)
    assert caught.value.reason == reason


def test_the_source_authenticates_then_reads() -> None:
    source = PipedriveSource(USER, PASSWORD, DEFAULT_MAPPINGS.of("pipedrive"))
    body = pipedrive_body()
    source.authenticate(
        InboundRequest(
            "POST", "https", "h", "/webhooks/pipedrive", {"authorization": basic_auth(USER, PASSWORD)}, body
        )
    )
    assert len(source.read(body).events) == 1


# -- end to end: real HTTP, Redis, a worker and the sandbox ----------------------------------------


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

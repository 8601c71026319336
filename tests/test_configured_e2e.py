"""Configured sources end to end: real HTTP, real Redis, a real worker and the sandbox API.

The presets are tested against what their vendors document (docs/crm-sources.md cites each page):
- Close: `close-sig-hash` = hex HMAC-SHA256, keyed by the bytes of the hex signature key, of
  `close-sig-timestamp` + body; the body `{"subscription_id", "event": {...}}` as in the example of
  developer.close.com/api/resources/webhooks (an event with `id`, `object_type`, `action`,
  `object_id`, `date_updated`, `data`, `previous_data`).
- Twenty: `X-Twenty-Webhook-Signature` = hex HMAC-SHA256 of `{X-Twenty-Webhook-Timestamp}:{body}`
  (milliseconds), the body `{"event", "data", "timestamp"}` as in twentyhq/twenty's webhooks page.
A third source, `acme`, is declared from scratch: a list of items, HTTP Basic, a header delivery id,
unix-millisecond versions and an erasure type.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
from redis import Redis

from crmsync.core.settings import Settings
from crmsync.erasure.audit import list_erasures
from crmsync.operations.source_items import ignored_counts, rejected_items
from crmsync.web import create_app
from jobs.worker import SyncWorker
from sandbox import RunningSandbox
from tests.support import P1, P2, Platform, customers, run, seed_purchases, served, stats

# Close shows a subscription's `signature_key` as 64 hex digits; a rotation holds two.
CLOSE_KEY = "4b1e5c0a9f3d2e7b6a8c1d0e9f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"
CLOSE_NEW_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
TWENTY_SECRET = "twenty-webhook-secret-0123456789"
ACME_USER, ACME_PASSWORD = "crmsync", "acme-password-0123456789"

MAPPINGS = """
[sources.close]
preset = "close"
external_id_prefix = "close-"

[sources.twenty]
preset = "twenty"

[sources.acme]
external_id_prefix = "acme-"
[sources.acme.auth]
type = "basic"
secret_env = "ACME_CREDENTIALS"
[sources.acme.items]
path = "changes"
id = "record.id"
type = "kind"
version = "record.modified_ms"
version_format = "unix_ms"
delivery_id = "header:X-Acme-Delivery"
purchase_ids = "record.purchases"
[sources.acme.types]
"account.saved" = "customer.updated"
"account.removed" = "customer.deleted"
"privacy.requested" = "erasure"
[sources.acme.fields]
name = "record.title"
labels = ["record.tags", "record.segment"]

[sources.beacon]
[sources.beacon.auth]
type = "bearer"
secret_env = "BEACON_TOKENS"
[sources.beacon.items]
id = "id"
type = "type"
version = "at"
version_format = "unix_s"
[sources.beacon.types]
"org.changed" = "customer.updated"
[sources.beacon.fields]
name = "name"

[sources.quill]
preset = "twenty"
[sources.quill.auth]
type = "query_token"
secret_env = "QUILL_TOKENS"
"""


@pytest.fixture(scope="module")
def configured_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The web app serving the three declared sources only (no built-in CRM source), over real HTTP;
    their secrets come from the environment given to create_app (two Close keys: a rotation)."""
    mappings = tmp_path_factory.mktemp("configured") / "mappings.toml"
    mappings.write_text(MAPPINGS)
    environ = {
        "CLOSE_WEBHOOK_SIGNATURE_KEYS": f"{CLOSE_KEY}, {CLOSE_NEW_KEY}",
        "TWENTY_WEBHOOK_SECRETS": TWENTY_SECRET,
        "ACME_CREDENTIALS": f"{ACME_USER}:{ACME_PASSWORD}",
        "BEACON_TOKENS": "beacon-old-token,beacon-new-token",
        "QUILL_TOKENS": "quill-token-0123456789",
    }
    app = create_app(replace(settings, mappings_file=str(mappings)), environ=environ)
    with served(app) as base_url:
        yield base_url


@pytest.fixture
def configured(configured_server: str, redis: Redis, sandbox: RunningSandbox) -> str:
    """The base URL of the app with the declared sources, with Redis emptied and the sandbox reset."""
    return configured_server


# --- Close ------------------------------------------------------------------------------------------


def close_body(action: str, event_id: str, updated: str, **data: Any) -> bytes:
    """A Close webhook body as developer.close.com shows it (a lead instead of an opportunity)."""
    lead = "lead_IIDHIStmFcFQZZP0BRe99V1MCoXWz2PGCm6EDmR9v2O"
    return json.dumps({
        "subscription_id": "whsub_2ZKYBHfCqIyEsKJL8AKIUZ",
        "event": {
            "id": event_id,
            "date_created": updated,
            "date_updated": updated,
            "organization_id": "orga_XbVPx5fFbKlYTz9PW5Ih1XDhViV10YihIaEgMEb6fVW",
            "user_id": "user_N6KhMpzHRCYQHdn4gRNIFNN5JExnsrprKA6ekxM63XA",
            "request_id": "req_4S2L8JTBAA1OUS74SSmAWC",
            "api_key_id": None,
            "object_type": "lead",
            "object_id": lead,
            "lead_id": lead,
            "action": action,
            "changed_fields": sorted(data) if action == "updated" else [],
            "meta": {"request_method": "PUT", "request_path": f"/api/v1/lead/{lead}/"},
            "data": {"id": lead, **data} if action != "deleted" else {},
            "previous_data": {},
        },
    }).encode()  # fmt: skip


LEAD = "close-lead_IIDHIStmFcFQZZP0BRe99V1MCoXWz2PGCm6EDmR9v2O"


def close_post(base: str, body: bytes, key: str = CLOSE_KEY, timestamp: int | None = None,
               signature: str | None = None) -> requests.Response:  # fmt: skip
    """POST `body` signed as Close signs: the key is the bytes of the hex signature key."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(bytes.fromhex(key), stamp.encode() + body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "close-sig-hash": signature or digest,
               "close-sig-timestamp": stamp}  # fmt: skip
    return requests.post(f"{base}/webhooks/close", data=body, headers=headers, timeout=10)


def test_close_a_lead_created_then_updated_is_the_customer_and_other_objects_are_ignored(
    configured: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    created = close_body("created", "ev_1", "2026-11-20T09:30:00.100000", display_name="Orbital Freight")
    assert close_post(configured, created).json() == {
        "status": "accepted", "queued": 1, "duplicates": 0, "ignored": 0, "rejected": 0,
    }  # fmt: skip
    updated = close_body("updated", "ev_2", "2026-11-20T09:31:00.000000+00:00",
                         display_name="Orbital Freight Group", description="Cargo")  # fmt: skip
    assert close_post(configured, updated).json()["queued"] == 1
    task = json.loads(close_body("created", "ev_3", "2026-11-20T09:32:00"))
    task["event"]["object_type"] = "task.lead"
    assert close_post(configured, json.dumps(task).encode()).json()["ignored"] == 1
    run(worker)
    [customer] = customers(platform, LEAD)
    assert (customer["name"], customer["description"]) == ("Orbital Freight Group", "Cargo")
    assert ignored_counts(redis) == {("close", "task.lead.created"): 1}


def test_close_an_older_update_arriving_late_does_not_win_and_a_redelivery_is_a_duplicate(
    configured: str, worker: SyncWorker, platform: Platform
) -> None:
    newer = close_body("updated", "ev_2", "2026-11-25T10:00:00.000000", display_name="Orbital Freight Group")
    older = close_body("created", "ev_1", "2026-11-20T10:00:00.000000", display_name="Orbital Freight")
    assert close_post(configured, newer).json()["queued"] == 1
    assert close_post(configured, older).json()["queued"] == 1
    assert close_post(configured, newer).json()["duplicates"] == 1
    run(worker)
    assert [c["name"] for c in customers(platform, LEAD)] == ["Orbital Freight Group"]


def test_close_a_deleted_lead_deletes_the_customer(
    configured: str, worker: SyncWorker, platform: Platform
) -> None:
    close_post(
        configured, close_body("created", "ev_1", "2026-11-20T09:30:00", display_name="Orbital Freight")
    )
    run(worker)
    assert close_post(configured, close_body("deleted", "ev_2", "2026-11-20T10:00:00")).json()["queued"] == 1
    run(worker)
    assert customers(platform, LEAD) == []


def test_close_either_key_of_a_rotation_is_accepted(configured: str) -> None:
    body = close_body("created", "ev_1", "2026-11-20T09:30:00", display_name="Orbital Freight")
    assert close_post(configured, body, key=CLOSE_KEY).status_code == 200
    assert close_post(configured, body, key=CLOSE_NEW_KEY).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"key": "00" * 32}, "invalid_signature"),
        ({"signature": "not hex at all"}, "invalid_signature"),
        ({"timestamp": int(time.time()) - 3600}, "timestamp_out_of_tolerance"),
        ({"timestamp": int(time.time()) + 3600}, "timestamp_out_of_tolerance"),
    ],
    ids=["unknown-key", "not-hex", "stale", "from-the-future"],
)
def test_close_every_authentication_failure_is_401_and_records_nothing(
    configured: str, redis: Redis, overrides: dict[str, Any], reason: str
) -> None:
    body = close_body("created", "ev_1", "2026-11-20T09:30:00", display_name="Orbital Freight")
    response = close_post(configured, body, **overrides)
    assert (response.status_code, response.json()["error"]) == (401, reason)
    assert redis.dbsize() == 0


def test_close_a_body_changed_after_signing_is_401(configured: str, redis: Redis) -> None:
    stamp = str(int(time.time()))
    signed = close_body("created", "ev_1", "2026-11-20T09:30:00", display_name="Orbital Freight")
    signature = hmac.new(bytes.fromhex(CLOSE_KEY), stamp.encode() + signed, hashlib.sha256).hexdigest()
    tampered = signed.replace(b"Orbital", b"Orbitax")
    response = close_post(configured, tampered, timestamp=int(stamp), signature=signature)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_signature")
    assert redis.dbsize() == 0


# --- Twenty -----------------------------------------------------------------------------------------


def twenty_body(event: str, at: str, **record: Any) -> bytes:
    """A Twenty webhook body as its webhooks page shows it (a company instead of a person)."""
    data = {"id": "20202020-0fd4-4f52-b2cd-6b8f2ac4e7c1", "createdAt": "2026-11-20T09:00:00Z", **record}
    return json.dumps({"event": event, "data": data, "timestamp": at}).encode()


COMPANY = "20202020-0fd4-4f52-b2cd-6b8f2ac4e7c1"


def twenty_post(
    base: str, body: bytes, secret: str = TWENTY_SECRET, millis: int | None = None
) -> requests.Response:
    stamp = str(int(time.time() * 1000) if millis is None else millis)
    signature = hmac.new(secret.encode(), f"{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "X-Twenty-Webhook-Signature": signature,
               "X-Twenty-Webhook-Timestamp": stamp}  # fmt: skip
    return requests.post(f"{base}/webhooks/twenty", data=body, headers=headers, timeout=10)


def test_twenty_a_company_is_created_updated_and_deleted(
    configured: str, worker: SyncWorker, platform: Platform
) -> None:
    assert (
        twenty_post(
            configured, twenty_body("company.created", "2026-11-20T09:30:00Z", name="Orbital")
        ).json()["queued"]
        == 1
    )
    updated = twenty_body("company.updated", "2026-11-20T09:31:00Z", name="Orbital Freight")
    assert twenty_post(configured, updated).json()["queued"] == 1
    # Twenty documents no delivery id: the same body again is the same delivery.
    assert twenty_post(configured, updated).json()["duplicates"] == 1
    assert (
        twenty_post(configured, twenty_body("person.created", "2026-11-20T09:31:00Z")).json()["ignored"] == 1
    )
    run(worker)
    assert [c["name"] for c in customers(platform, COMPANY)] == ["Orbital Freight"]
    assert (
        twenty_post(configured, twenty_body("company.deleted", "2026-11-20T09:40:00Z")).json()["queued"] == 1
    )
    run(worker)
    assert customers(platform, COMPANY) == []


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"secret": "another-secret"}, "invalid_signature"),
        ({"millis": int(time.time() * 1000) - 600_000}, "timestamp_out_of_tolerance"),
        # Seconds where Twenty sends milliseconds: 1970, far outside the tolerance.
        ({"millis": int(time.time())}, "timestamp_out_of_tolerance"),
    ],
    ids=["wrong-secret", "stale", "seconds-not-milliseconds"],
)
def test_twenty_every_authentication_failure_is_401_and_records_nothing(
    configured: str, redis: Redis, overrides: dict[str, Any], reason: str
) -> None:
    response = twenty_post(
        configured, twenty_body("company.created", "2026-11-20T09:30:00Z", name="O"), **overrides
    )
    assert (response.status_code, response.json()["error"]) == (401, reason)
    assert redis.dbsize() == 0


# --- a source declared from scratch -----------------------------------------------------------------


def acme_post(base: str, changes: list[dict[str, Any]], delivery: str = "dlv-1",
              password: str = ACME_PASSWORD) -> requests.Response:  # fmt: skip
    token = base64.b64encode(f"{ACME_USER}:{password}".encode()).decode()
    headers = {"authorization": f"Basic {token}", "X-Acme-Delivery": delivery}
    return requests.post(f"{base}/webhooks/acme", json={"changes": changes}, headers=headers, timeout=10)


def saved(record_id: str, title: str, modified_ms: int, **record: Any) -> dict[str, Any]:
    return {"kind": "account.saved", "record": {"id": record_id, "title": title, "modified_ms": modified_ms,
                                                  **record}}  # fmt: skip


def test_a_declared_batch_maps_each_item_and_rejects_a_bad_one_alone(
    configured: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    changes = [
        saved("1", "Orbital Freight", 1795599000000, tags=["cargo", "space"], segment="enterprise"),
        saved("2", "Venus Ventures", 1795599000000),
        {"kind": "account.saved", "record": {"title": "Secret Person Ltd", "modified_ms": 1795599000000}},
        {"kind": "note.added", "record": {"id": "9"}},
    ]
    assert acme_post(configured, changes).json() == {
        "status": "accepted", "queued": 2, "duplicates": 0, "ignored": 1, "rejected": 1,
    }  # fmt: skip
    [rejected] = rejected_items(redis)
    assert (rejected.source, rejected.reason, rejected.identifiers) == (
        "acme", "missing external id field record.id", {"index": "2", "type": "account.saved"},
    )  # fmt: skip
    assert acme_post(configured, changes).json()["duplicates"] == 2
    run(worker)
    [orbital] = customers(platform, "acme-1")
    assert (orbital["name"], sorted(orbital["labels"])) == (
        "Orbital Freight",
        ["cargo", "enterprise", "space"],
    )
    assert [c["name"] for c in customers(platform, "acme-2")] == ["Venus Ventures"]


def test_a_declared_erasure_type_erases_through_the_erasure_path(
    configured: str, worker: SyncWorker, sandbox: RunningSandbox, platform: Platform, redis: Redis
) -> None:
    seed_purchases(sandbox.base_url, P1, P2)
    acme_post(configured, [saved("1", "Orbital Freight", 1795599000000)], delivery="dlv-1")
    run(worker)
    request = {"kind": "privacy.requested",
               "record": {"id": "1", "modified_ms": 1795599100000, "purchases": f"{P1};{P2}"}}  # fmt: skip
    assert acme_post(configured, [request], delivery="dlv-2").json()["queued"] == 1
    run(worker)
    (record,) = list_erasures(redis, 30)
    assert (record.webhook_id, record.external_id, record.status) == ("acme:dlv-2:0", "acme-1", "completed")
    assert stats(sandbox)["deletePersonalCustomerData"] == {str(P1): 1, str(P2): 1}


def test_a_declared_basic_source_refuses_a_wrong_password(configured: str, redis: Redis) -> None:
    response = acme_post(configured, [saved("1", "Orbital Freight", 1795599000000)], password="guess")
    assert (response.status_code, response.json()["error"]) == (401, "invalid_credentials")
    assert redis.dbsize() == 0


def test_a_name_neither_built_in_nor_declared_is_404(configured: str) -> None:
    response = requests.post(f"{configured}/webhooks/attio", json={}, timeout=10)
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    # The built-in sources are not enabled in this app: they answer 404 as before.
    assert requests.post(f"{configured}/webhooks/pipedrive", json={}, timeout=10).status_code == 404


def test_a_declared_bearer_source_takes_either_token_of_its_rotation(
    configured: str, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    body = {"id": 77, "type": "org.changed", "at": 1795599000, "name": "Beacon Labs"}
    for token, status in (("beacon-new-token", 200), ("beacon-old-token", 200), ("beacon-guess", 401)):
        headers = {"authorization": f"Bearer {token}"}
        response = requests.post(f"{configured}/webhooks/beacon", json=body, headers=headers, timeout=10)
        assert response.status_code == status
    run(worker)
    assert [c["name"] for c in customers(platform, "77")] == ["Beacon Labs"]


def test_a_declared_query_token_source_checks_the_token_in_the_query(configured: str, redis: Redis) -> None:
    """A preset's auth replaced by a table of the operator (`quill` reads Twenty's bodies)."""
    body = twenty_body("company.created", "2026-11-20T09:30:00Z", name="Quill")
    url = f"{configured}/webhooks/quill"
    assert requests.post(f"{url}?token=quill-token-0123456789", data=body, timeout=10).json()["queued"] == 1
    response = requests.post(f"{url}?token=quill-guess", data=body, timeout=10)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_credentials")
    assert requests.post(url, data=body, timeout=10).json()["error"] == "missing_credentials"

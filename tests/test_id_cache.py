"""The id cache (jobs/id_cache.py): one platform request per write, and the fallbacks that keep it
right when the platform changed behind its back. Requests are counted by the sandbox itself."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import requests
from redis import Redis

from crmsync.core.keys import customer_ids_key
from crmsync.core.redis_conn import as_text
from crmsync.core.settings import Settings
from jobs.worker import SyncWorker, build_worker
from sandbox.server import RunningSandbox
from tests.support import ADMIN, Deliver, Platform, customers, event, job_of, run

CREATE = """mutation ($input: CreateCustomerInput!) {
  createCustomer(input: $input) { customer { id } errors { field messages } }
}"""
DELETE = """mutation ($input: DeleteCustomerInput!) {
  deleteCustomer(input: $input) { customer { id } errors { field messages } }
}"""


def requests_seen(sandbox: RunningSandbox) -> int:
    """Requests the sandbox's customers API received since its rates were last reset."""
    rates = requests.get(f"{sandbox.base_url}/admin/rates", headers=ADMIN, timeout=5).json()
    requests.delete(f"{sandbox.base_url}/admin/rates", headers=ADMIN, timeout=5).raise_for_status()
    return int(rates["customers"]["total"])


def cached_id(redis: Redis, external_id: str = "crm-1") -> str | None:
    found = redis.hget(customer_ids_key(external_id), external_id)
    return as_text(found) if found is not None else None


def out_of_band(platform: Platform, document: str, **values: Any) -> dict[str, Any]:
    """A change made on the platform by someone else than crmsync."""
    return platform(document, {"input": values})["data"]


def test_a_new_customer_is_created_in_one_request_and_its_id_cached(
    deliver: Deliver, worker: SyncWorker, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    run(worker)
    assert requests_seen(sandbox) == 1  # no lookup first
    assert cached_id(redis) == customers(platform)[0]["id"]


def test_an_update_of_a_known_customer_is_one_request(
    deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, platform: Platform
) -> None:
    deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    run(worker)
    requests_seen(sandbox)
    deliver(event("updated", at="2026-11-22T10:01:00Z", description="Red planet"))
    run(worker)
    assert requests_seen(sandbox) == 1
    assert customers(platform)[0]["description"] == "Red planet"


def test_a_customer_recreated_out_of_band_is_found_again_and_updated(
    deliver: Deliver, worker: SyncWorker, redis: Redis, platform: Platform
) -> None:
    deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    run(worker)
    old_id = cached_id(redis)
    out_of_band(platform, DELETE, id=old_id)
    new_id = out_of_band(platform, CREATE, name="Mars Missions", externalId="crm-1")["createCustomer"][
        "customer"
    ]["id"]
    response = deliver(event("updated", at="2026-11-22T10:01:00Z", description="Red planet"))
    run(worker)
    assert job_of(response, redis).get_status() == "finished"
    assert [(c["id"], c["description"]) for c in customers(platform)] == [(new_id, "Red planet")]
    assert cached_id(redis) == new_id


def test_a_customer_deleted_out_of_band_is_created_again_by_a_change_of_its_name(
    deliver: Deliver, worker: SyncWorker, redis: Redis, platform: Platform
) -> None:
    deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    run(worker)
    out_of_band(platform, DELETE, id=cached_id(redis))
    deliver(event("updated", at="2026-11-22T10:01:00Z", name="Mars Colonies"))
    run(worker)
    assert [c["name"] for c in customers(platform)] == ["Mars Colonies"]
    assert cached_id(redis) == customers(platform)[0]["id"]


def test_a_delete_forgets_the_cached_id(
    deliver: Deliver, worker: SyncWorker, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    run(worker)
    requests_seen(sandbox)
    deliver(event("deleted", at="2026-11-22T10:01:00Z"))
    run(worker)
    assert requests_seen(sandbox) == 1
    assert customers(platform) == []
    assert cached_id(redis) is None


def test_a_create_for_an_external_id_taken_out_of_band_updates_that_customer(
    deliver: Deliver, worker: SyncWorker, redis: Redis, platform: Platform
) -> None:
    existing = out_of_band(platform, CREATE, name="Old name", externalId="crm-1")["createCustomer"][
        "customer"
    ]["id"]
    response = deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions", labels=["Red"]))
    run(worker)
    assert job_of(response, redis).get_status() == "finished"
    assert [(c["id"], c["name"], c["labels"]) for c in customers(platform)] == [
        (existing, "Mars Missions", ["red"])
    ]
    assert cached_id(redis) == existing


def test_with_the_cache_off_every_write_looks_up_first(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = build_worker(replace(settings, id_cache=False, coalesce_events=False), redis)
    deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    deliver(event("updated", at="2026-11-22T10:01:00Z", description="Red planet"))
    run(worker)
    worker.runtime.close()
    assert requests_seen(sandbox) == 4
    assert cached_id(redis) is None


def test_a_merge_moves_the_rekeyed_records_id_and_drops_the_merged_ones(
    deliver: Deliver, worker: SyncWorker, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    # HubSpot: 101 and 102 merged into the new id 103; 101's record is re-keyed to 103, 102's deleted.
    deliver(event("created", external_id="101", at="2026-11-22T10:00:00Z", name="Acme"))
    deliver(event("created", external_id="102", at="2026-11-22T10:00:00Z", name="Acme Inc"))
    run(worker)
    kept = cached_id(redis, "101")
    deliver(event("merged", external_id="103", at="2026-11-22T10:01:00Z", merged_ids=["101", "102"]))
    run(worker)
    assert (cached_id(redis, "101"), cached_id(redis, "102"), cached_id(redis, "103")) == (None, None, kept)
    requests_seen(sandbox)
    deliver(event("updated", external_id="103", at="2026-11-22T10:02:00Z", description="Rockets"))
    run(worker)
    assert requests_seen(sandbox) == 1  # by the moved id, no lookup
    assert [(c["id"], c["description"]) for c in customers(platform, "103")] == [(kept, "Rockets")]

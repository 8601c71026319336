"""End to end: a signed POST, a real RQ worker, and the sandbox's state read back over GraphQL."""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq.job import JobStatus
from rq.registry import FailedJobRegistry

from jobs.worker import SyncWorker
from tests.support import PURCHASE_QUERY, Deliver, Platform, customers, event, job_of, run, seed_purchases


def test_created_event_creates_the_customer(
    deliver: Deliver, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    response = deliver(
        event(
            "created",
            name="Mars Missions",
            description="Mars Missions Corp",
            labels=["Space", "VIP", "space"],
        )
    )
    run(worker)
    assert job_of(response, redis).get_status() == JobStatus.FINISHED
    (customer,) = customers(platform)
    assert customer["name"] == "Mars Missions"
    assert customer["description"] == "Mars Missions Corp"
    assert customer["externalId"] == "crm-1"
    assert customer["labels"] == ["space", "vip"]


def test_updated_event_changes_only_the_fields_it_carries(
    deliver: Deliver, worker: SyncWorker, platform: Platform
) -> None:
    deliver(event("created", name="Mars Missions", description="Corp", labels=["a"]))
    deliver(event("updated", at="2026-11-22T10:05:00Z", labels=["B", "c"]))
    run(worker)
    (customer,) = customers(platform)
    assert (customer["name"], customer["description"], customer["labels"]) == (
        "Mars Missions",
        "Corp",
        ["b", "c"],
    )


def test_updated_event_for_an_unknown_customer_with_a_name_creates_it(
    deliver: Deliver, worker: SyncWorker, platform: Platform
) -> None:
    deliver(event("updated", name="Eastern Space Flight"))
    run(worker)
    (customer,) = customers(platform)
    assert customer["name"] == "Eastern Space Flight"
    assert customer["description"] == ""


def test_deleted_event_deletes_the_customer(deliver: Deliver, worker: SyncWorker, platform: Platform) -> None:
    deliver(event("created", name="Mars Missions"))
    run(worker)
    assert customers(platform)
    deliver(event("deleted", at="2026-11-22T11:00:00Z"))
    run(worker)
    assert customers(platform) == []


def test_deleting_an_absent_customer_succeeds(deliver: Deliver, worker: SyncWorker, redis: Redis) -> None:
    response = deliver(event("deleted", external_id="never-synced"))
    run(worker)
    job = job_of(response, redis)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == {"outcome": "applied"}


def test_erasure_anonymises_every_purchase(
    deliver: Deliver, worker: SyncWorker, platform: Platform, sandbox: Any, redis: Redis
) -> None:
    seed_purchases(sandbox.base_url, 356018965, 356018966)
    response = deliver(event("erasure_requested", purchase_ids=[356018965, 356018966]))
    run(worker)
    assert job_of(response, redis).get_status() == JobStatus.FINISHED
    for purchase_id in (356018965, 356018966):
        purchase = platform(PURCHASE_QUERY, {"id": purchase_id}, api="personal-data")["data"]["purchase"]
        contact = purchase["billingContact"]
        assert (contact["firstName"], contact["lastName"], contact["city"], contact["addressLine1"]) == (
            "XXX",
        ) * 4
        assert contact["email"] != "han@example.com"
        assert contact["addressLine2"] is None
        assert contact["country"] == {"id": "MT"}


def test_erasure_of_an_unknown_purchase_fails_permanently_with_the_api_message(
    deliver: Deliver, worker: SyncWorker, redis: Redis
) -> None:
    response = deliver(event("erasure_requested", purchase_ids=[999]))
    run(worker)
    job = job_of(response, redis)
    assert job.get_status() == JobStatus.FAILED
    assert job.meta["failure_class"] == "graphql_error"
    assert len(job.meta["attempts"]) == 1  # permanent: no retries spent
    assert "999" in job.meta["attempts"][0]["message"]
    assert job.id in FailedJobRegistry("crmsync", connection=redis).get_job_ids()


def test_a_taken_name_fails_the_job_naming_the_holder_and_no_personal_data(
    deliver: Deliver, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    deliver(event("created", external_id="crm-1", name="Mars Missions"))
    response = deliver(event("created", external_id="crm-2", name="Mars Missions"))
    run(worker)
    job = job_of(response, redis)
    assert job.get_status() == JobStatus.FAILED
    assert job.meta["failure_class"] == "name_conflict"
    message = job.meta["attempts"][-1]["message"]
    assert message == "createCustomer failed: the name is taken by the customer with external id crm-1"
    assert "Mars Missions" not in message
    result = job.latest_result()
    assert result is not None and "Mars Missions" not in (result.exc_string or "")
    assert customers(platform, "crm-2") == []


def test_wrong_api_token_is_a_permanent_failure(deliver: Deliver, settings: Any, redis: Redis) -> None:
    from dataclasses import replace

    from crmsync.core.settings import ApiSettings
    from jobs.worker import build_worker

    assert settings.customers_api is not None
    bad = replace(settings, customers_api=ApiSettings(settings.customers_api.url, "wrong-token"))
    response = deliver(event("created", name="Mars Missions"))
    build_worker(bad, redis).work(burst=True, with_scheduler=False)
    job = job_of(response, redis)
    assert job.get_status() == JobStatus.FAILED
    assert job.meta["failure_class"] == "api_rejected"
    assert "HTTP 401" in job.meta["attempts"][0]["message"]

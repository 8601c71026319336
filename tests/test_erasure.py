"""GDPR erasure end to end: every purchase, each step once, audited, and no personal data left in Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
from redis import Redis
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import CanceledJobRegistry, FailedJobRegistry
from rq.serializers import JSONSerializer

from crmsync.core.queue import EventJob
from crmsync.core.settings import Settings
from crmsync.erasure.audit import list_erasures
from jobs.worker import SyncWorker, build_worker
from sandbox import RunningSandbox
from tests.support import (
    CUSTOMERS_TOKEN,
    Deliver,
    Platform,
    customers,
    event,
    job_of,
    personal_values_found,
    run,
    seed_purchases,
)

P1, P2, P3 = 356018965, 356018966, 356018967
CREATED: dict[str, Any] = {
    "name": "Zaphod Beeblebrox",
    "description": "Two heads, Heart of Gold",
    "labels": ["Galaxy-President"],
}
FAILED_UPDATE: dict[str, Any] = {"description": "Moved to Magrathea, flat 42"}
QUEUED_UPDATE: dict[str, Any] = {"labels": ["Pan-Galactic-Gargle"], "name": "Zaphod B. Beeblebrox"}
PERSONAL = [
    "Zaphod Beeblebrox", "Two heads, Heart of Gold", "Galaxy-President", "Moved to Magrathea, flat 42",
    "Pan-Galactic-Gargle", "Zaphod B. Beeblebrox",
]  # fmt: skip


WorkerFactory = Callable[[str], SyncWorker]


@pytest.fixture
def worker_with_action(settings: Settings, redis: Redis) -> Iterator[WorkerFactory]:
    """Build a worker whose erasures apply ERASURE_CUSTOMER_ACTION=`action`."""
    built: list[SyncWorker] = []

    def build(action: str) -> SyncWorker:
        built.append(build_worker(replace(settings, erasure_customer_action=action), redis))
        return built[-1]

    yield build
    for worker in built:
        worker.runtime.close()


def admin(sandbox: RunningSandbox, method: str, path: str, body: Any = None) -> dict[str, Any]:
    response = requests.request(method, f"{sandbox.base_url}/admin{path}", json=body, timeout=5,
                                headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"})  # fmt: skip
    response.raise_for_status()
    return dict(response.json())


def payload_of(job: Job) -> dict[str, Any]:
    job.refresh()
    return dict(job.args[0])


def steps(redis: Redis, erasure_webhook_id: str) -> list[tuple[str, ...]]:
    (record,) = [r for r in list_erasures(redis, 30) if r.webhook_id == erasure_webhook_id]
    return [
        tuple(step[name] for name in ("step", "purchase_id", "outcome") if name in step)
        for step in record.steps
    ]


def test_erasure_scrubs_a_queued_and_a_failed_update_and_a_replay_cannot_restore_them(
    deliver: Deliver, worker: SyncWorker, platform: Platform, sandbox: RunningSandbox, redis: Redis
) -> None:
    seed_purchases(sandbox.base_url, P1)
    deliver(event("created", at="2026-11-22T10:00:00Z", **CREATED))
    run(worker)
    admin(sandbox, "PUT", "/faults", {"unavailable_rate": 1})
    failed = job_of(deliver(event("updated", at="2026-11-22T10:01:00Z", **FAILED_UPDATE)), redis)
    run(worker)
    assert failed.get_status() == JobStatus.FAILED
    admin(sandbox, "PUT", "/faults", {})
    queued = job_of(deliver(event("updated", at="2026-11-22T10:02:00Z", **QUEUED_UPDATE)), redis)
    assert {value for _, value in personal_values_found(redis, PERSONAL)} == {v.lower() for v in PERSONAL}

    response = deliver(
        event("erasure_requested", at="2026-11-22T10:03:00Z", purchase_ids=[P1]), webhook_id="msg_erase_0"
    )

    # Scrubbed at acceptance, before any worker ran: out of the queue and the failed registry.
    for job in (failed, queued):
        assert job.get_status() == JobStatus.CANCELED
        assert payload_of(job)["data"] == {"external_id": "crm-1"}
        assert job.meta["superseded_by_erasure"] == "msg_erase_0"
    assert failed.id not in FailedJobRegistry("crmsync", connection=redis).get_job_ids()
    assert queued.id not in Queue("crmsync", connection=redis, serializer=JSONSerializer).get_job_ids()
    assert {failed.id, queued.id} <= set(CanceledJobRegistry("crmsync", connection=redis).get_job_ids())
    updates_before = admin(sandbox, "GET", "/stats")["mutations"]["updateCustomer"]

    run(worker)
    assert job_of(response, redis).get_status() == JobStatus.FINISHED
    # A replay of the scrubbed failed update does nothing: no data left, and marked superseded.
    Queue("crmsync", connection=redis, serializer=JSONSerializer).enqueue_job(EventJob.fetch(
        failed.id, connection=redis, serializer=JSONSerializer))  # fmt: skip
    run(worker)

    assert EventJob.fetch(failed.id, connection=redis, serializer=JSONSerializer).return_value() == {
        "outcome": "superseded"
    }
    assert admin(sandbox, "GET", "/stats")["mutations"]["updateCustomer"] == updates_before
    (customer,) = customers(platform)
    assert customer["description"] == CREATED["description"]  # ERASURE_CUSTOMER_ACTION=none
    assert personal_values_found(redis, PERSONAL) == []


def test_erasure_retries_only_the_failing_purchase_and_audits_every_step(
    deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, redis: Redis
) -> None:
    seed_purchases(sandbox.base_url, P1, P2, P3)
    admin(sandbox, "PUT", f"/faults/purchases/{P2}", {"fail_next": 2})

    response = deliver(event("erasure_requested", purchase_ids=[P1, P2, P3]), webhook_id="msg_erase_1")
    run(worker)

    assert job_of(response, redis).get_status() == JobStatus.FINISHED
    stats = admin(sandbox, "GET", "/stats")
    assert stats["deletePersonalCustomerData"] == {str(P1): 1, str(P2): 1, str(P3): 1}
    assert stats["faults"]["unavailable"] == 2
    assert steps(redis, "msg_erase_1") == [
        ("received",),
        ("purchase", str(P1), "erased"),
        ("purchase", str(P2), "failed"),
        ("purchase", str(P2), "failed"),
        ("purchase", str(P2), "erased"),
        ("purchase", str(P3), "erased"),
        ("completed",),
    ]
    (record,) = list_erasures(redis, 30)
    assert (record.status, record.purchase_ids, record.completed_at is not None) == (
        "completed",
        [P1, P2, P3],
        True,
    )


def test_an_unknown_purchase_is_reported_as_not_found_after_the_others_are_erased(
    deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, redis: Redis
) -> None:
    seed_purchases(sandbox.base_url, P1, P3)

    response = deliver(event("erasure_requested", purchase_ids=[P1, 999, P3]), webhook_id="msg_erase_2")
    run(worker)

    job = job_of(response, redis)
    assert job.get_status() == JobStatus.FAILED
    assert len(job.meta["attempts"]) == 1  # permanent: retrying an unknown purchase cannot help
    assert "Purchase 999 not found" in job.meta["attempts"][0]["message"]
    assert admin(sandbox, "GET", "/stats")["deletePersonalCustomerData"] == {str(P1): 1, "999": 1, str(P3): 1}
    (record,) = list_erasures(redis, 30)
    assert record.status == "failed"
    assert record.purchases == {P1: "erased", 999: "not_found", P3: "erased"}
    assert "Purchase 999 not found" in record.failure


def test_an_erasure_running_out_of_retries_is_audited_as_failed(
    deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, redis: Redis
) -> None:
    seed_purchases(sandbox.base_url, P1)
    admin(sandbox, "PUT", f"/faults/purchases/{P1}", {"fail_next": 3})

    deliver(event("erasure_requested", purchase_ids=[P1]))
    run(worker)

    (record,) = list_erasures(redis, 30)
    assert record.status == "failed"
    assert record.failure.startswith("api_unavailable:")
    assert record.purchases == {P1: "failed"}


def test_an_event_at_or_before_an_erasure_is_stale_and_leaves_no_data_behind(
    deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, redis: Redis
) -> None:
    seed_purchases(sandbox.base_url, P1)
    deliver(event("erasure_requested", at="2026-11-22T10:03:00Z", purchase_ids=[P1]))
    run(worker)

    late = deliver(event("updated", at="2026-11-22T10:02:00Z", **FAILED_UPDATE))
    run(worker)

    job = job_of(late, redis)
    assert job.return_value() == {"outcome": "stale"}
    assert payload_of(job)["data"] == {"external_id": "crm-1"}
    assert admin(sandbox, "GET", "/stats")["mutations"]["updateCustomer"] == 0
    assert personal_values_found(redis, [FAILED_UPDATE["description"]]) == []


def test_an_event_after_the_erasure_is_not_scrubbed(deliver: Deliver, redis: Redis) -> None:
    later = job_of(deliver(event("updated", at="2026-11-22T10:05:00Z", **FAILED_UPDATE)), redis)

    deliver(event("erasure_requested", at="2026-11-22T10:03:00Z", purchase_ids=[P1]))

    assert later.get_status() == JobStatus.QUEUED
    assert payload_of(later)["data"]["description"] == FAILED_UPDATE["description"]


def test_anonymize_action_clears_the_customer_description(
    deliver: Deliver,
    worker_with_action: WorkerFactory,
    platform: Platform,
    sandbox: RunningSandbox,
    redis: Redis,
) -> None:
    seed_purchases(sandbox.base_url, P1)
    worker = worker_with_action("anonymize")
    deliver(event("created", at="2026-11-22T10:00:00Z", **CREATED))
    run(worker)
    deliver(
        event("erasure_requested", at="2026-11-22T10:03:00Z", purchase_ids=[P1]), webhook_id="msg_erase_3"
    )
    run(worker)

    (customer,) = customers(platform)
    assert (customer["name"], customer["description"]) == (CREATED["name"], "")
    assert ("customer", "anonymized") in [
        (s["step"], s.get("outcome")) for s in list_erasures(redis, 30)[0].steps
    ]


def test_delete_action_deletes_the_customer_and_a_late_update_cannot_recreate_it(
    deliver: Deliver,
    worker_with_action: WorkerFactory,
    platform: Platform,
    sandbox: RunningSandbox,
    redis: Redis,
) -> None:
    seed_purchases(sandbox.base_url, P1)
    worker = worker_with_action("delete")
    deliver(event("created", at="2026-11-22T10:00:00Z", **CREATED))
    run(worker)
    deliver(event("erasure_requested", at="2026-11-22T10:03:00Z", purchase_ids=[P1]))
    run(worker)
    assert customers(platform) == []

    deliver(event("updated", at="2026-11-22T10:02:00Z", name="Zaphod Again"))
    run(worker)

    assert customers(platform) == []

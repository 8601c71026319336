"""`/metrics`: webhook counters from the web, job figures from the workers (via Redis), queue gauges,
erasure counts."""

from __future__ import annotations

from dataclasses import replace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from crmsync.core.keys import ERASURE_AUDIT_KEY
from crmsync.core.settings import Settings
from crmsync.web import create_app
from crmsync.web.metrics import ERASURE_SCAN_LIMIT
from jobs.worker import SyncWorker, build_worker
from sandbox import RunningSandbox
from tests.support import (
    PERSONAL,
    STANDARD_ENV,
    Deliver,
    event,
    fail,
    make_erasures_of_every_kind,
    served,
    work,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str, **headers: str) -> Samples:
    response = requests.get(f"{base_url}/metrics", headers=headers, timeout=5)
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def base_url(web: str) -> str:
    return web.removesuffix("/webhooks/crm")


def test_webhooks_are_counted_by_type_outcome_and_rejection_reason(base_url: str, deliver: Deliver) -> None:
    before = scrape(base_url)
    deliver(event("created", name="A"), webhook_id="msg_1")
    deliver(event("created", name="A"), webhook_id="msg_1")
    deliver(event("created", name="A"), secret=b"not-the-secret-0123456789abcdef0")
    after = scrape(base_url)
    name = "crmsync_webhooks_received_total"
    for labels in (
        {"type": "customer.created", "outcome": "queued", "reason": ""},
        {"type": "customer.created", "outcome": "duplicate", "reason": ""},
        {"type": "unknown", "outcome": "rejected", "reason": "invalid_signature"},
    ):
        assert value(after, name, **labels) - value(before, name, **labels) == 1, labels


def test_each_registry_source_is_exported_as_served_or_not(base_url: str) -> None:
    samples = scrape(base_url)
    assert value(samples, "crmsync_source_enabled", source="standard") == 1
    for name in ("hubspot", "salesforce", "pipedrive"):  # the session's app serves the standard source only
        assert ("crmsync_source_enabled", frozenset({("source", name)})) in samples
        assert value(samples, "crmsync_source_enabled", source=name) == 0


def test_job_outcomes_and_durations_recorded_by_workers_are_exported(
    base_url: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    fail(deliver, settings, redis, event("deleted", "crm-9"))
    deliver(event("created", name="Mars Missions", at="2026-11-22T11:00:00Z"))
    deliver(event("updated", name="Older", at="2026-11-22T10:00:00Z"))
    work(settings, redis)
    samples = scrape(base_url)
    assert value(samples, "crmsync_jobs_total", type="customer.deleted", outcome="failed") == 1
    assert value(samples, "crmsync_jobs_total", type="customer.created", outcome="succeeded") == 1
    assert value(samples, "crmsync_jobs_total", type="customer.updated", outcome="stale") == 1
    duration = "crmsync_job_duration_seconds"
    assert value(samples, f"{duration}_count", type="customer.created") == 1
    assert value(samples, f"{duration}_bucket", type="customer.created", le="+Inf") == 1
    assert value(samples, f"{duration}_sum", type="customer.created") > 0


def test_freshness_counts_every_event_a_write_applied_from_its_enqueue(
    base_url: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    deliver(event("created", name="Mars Missions", at="2026-11-22T10:00:00Z"))
    deliver(event("updated", description="Red planet", at="2026-11-22T10:01:00Z"))  # coalesced with it
    deliver(event("updated", name="Older", at="2026-11-22T09:00:00Z"))  # stale: applies nothing
    work(settings, redis)
    samples = scrape(base_url)
    freshness = "crmsync_event_freshness_seconds"
    assert value(samples, f"{freshness}_count") == 2
    assert value(samples, f"{freshness}_bucket", le="+Inf") == 2
    assert value(samples, f"{freshness}_bucket", le="3600.0") == 2  # all seconds old at most
    assert value(samples, f"{freshness}_sum") > 0


def test_a_retried_attempt_is_counted_as_retried(
    base_url: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    deliver(event("updated", labels=["a"]))  # no such customer yet and no name: waits for its create
    work(replace(settings, retry_schedule=(60,)), redis)
    samples = scrape(base_url)
    assert value(samples, "crmsync_jobs_total", type="customer.updated", outcome="retried") == 1
    assert value(samples, "crmsync_scheduled_retries") == 1


def test_queue_gauges_show_depth_failures_workers_and_the_oldest_jobs_age(
    base_url: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    fail(deliver, settings, redis, event("deleted", "crm-9"))
    deliver(event("created", name="A"))
    worker = build_worker(settings, redis)
    worker.register_birth()
    try:
        samples = scrape(base_url)
    finally:
        worker.register_death()
    assert value(samples, "crmsync_queue_depth") == 1
    assert value(samples, "crmsync_failed_jobs") == 1
    assert value(samples, "crmsync_workers_alive") == 1
    assert value(samples, "crmsync_oldest_queued_job_age_seconds") > 0
    assert value(scrape(base_url), "crmsync_workers_alive") == 0


def test_replays_and_discards_are_counted(
    base_url: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    from crmsync.operations import FailedJobs

    first, second = fail(deliver, settings, redis, event("deleted", "crm-1"), event("deleted", "crm-2"))
    FailedJobs(redis, settings).replay([first], actor="ops")
    FailedJobs(redis, settings).discard([second], "test", actor="ops")
    samples = scrape(base_url)
    assert value(samples, "crmsync_operator_actions_total", type="customer.deleted", action="replayed") == 1
    assert value(samples, "crmsync_operator_actions_total", type="customer.deleted", action="discarded") == 1


def test_metrics_carry_no_customer_data(
    base_url: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    fail(deliver, settings, redis, event("created", name="Mars Missions", description="Corp", labels=["VIP"]))
    response = requests.get(f"{base_url}/metrics", timeout=5)
    # The answer first: an error page would carry no customer data either.
    assert response.status_code == 200
    body = response.text
    assert 'crmsync_jobs_total{outcome="failed",type="customer.created"} 1.0' in body
    assert "Mars Missions" not in body and "Corp" not in body and "VIP" not in body and "crm-1" not in body


def test_a_metrics_token_when_configured_is_required(settings: Settings, redis: Redis) -> None:
    with served(
        create_app(replace(settings, metrics_token="scrape-token-0123"), environ=STANDARD_ENV)
    ) as url:
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 401
        assert (
            requests.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code
            == 401
        )
        assert scrape(url, Authorization="Bearer scrape-token-0123")


def test_without_redis_metrics_still_answer_and_say_so(settings: Settings) -> None:
    with served(
        create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"), environ=STANDARD_ENV)
    ) as url:
        samples = scrape(url)
    assert value(samples, "crmsync_redis_up") == 0


def test_the_queue_gauges_read_the_configured_queue(redis: Redis, settings: Settings) -> None:
    from crmsync.operations.activity import read_snapshot

    Queue("other", connection=redis, serializer=JSONSerializer).enqueue("jobs.tasks.apply_event", {})
    assert read_snapshot(redis, settings.queue_name).queued == 0
    assert read_snapshot(redis, "other").queued == 1


def test_erasures_are_counted_by_status_with_the_overdue_ones(
    base_url: str, deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, redis: Redis
) -> None:
    make_erasures_of_every_kind(deliver, worker, sandbox, redis)

    response = requests.get(f"{base_url}/metrics", timeout=5)
    samples = scrape(base_url)

    expected = {"pending": 2, "completed": 1, "failed": 1, "overdue": 1}  # the overdue one is also pending
    assert {status: value(samples, "crmsync_erasures", status=status) for status in expected} == expected
    assert value(samples, "crmsync_erasure_audit_entries") == redis.xlen(ERASURE_AUDIT_KEY)
    for identifier in ("crm-1", "crm-2", "msg_failed", *PERSONAL):
        assert identifier not in response.text, identifier


def test_erasures_are_not_counted_when_the_audit_stream_is_past_the_scan_limit(
    base_url: str, redis: Redis
) -> None:
    with redis.pipeline(transaction=False) as pipe:
        for number in range(ERASURE_SCAN_LIMIT + 1):
            pipe.xadd(
                ERASURE_AUDIT_KEY, {"erasure": f"msg_{number}", "external_id": "crm-1", "step": "received"}
            )
        pipe.execute()

    samples = scrape(base_url)

    assert not [name for name, _ in samples if name == "crmsync_erasures"]
    assert value(samples, "crmsync_erasure_audit_entries") == ERASURE_SCAN_LIMIT + 1
    assert value(samples, "crmsync_redis_up") == 1

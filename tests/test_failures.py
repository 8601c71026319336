"""Failed jobs for operators: listed without personal data, replayed with a fresh budget, discarded."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests
from click.testing import CliRunner, Result
from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from crmsync.cli import main
from crmsync.core.queue import EventJob
from crmsync.core.settings import Settings
from crmsync.operations import (
    ActionResult,
    FailedJobs,
    FailureFilter,
    MissingReason,
    parse_moment,
)
from sandbox.server import RunningSandbox
from tests.support import CUSTOMERS_TOKEN, Deliver, event, fail, with_wrong_token, work

NAME = "Mars Missions"


def fetch(redis: Redis, job_id: str) -> Job:
    return EventJob.fetch(job_id, connection=redis, serializer=JSONSerializer)


@pytest.fixture
def failed(redis: Redis, settings: Settings) -> FailedJobs:
    return FailedJobs(redis, settings)


def test_a_failed_job_shows_identifiers_and_the_failure_but_no_personal_data(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    (job_id,) = fail(
        deliver, settings, redis, event("created", name=NAME, description="Corp", labels=["vip"])
    )
    page = failed.find()
    (job,) = page.items
    assert (job.job_id, job.type, job.external_id, job.failure_class) == (
        job_id,
        "customer.created",
        "crm-1",
        "api_rejected",
    )
    assert job.attempts == 1 and job.replays == 0
    assert "HTTP 401" in job.message
    assert job.first_failed_at is not None and job.last_failed_at is not None
    assert NAME not in str(job.to_json()) and "Corp" not in str(job.to_json())


def test_failed_jobs_are_filtered_by_type_class_external_id_and_time(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    fail(deliver, settings, redis, event("created", "crm-1", name="A"), event("deleted", "crm-2"))
    deliver(event("erasure_requested", "crm-3", purchase_ids=[999]))
    work(settings, redis)  # unknown purchase: a GraphQL error
    assert failed.find().total == 3
    assert [job.external_id for job in failed.find(FailureFilter(type="customer.deleted")).items] == ["crm-2"]
    assert [job.external_id for job in failed.find(FailureFilter(failure_class="graphql_error")).items] == [
        "crm-3"
    ]
    assert [job.type for job in failed.find(FailureFilter(external_id="crm-1")).items] == ["customer.created"]
    now = datetime.now(UTC)
    assert failed.find(FailureFilter(since=now - timedelta(minutes=5))).total == 3
    assert failed.find(FailureFilter(since=now + timedelta(minutes=5))).total == 0
    assert failed.find(FailureFilter(until=now - timedelta(minutes=5))).total == 0


def test_failed_jobs_are_paged_newest_first(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    fail(deliver, settings, redis, *(event("deleted", f"crm-{n}") for n in range(5)))
    first, last = failed.find(page=1, per_page=2), failed.find(page=3, per_page=2)
    assert (first.total, first.pages, len(first.items), len(last.items)) == (5, 3, 2, 1)
    everything = [job.job_id for page in (1, 2, 3) for job in failed.find(page=page, per_page=2).items]
    assert sorted(everything) == sorted(failed.matching_ids(FailureFilter()))
    stamps = [job.last_failed_at for job in failed.find().items]
    assert stamps == sorted(stamps, reverse=True)  # type: ignore[type-var]


def test_a_replayed_job_gets_a_fresh_retry_budget_and_succeeds(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    assert fetch(redis, job_id).retries_left == 0  # permanent failure: budget spent
    assert failed.replay([job_id], actor="ops") == [ActionResult(job_id, "replayed")]
    job = fetch(redis, job_id)
    assert job.get_status() == JobStatus.QUEUED
    assert job.retries_left == len(settings.retry_schedule)
    assert job.meta["replays"] == 1
    assert job.meta["earlier_attempts"][-1]["class"] == "replay"
    work(settings, redis)
    job = fetch(redis, job_id)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == {"outcome": "applied"}
    assert failed.find().total == 0
    (replayed,) = failed.recent_replays()
    assert (replayed.job_id, replayed.status, replayed.outcome) == (job_id, "finished", "applied")


def test_a_replayed_event_superseded_by_a_newer_one_ends_stale(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name="Old Name"))
    deliver(event("updated", at="2026-11-22T11:00:00Z", name="New Name", description="d", labels=[]))
    work(settings, redis)
    failed.replay([job_id], actor="ops")
    work(settings, redis)
    job = fetch(redis, job_id)
    assert job.return_value() == {"outcome": "stale"}
    assert [(r.job_id, r.outcome) for r in failed.recent_replays()] == [(job_id, "stale")]


def test_each_replay_is_a_new_attempt(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    for _ in range(2):
        assert failed.replay([job_id], actor="ops")[0].status == "replayed"
        work(with_wrong_token(settings), redis)
    (job,) = failed.find().items
    assert (job.attempts, job.replays) == (3, 2)
    classes = [a["class"] for a in fetch(redis, job_id).meta["earlier_attempts"]]
    assert classes == ["api_rejected", "replay", "api_rejected", "replay"]


def test_a_replayed_job_that_fails_again_retries_from_the_first_delay(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox, failed: FailedJobs
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    failed.replay([job_id], actor="ops")
    requests.put(
        f"{sandbox.base_url}/admin/faults",
        json={"unavailable_rate": 1.0},
        headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"},
        timeout=5,
    ).raise_for_status()
    work(replace(settings, retry_schedule=(100, 1000)), redis)
    job = fetch(redis, job_id)
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retry_intervals is not None and 80 <= job.retry_intervals[0] <= 120


def test_a_job_no_longer_failed_is_not_replayed_twice(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    assert [r.status for r in failed.replay([job_id, job_id], actor="ops")] == ["replayed", "not_failed"]
    assert redis.llen("rq:queue:crmsync") == 1


def test_replay_all_matching_replays_only_what_the_filter_matches(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    fail(deliver, settings, redis, event("created", "crm-1", name="A"), event("deleted", "crm-2"))
    results = failed.replay_matching(FailureFilter(type="customer.deleted"), actor="ops")
    assert [r.status for r in results] == ["replayed"]
    assert [job.type for job in failed.find().items] == ["customer.created"]


def test_a_discarded_job_is_removed_and_the_reason_recorded(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    assert [r.status for r in failed.discard([job_id], "sent twice by the CRM", actor="ops")] == ["discarded"]
    assert failed.find().total == 0
    assert not redis.exists(Job.key_for(job_id))
    (record,) = failed.recent_discards()
    assert {k: record[k] for k in ("job_id", "type", "external_id", "failure_class", "reason", "by")} == {
        "job_id": job_id,
        "type": "customer.created",
        "external_id": "crm-1",
        "failure_class": "api_rejected",
        "reason": "sent twice by the CRM",
        "by": "ops",
    }
    assert NAME not in str(record)
    assert failed.replay([job_id], actor="ops")[0].status == "not_failed"


def test_a_discard_needs_a_reason(
    deliver: Deliver, settings: Settings, redis: Redis, failed: FailedJobs
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    with pytest.raises(MissingReason):
        failed.discard([job_id], "  ", actor="ops")
    assert failed.find().total == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30m", datetime(2026, 11, 22, 11, 30, tzinfo=UTC)),
        ("2h", datetime(2026, 11, 22, 10, 0, tzinfo=UTC)),
        ("1d", datetime(2026, 11, 21, 12, 0, tzinfo=UTC)),
        ("2026-11-20T08:00:00Z", datetime(2026, 11, 20, 8, 0, tzinfo=UTC)),
        ("2026-11-20T08:00:00", datetime(2026, 11, 20, 8, 0, tzinfo=UTC)),
        ("2026-11-20T09:00:00+01:00", datetime(2026, 11, 20, 8, 0, tzinfo=UTC)),
    ],
)
def test_moments_are_absolute_or_a_time_ago(value: str, expected: datetime) -> None:
    assert parse_moment(value, now=datetime(2026, 11, 22, 12, 0, tzinfo=UTC)) == expected


def test_a_malformed_moment_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_moment("yesterday")


def crmsync(redis_url: str, *args: str) -> Result:
    """Run a `crmsync` command as an operator would, with only REDIS_URL configured."""
    return CliRunner().invoke(main, list(args), env={"REDIS_URL": redis_url}, catch_exceptions=False)


def test_the_failed_command_lists_failed_jobs_with_the_same_filters(
    deliver: Deliver, settings: Settings, redis: Redis, redis_url: str
) -> None:
    job_id, _ = fail(
        deliver, settings, redis, event("created", "crm-1", name=NAME), event("deleted", "crm-2")
    )
    result = crmsync(redis_url, "failed", "--type", "customer.created", "--since", "1h")
    assert result.exit_code == 0
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"{job_id}\tcustomer.created\tcrm-1\tapi_rejected\tattempts=1\treplays=0")
    assert NAME not in result.output
    as_json = crmsync(redis_url, "failed", "--json", "--external-id", "crm-2")
    assert [json.loads(row)["type"] for row in as_json.stdout.splitlines()] == ["customer.deleted"]


def test_the_replay_command_replays_by_id_or_all_matching(
    deliver: Deliver, settings: Settings, redis: Redis, redis_url: str
) -> None:
    job_id, _, _ = fail(deliver, settings, redis, *(event("deleted", f"crm-{n}") for n in range(3)))
    assert crmsync(redis_url, "replay", job_id).stdout == f"{job_id}\treplayed\n"
    result = crmsync(redis_url, "replay", "--all-matching", "--type", "customer.deleted")
    assert [line.split("\t")[1] for line in result.stdout.splitlines()] == ["replayed", "replayed"]
    assert redis.llen("rq:queue:crmsync") == 3
    work(settings, redis)
    assert FailedJobs(redis, settings).find().total == 0


def test_the_replay_command_wants_ids_or_all_matching(redis: Redis, redis_url: str) -> None:
    assert crmsync(redis_url, "replay").exit_code == 2


def test_the_discard_command_records_the_reason(
    deliver: Deliver, settings: Settings, redis: Redis, redis_url: str
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    assert crmsync(redis_url, "discard", job_id).exit_code == 2  # --reason is required
    assert (
        crmsync(redis_url, "discard", job_id, "--reason", "duplicate in CRM").stdout
        == f"{job_id}\tdiscarded\n"
    )
    assert FailedJobs(redis, settings).recent_discards()[0]["reason"] == "duplicate in CRM"

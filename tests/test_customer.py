"""`crmsync customer EXTERNAL_ID` and the dashboard's customer page: one customer's ordering ledger and
jobs — versions, webhook ids, statuses and outcomes — and never a name, description or label."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
import requests
from redis import Redis

from crmsync.core.events import Event
from crmsync.core.settings import Settings
from crmsync.operations.customer import Version, read_customer
from sandbox.server import RunningSandbox
from tests.support import (
    AUTH,
    DESCRIPTION,
    LABEL,
    NAME,
    P1,
    Deliver,
    event,
    fail,
    seed_purchases,
    set_faults,
    work,
)

VALUES = (NAME, DESCRIPTION, LABEL, LABEL.lower())


def crmsync_customer(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "crmsync", "customer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def history(deliver: Deliver, external_id: str) -> None:
    """A create, a newer update of the labels, and a late update older than both (stale)."""
    for webhook_id, item in (
        (
            "msg_create",
            event("created", external_id, "2026-11-22T10:00:00Z", name=NAME, description=DESCRIPTION),
        ),
        ("msg_labels", event("updated", external_id, "2026-11-22T11:00:00Z", labels=[LABEL])),
        ("msg_late", event("updated", external_id, "2026-11-22T09:00:00Z", description=DESCRIPTION)),
    ):
        assert deliver(item, webhook_id=webhook_id).status_code == 202


def test_the_ledger_shows_which_webhook_wrote_each_field_and_the_jobs_their_outcomes(
    deliver: Deliver, settings: Settings, redis: Redis, redis_url: str
) -> None:
    history(deliver, "crm-7")
    work(settings, redis)

    result = crmsync_customer(redis_url, "crm-7", "--json")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["fields"] == {
        "description": {"timestamp": "2026-11-22T10:00:00.000000Z", "webhook_id": "msg_create"},
        "labels": {"timestamp": "2026-11-22T11:00:00.000000Z", "webhook_id": "msg_labels"},
        "name": {"timestamp": "2026-11-22T10:00:00.000000Z", "webhook_id": "msg_create"},
    }
    assert view["deleted"] is None and view["erased"] is None and view["hold_seconds"] is None
    jobs = [(job["webhook_id"], job["type"], job["status"], job["outcome"]) for job in view["jobs"]]
    assert jobs == [  # newest event first
        # Queued with the create, the labels rode in its write (jobs/coalescing.py).
        ("msg_labels", "customer.updated", "finished", "coalesced"),
        ("msg_create", "customer.created", "finished", "applied"),
        ("msg_late", "customer.updated", "finished", "stale"),
    ]
    text = crmsync_customer(redis_url, "crm-7")
    assert text.returncode == 0
    assert "labels       2026-11-22T11:00:00.000000Z  msg_labels" in text.stdout
    assert "finished  attempts=0 replays=0  stale" in text.stdout
    for output in (result.stdout, text.stdout):
        assert not [value for value in VALUES if value in output]


def test_failed_scheduled_held_and_erased_customers_show_as_such(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    # A permanent failure: in the failed registry, with its class and attempts.
    fail(deliver, settings, redis, event("created", "crm-failed", name=NAME))
    # An unanswered request (503): a retry scheduled later, and the customer held meanwhile.
    set_faults(sandbox, unavailable_rate=1.0)
    deliver(event("created", "crm-held", name=NAME), webhook_id="msg_held")
    work(replace(settings, retry_schedule=(600,), in_flight_hold_seconds=120), redis)
    set_faults(sandbox)
    # An erasure after a create: the mark in the ledger, the create's job scrubbed.
    seed_purchases(sandbox.base_url, P1)
    deliver(event("created", "crm-erased", name=NAME), webhook_id="msg_before")
    work(settings, redis)
    deliver(
        event("erasure_requested", "crm-erased", "2026-11-23T10:00:00Z", purchase_ids=[P1]),
        webhook_id="msg_erase",
    )
    work(settings, redis)

    (failed,) = read_customer(redis, settings.queue_name, "crm-failed").jobs
    assert (failed.status, failed.failure_class, failed.attempts, failed.outcome) == (
        "failed",
        "api_rejected",
        1,
        None,
    )

    held = read_customer(redis, settings.queue_name, "crm-held")
    (retrying,) = held.jobs
    assert (retrying.status, retrying.failure_class, retrying.attempts) == ("scheduled", "api_unavailable", 1)
    assert retrying.scheduled_for is not None
    assert held.hold_seconds is not None and 0 < held.hold_seconds <= 120
    assert held.fields == {}  # nothing applied yet

    erased = read_customer(redis, settings.queue_name, "crm-erased")
    assert erased.erased is not None and erased.erased.webhook_id == "msg_erase"
    before, erasure = sorted(erased.jobs, key=lambda job: job.webhook_id)
    assert (before.webhook_id, before.superseded_by_erasure) == ("msg_before", "msg_erase")
    assert (erasure.type, erasure.status, erasure.outcome) == (
        "customer.erasure_requested",
        "finished",
        "applied",
    )


def test_an_unknown_customer_is_one_line_and_exit_1(redis: Redis, redis_url: str) -> None:
    result = crmsync_customer(redis_url, "crm-nobody")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "crmsync: nothing is known about customer 'crm-nobody' (no ledger, no jobs)"
    ]


def test_a_salesforce_customer_is_found_by_either_form_of_its_id(
    deliver: Deliver, settings: Settings, redis: Redis, redis_url: str
) -> None:
    # The Salesforce source keys customers by the 18-character id; an operator copies the 15 from a report.
    update = event("updated", "001d000001XD5XKAA1", "2026-11-22T10:00:00Z", name=NAME)
    assert deliver(update, webhook_id="msg_sf").status_code == 202
    for given in ("001d000001XD5XK", "001d000001XD5XKAA1", "001D000001XD5XKAA1".lower()):
        result = crmsync_customer(redis_url, given, "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["external_id"] == "001d000001XD5XKAA1"


def test_the_dashboard_shows_the_same_view_escaped_and_without_values(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    hostile = "crm-<script>alert(1)</script>"
    history(deliver, hostile)
    work(settings, redis)

    api: dict[str, Any] = requests.get(
        f"{dashboard}/api/customer", params={"external_id": hostile}, auth=AUTH, timeout=10
    ).json()
    assert api["known"] is True and api["external_id"] == hostile
    assert api["fields"]["labels"]["webhook_id"] == "msg_labels"
    assert [job["outcome"] for job in api["jobs"]] == ["coalesced", "applied", "stale"]

    page = requests.get(f"{dashboard}/customer", params={"external_id": hostile}, auth=AUTH, timeout=10)
    assert page.status_code == 200
    assert "crm-&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
    assert "msg_labels" in page.text and "stale" in page.text
    assert not [value for value in VALUES if value in page.text + json.dumps(api)]
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")

    missing = requests.get(f"{dashboard}/api/customer", auth=AUTH, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "timestamp, shown",
    [
        ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00.000000Z"),
        ("2026-11-22T11:00:00.000001+01:00", "2026-11-22T10:00:00.000001Z"),
        ("1960-05-01T10:00:00.5Z", "1960-05-01T10:00:00.500000Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_a_ledger_version_reads_back_as_the_events_utc_time_and_webhook_id(
    timestamp: str, shown: str
) -> None:
    version = Event("msg_1|x", "customer.updated", timestamp, {"external_id": "crm-1"}).version
    assert Version.parse(version) == Version(shown, "msg_1|x")

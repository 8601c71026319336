"""Logs are JSON lines with identifiers and outcomes, and never a personal value, a signature or a
secret — on the success paths and on every failure path."""

from __future__ import annotations

import json
import logging
import pathlib
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests
from redis import Redis

from crmsync.core.logs import configure
from crmsync.core.settings import Settings
from crmsync.operations import FailedJobs
from sandbox.server import RunningSandbox
from tests.support import (
    DASHBOARD_PASSWORD,
    DASHBOARD_USER,
    SECRET,
    WEBHOOK_SECRET,
    Deliver,
    event,
    fail,
    seed_purchases,
    signed_request,
    work,
)

PERSONAL = {
    "name": "Ada Lovelace Analytical Engines",
    "duplicate_name": "Grace Hopper Compilers",
    "description": "Private notes about Ada",
    "label": "Confidential-Segment",
    "rejected_name": "Charles Babbage Difference",
    "contact_email": "han@example.com",  # seeded on the purchases an erasure anonymises
    "contact_name": "Solo",
}


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Puts the root logger's handlers and level back after a test that configured logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_no_personal_value_signature_or_secret_appears_in_any_log_line(
    root_logging: None,
    capfd: pytest.CaptureFixture[str],
    deliver: Deliver,
    web: str,
    dashboard: str,
    settings: Settings,
    redis: Redis,
    sandbox: RunningSandbox,
) -> None:
    configure("DEBUG")  # the service's own set-up (JSON lines on stdout), at its most talkative
    name, description, label = PERSONAL["name"], PERSONAL["description"], PERSONAL["label"]
    # Applied, duplicate, stale, retried (no customer yet), failed on payload errors and on a bad token.
    created = event("created", "crm-1", name=name, description=description, labels=[label])
    deliver(created, webhook_id="msg_created")
    deliver(created, webhook_id="msg_created")
    deliver(event("updated", "crm-1", at="2026-11-22T09:00:00Z", name=f"{name} old", description=description))
    deliver(event("created", "crm-2", name=name, description=description, labels=[label]))  # duplicate name
    deliver(event("updated", "crm-3", labels=[label]))  # waits for a create that never comes
    work(replace(settings, retry_schedule=(0,)), redis)
    (refused,) = fail(deliver, settings, redis, event("created", "crm-4", name=PERSONAL["duplicate_name"]))
    # An erasure of purchases that hold contact data, and one of an unknown purchase.
    seed_purchases(sandbox.base_url, 356018965)
    deliver(event("erasure_requested", "crm-5", purchase_ids=[356018965]))
    deliver(event("erasure_requested", "crm-6", purchase_ids=[999]))
    work(settings, redis)
    # Rejected deliveries: an invalid event carrying a name, and a bad signature.
    invalid = event("created", "crm-7", name=PERSONAL["rejected_name"], unexpected="x")
    assert deliver(invalid).status_code == 422
    headers, body = signed_request(SECRET, event("created", "crm-8", name=name), "msg_forged")
    headers["webhook-signature"] = "v1,Zm9yZ2VkIHNpZ25hdHVyZQ=="
    assert requests.post(web, data=body, headers=headers, timeout=5).status_code == 401
    # Operators replay and discard through the dashboard.
    auth = (DASHBOARD_USER, DASHBOARD_PASSWORD)
    token = requests.get(f"{dashboard}/api/csrf-token", auth=auth, timeout=5).json()["csrf_token"]
    requests.get(f"{dashboard}/failed", auth=auth, timeout=5).raise_for_status()
    replayed = requests.post(
        f"{dashboard}/api/replay", json={"job_ids": [refused]}, headers={"X-CSRF-Token": token}, auth=auth
    )
    assert replayed.json()["results"][0]["status"] == "replayed"
    work(settings, redis)
    failed_ids = [job.job_id for job in FailedJobs(redis, settings).find().items]
    requests.post(
        f"{dashboard}/api/discard",
        json={"job_ids": failed_ids, "reason": "cleanup"},
        headers={"X-CSRF-Token": token},
        auth=auth,
    ).raise_for_status()

    captured = capfd.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    events = {record.get("event") for record in records}
    # The capture saw the flows above (so the absence checks below mean something).
    assert {
        "webhook_received",
        "webhook_rejected",
        "job_done",
        "job_failed",
        "job_replayed",
        "job_discarded",
    } <= events
    assert {"crm-1", "crm-4", "crm-6"} <= {record.get("external_id") for record in records}
    forbidden = [*PERSONAL.values(), label.lower(), headers["webhook-signature"], WEBHOOK_SECRET.split()[0]]
    forbidden += [SECRET.decode(), DASHBOARD_PASSWORD, token]
    everything = captured.out + captured.err
    for value in forbidden:
        assert value not in everything, f"{value!r} leaked into the logs"


def test_log_format_plain_gives_plain_lines_with_the_same_safe_fields(
    root_logging: None, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "plain")  # as `crmsync dev` runs web and worker
    configure("INFO")
    logging.getLogger("crmsync.jobs").info("applied", extra={"job_id": "evt_1", "label": "vip"})
    (line,) = capfd.readouterr().out.splitlines()
    assert line.endswith(" info    crmsync.jobs: applied job_id=evt_1")  # `label` is no safe field


def test_a_restarted_worker_process_is_logged_with_its_exit_code_and_pid(
    root_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    configure("INFO")
    extra = {"event": "worker_process_restarted", "exit_code": -9, "pid": 4242}  # as jobs/dyno_processes.py
    logging.getLogger("crmsync.jobs").warning("worker dyno process ended; starting another", extra=extra)
    (line,) = capfd.readouterr().out.splitlines()
    assert {key: json.loads(line).get(key) for key in extra} == extra


def test_crmsync_dev_runs_web_and_worker_with_plain_lines(tmp_path: pathlib.Path) -> None:
    from crmsync.cli.dev import _environment

    assert _environment(8000, 5050, "redis://127.0.0.1:6379/0", str(tmp_path))["LOG_FORMAT"] == "plain"

"""Duplicate names: the platform's customer names are unique, CRMs' are not (two HubSpot companies
renamed to the same name, as a captured batch does). End to end through the sandbox, which refuses a
taken name in the mutation's payload `errors` (`Name "…" is already taken.`), as the platform does."""

from __future__ import annotations

from dataclasses import replace

import pytest
import requests
from redis import Redis
from rq.job import JobStatus

from crmsync.core.settings import Settings, SettingsError
from jobs.worker import build_worker
from tests.support import AUTH, Deliver, Platform, customers, event, job_of, run, work

T0, T1, T2, T3 = (f"2026-11-22T10:0{minute}:00Z" for minute in range(4))


def test_a_taken_name_fails_as_name_conflict_naming_the_holder_by_external_id(
    deliver: Deliver, settings: Settings, redis: Redis, platform: Platform
) -> None:
    worker = build_worker(settings, redis)
    deliver(event("created", external_id="1001", at=T0, name="Mars Missions"))
    deliver(event("created", external_id="1002", at=T0, name="Jupiter Journeys"))
    # Applied before the rename arrives: queued together, the rename would be coalesced into the create.
    run(worker)
    renamed = deliver(event("updated", external_id="1002", at=T1, name="Mars Missions"))
    run(worker)
    job = job_of(renamed, redis)
    assert job.get_status() == JobStatus.FAILED
    assert job.meta["failure_class"] == "name_conflict"
    message = job.meta["attempts"][-1]["message"]
    assert message == "updateCustomer failed: the name is taken by the customer with external id 1001"
    assert customers(platform, "1002")[0]["name"] == "Jupiter Journeys"
    worker.runtime.close()


def test_with_the_suffix_policy_the_name_is_suffixed_until_the_conflict_ends(
    deliver: Deliver, settings: Settings, redis: Redis, platform: Platform
) -> None:
    worker = build_worker(replace(settings, name_conflict_policy="suffix"), redis)
    deliver(event("created", external_id="1001", at=T0, name="Mars Missions"))
    deliver(event("created", external_id="1002", at=T0, name="Mars Missions", description="second"))
    run(worker)
    assert customers(platform, "1002")[0]["name"] == "Mars Missions (1002)"
    # The holder is renamed; the next name change of 1002 tries the plain name first, and gets it.
    deliver(event("updated", external_id="1001", at=T1, name="Mars Missions One"))
    deliver(event("updated", external_id="1002", at=T2, name="Mars Missions"))
    run(worker)
    assert customers(platform, "1002")[0]["name"] == "Mars Missions"
    assert customers(platform, "1001")[0]["name"] == "Mars Missions One"
    worker.runtime.close()


def test_with_the_suffix_policy_a_taken_suffixed_name_still_fails_as_name_conflict(
    deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    worker = build_worker(replace(settings, name_conflict_policy="suffix"), redis)
    deliver(event("created", external_id="1001", at=T0, name="Mars"))
    deliver(event("created", external_id="1003", at=T0, name="Mars (1002)"))
    response = deliver(event("created", external_id="1002", at=T0, name="Mars"))
    run(worker)
    job = job_of(response, redis)
    assert job.meta["failure_class"] == "name_conflict"
    assert job.meta["attempts"][-1]["message"].endswith("the customer with external id 1003")
    worker.runtime.close()


@pytest.mark.parametrize(("raw", "policy"), [("", "fail"), ("fail", "fail"), (" Suffix ", "suffix")])
def test_the_name_conflict_policy_is_read_from_the_environment(raw: str, policy: str) -> None:
    assert Settings.from_env({"NAME_CONFLICT_POLICY": raw}, role="cli").name_conflict_policy == policy


def test_an_unknown_name_conflict_policy_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="NAME_CONFLICT_POLICY must be one of fail, suffix"):
        Settings.from_env({"NAME_CONFLICT_POLICY": "rename"}, role="cli")


def test_the_dashboard_shows_a_name_conflict_with_the_holder_and_without_the_name(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    deliver(event("created", external_id="1001", at=T0, name="Mars Missions"))
    response = deliver(event("created", external_id="1002", at=T1, name="Mars Missions"))
    work(settings, redis)
    job_id = response.json()["job_id"]
    answer = requests.get(f"{dashboard}/api/failed", params={"failure_class": "name_conflict"},
                          auth=AUTH, timeout=5).json()  # fmt: skip
    assert [item["job_id"] for item in answer["items"]] == [job_id]
    for url in (f"{dashboard}/failed", f"{dashboard}/jobs/{job_id}"):
        body = requests.get(url, auth=AUTH, timeout=5).text
        assert "name_conflict" in body and "external id 1001" in body, url
        assert "Mars Missions" not in body, url

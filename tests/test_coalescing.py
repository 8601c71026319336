"""Coalescing (jobs/coalescing.py): a customer's queued updates applied as one write, field by field
the highest version winning, every guarantee of event-by-event application kept. Requests are counted
by the sandbox itself."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import requests
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis
from rq.job import JobStatus

from crmsync.core.events import CUSTOMER_CREATED, CUSTOMER_UPDATED, Event
from crmsync.core.settings import Settings
from crmsync.operations.failed_jobs import FailedJobs
from jobs.coalescing import coalesce
from jobs.ordering import Ledger
from jobs.worker import SyncWorker, build_worker
from sandbox.server import RunningSandbox
from tests.support import ADMIN, Deliver, Platform, customers, event, job_of, run

# -- the merge rule, pure --------------------------------------------------------------------------

FIELD_VALUES = {
    "name": st.sampled_from(["Ames", "Brno", "Cork"]),
    "description": st.sampled_from(["", "one", "two"]),
    "labels": st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
}


@st.composite
def crm_events(draw: st.DrawFn) -> list[Event]:
    """Created and updated events of one customer, each at its own version (time, webhook id)."""
    events = []
    for index in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from([CUSTOMER_CREATED, CUSTOMER_UPDATED]))
        names = draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), min_size=kind == CUSTOMER_UPDATED))
        if kind == CUSTOMER_CREATED:
            names.add("name")
        data = {name: draw(FIELD_VALUES[name]) for name in sorted(names)}
        second = draw(st.integers(0, 5))  # often the same second: the webhook id breaks the tie
        events.append(Event(f"msg_{index}", kind, f"2026-11-22T10:00:0{second}+00:00",
                            {"external_id": "crm-1", **data}))  # fmt: skip
    return events


def highest_version_per_field(events: list[Event]) -> dict[str, Any]:
    state: dict[str, tuple[str, Any]] = {}
    for item in events:
        for name, value in item.customer_fields().items():
            if item.version > state.get(name, ("", None))[0]:
                state[name] = (item.version, value)
    return {name: value for name, (_, value) in state.items()}


@given(crm_events(), st.data())
def test_any_interleaving_of_coalesced_writes_gives_the_highest_version_of_each_field(
    events: list[Event], data: st.DataObject
) -> None:
    # The events arrive in any order, and any consecutive run of them is coalesced into one write.
    arrived = data.draw(st.permutations(events))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(arrived) - 1)))))
    batches = [arrived[start:end] for start, end in zip([0, *cuts], [*cuts, len(arrived)], strict=True)]
    ledger, platform = Ledger(), {}
    for batch in batches:
        write = coalesce(ledger, batch)
        platform.update(write.fields)
        if write.versions:
            ledger = ledger.after_writes(write.versions)
    assert platform == highest_version_per_field(events)


def test_a_field_already_written_by_a_newer_event_is_left_alone() -> None:
    newer = Event(
        "msg_2", CUSTOMER_UPDATED, "2026-11-22T10:00:02+00:00", {"external_id": "crm-1", "name": "B"}
    )
    older = Event("msg_1", CUSTOMER_UPDATED, "2026-11-22T10:00:01+00:00",
                  {"external_id": "crm-1", "name": "A", "description": "d"})  # fmt: skip
    ledger = Ledger().after_write(newer.version, {"name": "B"})
    write = coalesce(ledger, [older])
    assert write.fields == {"description": "d"}
    assert write.versions == {"description": older.version}


def test_nothing_at_or_before_a_delete_is_written() -> None:
    update = Event(
        "msg_1", CUSTOMER_UPDATED, "2026-11-22T10:00:01+00:00", {"external_id": "crm-1", "name": "A"}
    )
    ledger = Ledger().after_delete("99999999999999999999|z")
    assert coalesce(ledger, [update]).fields == {}


# -- with a worker, the queue and the sandbox ------------------------------------------------------


def requests_seen(sandbox: RunningSandbox) -> int:
    rates = requests.get(f"{sandbox.base_url}/admin/rates", headers=ADMIN, timeout=5).json()
    requests.delete(f"{sandbox.base_url}/admin/rates", headers=ADMIN, timeout=5).raise_for_status()
    return int(rates["customers"]["total"])


def outcome(response: requests.Response, redis: Redis) -> str:
    result = job_of(response, redis).return_value()
    assert result is not None
    return str(result["outcome"])


def created_customer(deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox) -> None:
    deliver(event("created", at="2026-11-22T10:00:00Z", name="Mars Missions"))
    run(worker)
    requests_seen(sandbox)


def bulk_edit(deliver: Deliver) -> list[requests.Response]:
    """A CRM bulk edit: one event per changed property of the same customer."""
    return [
        deliver(event("updated", at="2026-11-22T10:01:00Z", name="Mars Colonies")),
        deliver(event("updated", at="2026-11-22T10:01:01Z", description="Red planet")),
        deliver(event("updated", at="2026-11-22T10:01:02Z", labels=["Planet"])),
    ]


def test_updates_queued_for_one_customer_are_applied_as_one_write(
    deliver: Deliver, worker: SyncWorker, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    created_customer(deliver, worker, sandbox)
    responses = bulk_edit(deliver)
    run(worker)
    assert requests_seen(sandbox) == 1
    assert [outcome(response, redis) for response in responses] == ["applied", "coalesced", "coalesced"]
    (customer,) = customers(platform)
    assert (customer["name"], customer["description"], customer["labels"]) == (
        "Mars Colonies",
        "Red planet",
        ["planet"],
    )


def test_the_newest_value_wins_whichever_event_is_taken_first(
    deliver: Deliver, worker: SyncWorker, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    created_customer(deliver, worker, sandbox)
    newer = deliver(event("updated", at="2026-11-22T10:02:00Z", name="Newer", description="Newer too"))
    older = deliver(event("updated", at="2026-11-22T10:01:00Z", name="Older", labels=["older"]))
    run(worker)
    assert requests_seen(sandbox) == 1
    assert [outcome(newer, redis), outcome(older, redis)] == ["applied", "coalesced"]
    (customer,) = customers(platform)
    assert (customer["name"], customer["description"], customer["labels"]) == (
        "Newer",
        "Newer too",
        ["older"],
    )


def test_a_queued_delete_is_a_barrier(
    deliver: Deliver, worker: SyncWorker, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    created_customer(deliver, worker, sandbox)
    first = deliver(event("updated", at="2026-11-22T10:01:00Z", description="Red planet"))
    deliver(event("deleted", at="2026-11-22T10:02:00Z"))
    last = deliver(event("updated", at="2026-11-22T10:03:00Z", name="Mars Again"))
    run(worker)
    assert outcome(first, redis) == "applied"
    assert outcome(last, redis) == "applied"
    # Event by event: the update, the delete, then the newer update creates the customer again (the
    # ledger knows it was deleted: no lookup first).
    assert requests_seen(sandbox) == 3
    assert [(c["name"], c["description"]) for c in customers(platform)] == [("Mars Again", "")]


def test_with_coalescing_off_each_event_is_its_own_write(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = build_worker(replace(settings, coalesce_events=False), redis)
    created_customer(deliver, worker, sandbox)
    bulk_edit(deliver)
    run(worker)
    worker.runtime.close()
    assert requests_seen(sandbox) == 3


def test_a_failed_coalesced_write_lists_every_event_it_carried_and_replays(
    deliver: Deliver, worker: SyncWorker, redis: Redis, sandbox: RunningSandbox, platform: Platform,
    settings: Settings,
) -> None:  # fmt: skip
    created_customer(deliver, worker, sandbox)
    requests.put(f"{sandbox.base_url}/admin/faults/reject", json={"next": 1}, headers=ADMIN, timeout=5)
    taken, *others = bulk_edit(deliver)
    run(worker)
    failures = FailedJobs(redis, settings)
    failed = failures.get(taken.json()["job_id"])
    assert failed is not None
    assert failed.coalesced == tuple(job_of(other, redis).args[0]["webhook_id"] for other in others)
    assert "Mars Colonies" not in failed.message and "Red planet" not in failed.message
    # The others were then tried on their own (coalesced with each other), and the taken one replays.
    assert [job_of(other, redis).get_status() for other in others] == [JobStatus.FINISHED] * 2
    failures.replay([failed.job_id], actor="test")
    run(worker)
    assert job_of(taken, redis).get_status() == JobStatus.FINISHED
    (customer,) = customers(platform)
    assert (customer["name"], customer["description"], customer["labels"]) == (
        "Mars Colonies",
        "Red planet",
        ["planet"],
    )


def test_a_write_cut_off_before_its_commit_is_redone_with_every_event(
    deliver: Deliver, settings: Settings, redis: Redis, sandbox: RunningSandbox, platform: Platform
) -> None:
    # The API applies the coalesced write but its answer is lost (as when the worker dies mid-request):
    # nothing is committed, so the taken job's retry and the still-queued others redo all of it.
    worker = build_worker(replace(settings, retry_schedule=(30,)), redis)
    created_customer(deliver, worker, sandbox)
    requests.put(
        f"{sandbox.base_url}/admin/faults", json={"lost_response_rate": 1.0}, headers=ADMIN, timeout=5
    )
    taken, *others = bulk_edit(deliver)
    worker.work(burst=True, with_scheduler=False, max_jobs=1)
    assert job_of(taken, redis).get_status() == JobStatus.SCHEDULED
    assert [job_of(other, redis).get_status() for other in others] == [JobStatus.QUEUED] * 2
    requests.put(f"{sandbox.base_url}/admin/faults", json={}, headers=ADMIN, timeout=5)
    run(worker)
    worker.runtime.close()
    assert [outcome(other, redis) for other in others] == ["applied", "coalesced"]
    (customer,) = customers(platform)
    assert (customer["name"], customer["description"], customer["labels"]) == (
        "Mars Colonies",
        "Red planet",
        ["planet"],
    )

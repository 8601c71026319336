"""Merges (customer.merged) applied as one operation, end to end: signed deliveries through the web
app, a real worker, the sandbox over HTTP, its state read back over GraphQL.

The merge events are the contract's (`crmsync/core/events.py`): the survivor's `external_id` and the
`merged_ids` in order of preference, as the CRM sources map them (HubSpot `company.merge` with
`newObjectId` ≠ `primaryObjectId` is the re-keying case; Pipedrive and Salesforce merge into an
existing record).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import requests
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from redis import Redis
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from crmsync.cli import main
from crmsync.cli.sender import SAMPLE_IDS
from crmsync.core.keys import customer_alias_key
from crmsync.core.settings import Settings
from jobs.ordering import CustomerLedgers
from jobs.worker import SyncWorker, build_worker
from sandbox.server import RunningSandbox
from tests.support import (
    ADMIN,
    AUTH,
    P1,
    WEBHOOK_SECRET,
    Deliver,
    Platform,
    customers,
    event,
    fail,
    job_of,
    release_scheduled,
    run,
    seed_purchases,
    set_faults,
    stats,
)

T0, T1, T2, T3 = (f"2026-11-22T10:0{minute}:00Z" for minute in range(4))


def merge(survivor: str, *merged: str, at: str = T1) -> dict[str, Any]:
    return event("merged", external_id=survivor, at=at, merged_ids=list(merged))


def everyone(platform: Platform) -> list[tuple[str, str, str]]:
    """Every customer as (external id, name, description), sorted."""
    nodes = platform("{ customers(isSystem: false) { nodes { externalId name description } } }")
    return sorted((n["externalId"], n["name"], n["description"]) for n in nodes["data"]["customers"]["nodes"])


def reset_sandbox(sandbox: RunningSandbox) -> None:
    """Empty the sandbox, as the `sandbox` fixture does before each test (here: before each example)."""
    requests.post(f"{sandbox.base_url}/admin/reset", headers=ADMIN, timeout=5).raise_for_status()


def drain(worker: SyncWorker, redis: Redis) -> None:
    """Run the queue until nothing is queued or waiting for a retry (retries released at once)."""
    scheduled = Queue("crmsync", connection=redis, serializer=JSONSerializer).scheduled_job_registry
    run(worker)
    while scheduled.count:
        release_scheduled(redis)
        run(worker)


def test_a_merge_keeps_the_survivors_customer_and_deletes_the_merged_ones(
    deliver: Deliver, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    deliver(event("created", external_id="s", at=T0, name="Acme", description="kept"))
    deliver(event("created", external_id="m1", at=T0, name="Acme Ltd"))
    deliver(event("created", external_id="m2", at=T0, name="Acme GmbH"))
    run(worker)
    (survivor,) = customers(platform, "s")
    response = deliver(merge("s", "m1", "m2"))
    run(worker)
    assert job_of(response, redis).latest_result().return_value == {"outcome": "applied"}  # type: ignore[union-attr]
    assert everyone(platform) == [("s", "Acme", "kept")]
    assert customers(platform, "s")[0]["id"] == survivor["id"]


def test_a_merge_into_a_new_id_rekeys_the_first_merged_record_that_has_a_customer(
    deliver: Deliver, worker: SyncWorker, platform: Platform
) -> None:
    # HubSpot: merging 101 and 102 makes a new id (newObjectId 103); 100 was never synced.
    deliver(event("created", external_id="101", at=T0, name="Acme", description="first"))
    deliver(event("created", external_id="102", at=T0, name="Acme Inc"))
    run(worker)
    (first,) = customers(platform, "101")
    deliver(merge("103", "100", "101", "102"))
    run(worker)
    assert everyone(platform) == [("103", "Acme", "first")]
    assert customers(platform, "103")[0]["id"] == first["id"]  # the same platform customer, re-keyed


def test_events_after_the_merge_for_a_merged_id_reach_the_survivor(
    deliver: Deliver, worker: SyncWorker, platform: Platform
) -> None:
    deliver(event("created", external_id="s", at=T0, name="Acme"))
    deliver(event("created", external_id="m1", at=T0, name="Acme Ltd"))
    deliver(merge("s", "m1"))
    deliver(event("updated", external_id="m1", at=T2, description="after the merge"))
    run(worker)
    assert everyone(platform) == [("s", "Acme", "after the merge")]


def test_events_older_than_the_merge_for_a_deleted_record_are_stale(
    deliver: Deliver, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    deliver(event("created", external_id="s", at=T0, name="Acme"))
    deliver(event("created", external_id="m1", at=T0, name="Acme Ltd"))
    deliver(merge("s", "m1", at=T2))
    run(worker)
    late = deliver(event("updated", external_id="m1", at=T1, name="Acme Ltd renamed", description="late"))
    run(worker)
    assert job_of(late, redis).latest_result().return_value == {"outcome": "stale"}  # type: ignore[union-attr]
    assert everyone(platform) == [("s", "Acme", "")]


def test_older_events_of_the_rekeyed_record_still_describe_the_survivor(
    deliver: Deliver, worker: SyncWorker, platform: Platform
) -> None:
    deliver(event("created", external_id="101", at=T0, name="Acme"))
    deliver(merge("103", "101", at=T2))
    run(worker)
    deliver(event("updated", external_id="101", at=T1, description="sent before the merge"))
    run(worker)
    assert everyone(platform) == [("103", "Acme", "sent before the merge")]


def test_a_write_after_the_merge_that_arrived_before_it_moves_to_the_survivor(
    deliver: Deliver, worker: SyncWorker, platform: Platform
) -> None:
    deliver(event("created", external_id="s", at=T0, name="Acme"))
    deliver(event("created", external_id="m1", at=T0, name="Acme Ltd"))
    deliver(event("updated", external_id="m1", at=T2, description="after the merge", labels=["x"]))
    run(worker)
    deliver(merge("s", "m1", at=T1))
    run(worker)
    assert everyone(platform) == [("s", "Acme", "after the merge")]
    assert customers(platform, "s")[0]["labels"] == ["x"]


def test_a_survivor_made_by_a_later_event_that_arrived_first_takes_the_kept_records_fields(
    deliver: Deliver, worker: SyncWorker, platform: Platform
) -> None:
    deliver(event("created", external_id="101", at=T0, name="Acme", description="first", labels=["a"]))
    run(worker)
    deliver(event("updated", external_id="103", at=T2, name="Acme Group"))  # after the merge, sent first
    run(worker)
    deliver(merge("103", "101", at=T1))
    run(worker)
    assert everyone(platform) == [("103", "Acme Group", "first")]
    assert customers(platform, "103")[0]["labels"] == ["a"]


def test_a_later_name_sent_for_the_kept_record_still_wins_over_the_new_survivors_older_one(
    deliver: Deliver, worker: SyncWorker, platform: Platform
) -> None:
    deliver(event("created", external_id="101", at=T0, name="Acme", description="first"))
    deliver(event("updated", external_id="101", at=T3, name="Acme Three"))  # after the merge, first
    run(worker)
    deliver(event("updated", external_id="103", at=T2, name="Acme Two"))  # after the merge, second
    run(worker)
    deliver(merge("103", "101", at=T1))
    run(worker)
    assert everyone(platform) == [("103", "Acme Three", "first")]


def test_the_same_merge_sent_again_changes_nothing(
    deliver: Deliver, worker: SyncWorker, platform: Platform, redis: Redis, sandbox: RunningSandbox
) -> None:
    # Salesforce reports a merge once per deleted record: two messages, one merge.
    deliver(event("created", external_id="s", at=T0, name="Acme"))
    deliver(event("created", external_id="m1", at=T0, name="Acme Ltd"))
    deliver(merge("s", "m1"))
    run(worker)
    mutations = dict(stats(sandbox)["mutations"])
    again = deliver(merge("s", "m1"), webhook_id="msg_other")
    run(worker)
    assert job_of(again, redis).latest_result().return_value == {"outcome": "stale"}  # type: ignore[union-attr]
    assert stats(sandbox)["mutations"] == mutations
    assert everyone(platform) == [("s", "Acme", "")]


def test_a_rekey_whose_answer_was_lost_is_not_repeated_and_keeps_the_survivor(
    deliver: Deliver, settings: Settings, platform: Platform, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = build_worker(replace(settings, retry_schedule=(30, 30, 30)), redis)
    deliver(event("created", external_id="101", at=T0, name="Acme"))
    deliver(event("created", external_id="102", at=T0, name="Acme Inc"))
    run(worker)
    (first,) = customers(platform, "101")
    set_faults(sandbox, lost_response_rate=1.0)  # the re-key is applied, its answer lost
    response = deliver(merge("103", "101", "102"))
    run(worker)
    assert job_of(response, redis).get_status() == JobStatus.SCHEDULED
    set_faults(sandbox)
    drain(worker, redis)
    assert job_of(response, redis).get_status() == JobStatus.FINISHED
    assert everyone(platform) == [("103", "Acme", "")]
    assert customers(platform, "103")[0]["id"] == first["id"]
    # The retry knew whose record the survivor's was: 101's older events still reach it.
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0)
    alias = ledgers.read_alias("101")
    assert alias is not None and alias.survivor == "103" and alias.kept
    worker.runtime.close()


def test_an_update_for_the_new_id_between_two_attempts_of_its_merge_loses_no_newer_kept_value(
    deliver: Deliver, settings: Settings, platform: Platform, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = build_worker(replace(settings, retry_schedule=(30, 30, 30), in_flight_hold_seconds=0), redis)
    deliver(event("created", external_id="101", at=T0, name="Acme", description="first"))
    deliver(event("updated", external_id="101", at=T3, description="third"))  # after the merge, first
    run(worker)
    set_faults(sandbox, lost_response_rate=1.0)  # the re-key is applied, its answer lost
    response = deliver(merge("103", "101", at=T1))
    run(worker)
    assert job_of(response, redis).get_status() == JobStatus.SCHEDULED
    set_faults(sandbox)
    # Before the merge's retry: 103's record is 101's, re-keyed, and its ledger knows nothing of it.
    deliver(event("updated", external_id="103", at=T2, description="second"))
    run(worker)
    drain(worker, redis)
    assert everyone(platform) == [("103", "Acme", "third")]
    worker.runtime.close()


def test_an_event_for_a_record_half_merged_by_a_failed_attempt_waits_for_the_merges_commit(
    deliver: Deliver, settings: Settings, platform: Platform, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = build_worker(replace(settings, retry_schedule=(30, 30, 30), in_flight_hold_seconds=0), redis)
    deliver(event("created", external_id="101", at=T0, name="Acme", description="first"))
    run(worker)
    set_faults(sandbox, lost_response_rate=1.0)  # the re-key is applied, its answer lost
    deliver(merge("103", "101", at=T1))
    run(worker)
    set_faults(sandbox)
    # 101's record is 103's now, and 101 no alias yet: this update must not create 101 again.
    update = deliver(event("updated", external_id="101", at=T2, name="Acme Two", description="second"))
    run(worker)
    assert [attempt["class"] for attempt in job_of(update, redis).meta["attempts"]] == ["merge_waiting"]
    set_faults(sandbox, lost_response_rate=1.0)  # the retry fails once more after a platform step
    release_scheduled(redis)
    run(worker)
    set_faults(sandbox)
    drain(worker, redis)
    assert everyone(platform) == [("103", "Acme Two", "second")]
    worker.runtime.close()


def test_a_new_survivor_whose_create_lost_its_answer_still_takes_the_kept_records_fields(
    deliver: Deliver, settings: Settings, platform: Platform, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = build_worker(replace(settings, retry_schedule=(30, 30, 30)), redis)
    deliver(event("created", external_id="101", at=T0, name="Acme", description="first"))
    run(worker)
    set_faults(sandbox, lost_response_rate=1.0)  # the create is applied, its answer lost
    deliver(event("updated", external_id="103", at=T2, name="Acme Group"))  # after the merge, first
    run(worker)
    set_faults(sandbox)
    drain(worker, redis)
    deliver(merge("103", "101", at=T1))
    drain(worker, redis)
    assert everyone(platform) == [("103", "Acme Group", "first")]
    worker.runtime.close()


def test_a_merge_waits_for_its_kept_records_create_still_to_be_retried(
    deliver: Deliver, settings: Settings, platform: Platform, redis: Redis, sandbox: RunningSandbox
) -> None:
    # No hold after the failed create: the merge is free to take the kept record's lock at once.
    worker = build_worker(replace(settings, retry_schedule=(30, 30, 30), in_flight_hold_seconds=0), redis)
    deliver(event("created", external_id="102", at=T0, name="Acme Inc"))
    run(worker)
    set_faults(sandbox, unavailable_rate=1.0)
    create = deliver(event("created", external_id="101", at=T0, name="Acme", description="first"))
    run(worker)
    assert job_of(create, redis).get_status() == JobStatus.SCHEDULED  # 101 has no customer yet
    set_faults(sandbox)
    response = deliver(merge("103", "101", "102"))
    run(worker)
    waiting = job_of(response, redis)
    assert waiting.get_status() == JobStatus.SCHEDULED
    assert [attempt["class"] for attempt in waiting.meta["attempts"]] == ["merge_waiting"]
    assert waiting.retries_left == len(settings.retry_schedule)  # the wait spent none of its retries
    assert stats(sandbox)["mutations"].get("deleteCustomer", 0) == 0  # nor any platform step
    drain(worker, redis)
    # 101, the merge's first choice, is the record kept: had the merge not waited, 102's would be.
    assert everyone(platform) == [("103", "Acme", "first")]
    worker.runtime.close()


def test_an_update_for_a_new_id_waits_for_its_merge_however_long_that_waits_itself(
    deliver: Deliver, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    deliver(event("created", external_id="101", at=T0, name="Acme", description="first"))
    run(worker)
    after = deliver(event("updated", external_id="103", at=T2, description="after the merge"))
    deliver(event("updated", external_id="101", at="2026-11-22T10:00:30Z", name="Acme 30"))
    deliver(merge("103", "101", at=T1))
    # Applied with the update before it (coalesced), but still queued when the merge comes: it waits.
    deliver(event("updated", external_id="101", at="2026-11-22T10:00:40Z", name="Acme 40"))
    run(worker)
    # No customer 103 before the merge, whose wait outlasts the update's retries (no delay here).
    assert [attempt["class"] for attempt in job_of(after, redis).meta["attempts"]] == ["merge_waiting"]
    drain(worker, redis)
    assert everyone(platform) == [("103", "Acme 40", "after the merge")]


def test_a_delete_whose_answer_was_lost_never_reaches_the_survivor(
    deliver: Deliver, settings: Settings, platform: Platform, redis: Redis, sandbox: RunningSandbox
) -> None:
    worker = build_worker(replace(settings, retry_schedule=(30, 30, 30)), redis)
    deliver(event("created", external_id="s", at=T0, name="Acme"))
    deliver(event("created", external_id="m1", at=T0, name="Acme Ltd"))
    run(worker)
    set_faults(sandbox, lost_response_rate=1.0)
    response = deliver(merge("s", "m1"))
    run(worker)
    assert job_of(response, redis).meta["attempts"][0]["class"] == "api_unavailable"
    set_faults(sandbox)
    drain(worker, redis)
    assert everyone(platform) == [("s", "Acme", "")]
    assert stats(sandbox)["mutations"]["deleteCustomer"] == 1
    worker.runtime.close()


def test_an_erasure_for_a_merged_id_reaches_the_survivors_record(
    deliver: Deliver, settings: Settings, platform: Platform, redis: Redis, sandbox: RunningSandbox
) -> None:
    seed_purchases(sandbox.base_url, P1)
    worker = build_worker(replace(settings, erasure_customer_action="anonymize"), redis)
    deliver(event("created", external_id="s", at=T0, name="Acme", description="Jane Doe's company"))
    deliver(event("created", external_id="m1", at=T0, name="Acme Ltd"))
    deliver(merge("s", "m1"))
    run(worker)
    queued = deliver(event("updated", external_id="s", at=T1, description="Jane Doe, again"))
    erasure = deliver(event("erasure_requested", external_id="m1", at=T2, purchase_ids=[P1]))
    run(worker)
    assert job_of(erasure, redis).get_status() == JobStatus.FINISHED
    assert everyone(platform) == [("s", "Acme", "")]
    # The survivor's queued event older than the erasure was scrubbed of its data, not applied.
    assert "Jane Doe" not in str(job_of(queued, redis).args)
    worker.runtime.close()


def test_an_alias_outlives_the_ordinary_ledger(
    deliver: Deliver, worker: SyncWorker, redis: Redis, settings: Settings
) -> None:
    deliver(event("created", external_id="s", at=T0, name="Acme"))
    deliver(merge("s", "m1"))
    run(worker)
    assert redis.ttl(customer_alias_key("m1")) > settings.ledger_ttl_seconds


def test_merge_events_are_accepted_by_the_standard_webhooks_contract(deliver: Deliver) -> None:
    response = deliver(merge("s", "m1", "m2"))
    assert response.status_code == 202, response.text


# -- merge routing under reordering and redelivery (Hypothesis) --------------------------------------

ROUTING = examples(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MERGED_AT = 30  # seconds past 10:00: updates before it are the records' own, after it the survivor's


def at(second: int) -> str:
    return f"2026-11-22T10:00:{second:02d}Z"


@st.composite
def updates(draw: st.DrawFn, ids: list[str]) -> list[tuple[str, int, dict[str, Any]]]:
    """Updates of the records before and after the merge: (external id, second, fields), each at its
    own second, each name unique (the platform's names are)."""
    seconds = draw(st.lists(st.integers(1, 59).filter(lambda s: s != MERGED_AT), max_size=6, unique=True))
    found = []
    for second in seconds:
        fields = draw(st.fixed_dictionaries({}, optional={
            "name": st.just(f"name at {second}"),
            "description": st.sampled_from(["", "red", "blue"]),
            "labels": st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True),
        }).filter(bool))  # fmt: skip
        found.append((draw(st.sampled_from(ids)), second, fields))
    return found


def expected_survivor(
    start: dict[str, Any], kept: str, survivor: str, sent: list[tuple[str, int, dict[str, Any]]]
) -> dict[str, Any]:
    """The survivor's fields as in-order delivery leaves them: the kept record's own updates before
    the merge, then every update after it, whichever id it was sent for."""
    state = dict(start)
    for external_id, second, fields in sorted(sent, key=lambda item: item[1]):
        if second > MERGED_AT or external_id in (kept, survivor):
            state.update(fields)
    return state


def deliver_shuffled(
    deliver: Deliver, sent: list[dict[str, Any]], order: list[int], again: list[int]
) -> None:
    for index in order:
        deliver(sent[index], webhook_id=f"msg_{index}")
    for index in again:  # the CRM sends it again: a redelivery (same id) and a resend (a new id)
        deliver(sent[index], webhook_id=f"msg_{index}")
        deliver(sent[index], webhook_id=f"msg_{index}_resent")


@ROUTING
@given(data=st.data())
def test_a_merge_into_an_existing_record_ends_the_same_in_any_delivery_order(
    deliver: Deliver,
    worker: SyncWorker,
    platform: Platform,
    redis: Redis,
    sandbox: RunningSandbox,
    data: st.DataObject,
) -> None:
    redis.flushdb()
    reset_sandbox(sandbox)
    start = {"name": "s", "description": "", "labels": []}
    deliver(event("created", external_id="s", at=at(0), **start))
    deliver(event("created", external_id="m", at=at(0), name="m"))
    run(worker)
    sent_updates = data.draw(updates(["s", "m"]))
    sent = [event("updated", external_id=i, at=at(second), **fields) for i, second, fields in sent_updates]
    sent.append(merge("s", "m", at=at(MERGED_AT)))
    order = data.draw(st.permutations(range(len(sent))))
    deliver_shuffled(deliver, sent, order, data.draw(st.lists(st.sampled_from(range(len(sent))), max_size=3)))
    drain(worker, redis)
    want = expected_survivor(start, "s", "s", sent_updates)
    (survivor,) = customers(platform, "s")
    assert (survivor["name"], survivor["description"], survivor["labels"]) == (
        want["name"],
        want["description"],
        want["labels"],
    )
    assert customers(platform, "m") == []


@ROUTING
@given(data=st.data())
def test_a_merge_into_a_new_id_ends_the_same_in_any_delivery_order(
    deliver: Deliver,
    worker: SyncWorker,
    platform: Platform,
    redis: Redis,
    sandbox: RunningSandbox,
    data: st.DataObject,
) -> None:
    redis.flushdb()
    reset_sandbox(sandbox)
    start = {"name": "m1", "description": "first", "labels": ["a"]}
    deliver(event("created", external_id="m1", at=at(0), **start))
    deliver(event("created", external_id="m2", at=at(0), name="m2"))
    run(worker)
    sent_updates = [
        (i, second, fields) for i, second, fields in data.draw(updates(["m1", "m2", "new"]))
        # The new id has no life before the merge (HubSpot's newObjectId).
        if i != "new" or second > MERGED_AT
    ]  # fmt: skip
    sent = [event("updated", external_id=i, at=at(second), **fields) for i, second, fields in sent_updates]
    sent.append(merge("new", "m1", "m2", at=at(MERGED_AT)))
    order = data.draw(st.permutations(range(len(sent))))
    deliver_shuffled(deliver, sent, order, data.draw(st.lists(st.sampled_from(range(len(sent))), max_size=3)))
    drain(worker, redis)
    want = expected_survivor(start, "m1", "new", sent_updates)
    (survivor,) = customers(platform, "new")
    assert (survivor["name"], survivor["description"], survivor["labels"]) == (
        want["name"],
        want["description"],
        want["labels"],
    )
    assert customers(platform, "m1") == customers(platform, "m2") == []


# -- every place that lists event types knows customer.merged -----------------------------------------


def test_a_failed_merge_is_listed_filtered_and_counted_like_any_event(
    deliver: Deliver, dashboard: str, settings: Settings, redis: Redis, redis_url: str
) -> None:
    (job_id,) = fail(deliver, settings, redis, merge("s", "m1"))
    answer = requests.get(
        f"{dashboard}/api/failed", params={"type": "customer.merged"}, auth=AUTH, timeout=5
    ).json()
    assert [(item["job_id"], item["type"], item["external_id"]) for item in answer["items"]] == [
        (job_id, "customer.merged", "s")
    ]
    listed = CliRunner().invoke(main, ["failed", "--type", "customer.merged"], env={"REDIS_URL": redis_url})
    assert listed.exit_code == 0 and job_id in listed.output, listed.output
    metrics = requests.get(f"{dashboard.removesuffix('/dashboard')}/metrics", timeout=5).text
    assert 'crmsync_jobs_total{outcome="failed",type="customer.merged"} 1.0' in metrics


def test_the_merge_sample_is_sent_and_applied(
    web: str, worker: SyncWorker, redis: Redis, platform: Platform
) -> None:
    sent = CliRunner().invoke(main, ["send-sample", "--type", "customer.created", web],
                              env={"WEBHOOK_SECRET": WEBHOOK_SECRET})  # fmt: skip
    assert sent.exit_code == 0, sent.output
    run(worker)
    merged = CliRunner().invoke(main, ["send-sample", "--type", "customer.merged", web],
                                env={"WEBHOOK_SECRET": WEBHOOK_SECRET})  # fmt: skip
    assert merged.exit_code == 0, merged.output
    run(worker)
    sample_id = SAMPLE_IDS["standard"]
    assert [node["externalId"] for node in customers(platform, sample_id)] == [sample_id]
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0)
    assert ledgers.read_alias(f"{sample_id}-duplicate") is not None


def test_a_delete_of_a_merged_id_never_deletes_the_survivor(
    deliver: Deliver, worker: SyncWorker, platform: Platform, redis: Redis
) -> None:
    # Salesforce reports the losers of a merge as IsDeleted, stamped at or after the merge.
    deliver(event("created", external_id="s", at=T0, name="Acme"))
    deliver(event("created", external_id="m1", at=T0, name="Acme Ltd"))
    deliver(merge("s", "m1"))
    deleted = deliver(event("deleted", external_id="m1", at=T2))
    run(worker)
    assert job_of(deleted, redis).latest_result().return_value == {"outcome": "stale"}  # type: ignore[union-attr]
    assert everyone(platform) == [("s", "Acme", "")]


def test_crmsync_customer_says_where_a_merged_id_went(
    deliver: Deliver, worker: SyncWorker, redis: Redis, redis_url: str
) -> None:
    deliver(event("created", external_id="s", at=T0, name="Acme"))
    deliver(merge("s", "m1"), webhook_id="msg_merge")
    run(worker)
    shown = CliRunner().invoke(main, ["customer", "m1"], env={"REDIS_URL": redis_url})
    assert shown.exit_code == 0, shown.output
    assert "  merged into  s by 2026-11-22T10:01:00.000000Z  msg_merge" in shown.output

"""Per-customer ordering: the ledger's verdicts, and reordered deliveries converging end to end."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from crmsync.cli.embedded_redis import start_embedded_redis
from crmsync.core.errors import ApiUnavailable, CustomerLocked
from crmsync.core.events import Event
from crmsync.core.keys import customer_lock_key
from jobs.ordering import CustomerLedgers, Ledger
from jobs.worker import SyncWorker
from tests.support import Deliver, Platform


def version(second: int, webhook_id: str = "w") -> str:
    return Event(webhook_id, "customer.updated", f"2026-11-22T10:00:{second:02d}+00:00", {}).version


def test_versions_order_by_time_then_webhook_id() -> None:
    assert version(1, "z") < version(2, "a")
    assert version(1, "a") < version(1, "b")
    # Offsets are normalised: the same instant written in two zones is the same version.
    other_zone = Event("w", "customer.updated", "2026-11-22T12:00:01+02:00", {}).version
    assert other_zone == version(1)


# Instants across the whole range the schema accepts, in time order; the 1960s once sorted backwards.
INSTANTS = [
    "0001-01-01T00:00:00.000000+00:00",
    "1000-06-15T12:00:00.000000+00:00",
    "1960-01-01T00:00:00.000000+00:00",
    "1960-01-01T00:00:00.000001+00:00",
    "1960-01-02T00:00:00.000000+00:00",
    "1969-12-31T23:59:59.999999+00:00",
    "1970-01-01T00:00:00.000000+00:00",
    "1970-01-01T00:00:00.000001+00:00",
    "2026-11-22T10:00:00.000000+00:00",
    "9999-12-31T23:59:59.999999+00:00",
]


def test_versions_order_as_time_over_the_whole_range_the_schema_accepts() -> None:
    versions = [Event("w", "customer.updated", instant, {}).version for instant in INSTANTS]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


@pytest.mark.parametrize("instant", INSTANTS[:6])
def test_before_1970_equal_times_are_still_decided_by_webhook_id(instant: str) -> None:
    assert (
        Event("a", "customer.updated", instant, {}).version
        < Event("b", "customer.updated", instant, {}).version
    )


def test_an_update_the_day_after_a_1960_create_is_applied() -> None:
    created = Event("w1", "customer.created", "1960-01-01T00:00:00.000000+00:00", {}).version
    updated = Event("w2", "customer.updated", "1960-01-02T00:00:00.000000+00:00", {}).version
    ledger = Ledger().after_write(created, {"name": "first"})
    assert ledger.fields_to_write(updated, {"name": "second"}) == {"name": "second"}


@given(st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=st.just(UTC)))
def test_version_order_is_time_order_for_any_two_instants(first: datetime, second: datetime) -> None:
    def version_at(moment: datetime) -> str:
        return Event("w", "customer.updated", moment.isoformat(timespec="microseconds"), {}).version

    assert (version_at(first) < version_at(second)) == (first < second)


def test_older_update_of_a_field_is_stale() -> None:
    ledger = Ledger().after_write(version(5), {"name": "new"})
    assert ledger.fields_to_write(version(3), {"name": "old"}) == {}


def test_older_event_still_writes_fields_no_newer_event_wrote() -> None:
    ledger = Ledger().after_write(version(5), {"name": "new"})
    assert ledger.fields_to_write(version(3), {"name": "old", "description": "d"}) == {"description": "d"}


def test_equal_timestamp_is_decided_by_webhook_id() -> None:
    ledger = Ledger().after_write(version(5, "b"), {"name": "from b"})
    assert ledger.fields_to_write(version(5, "a"), {"name": "from a"}) == {}
    assert ledger.fields_to_write(version(5, "c"), {"name": "from c"}) == {"name": "from c"}


def test_the_same_event_applied_again_is_stale() -> None:
    ledger = Ledger().after_write(version(5), {"name": "n"})
    assert ledger.fields_to_write(version(5), {"name": "n"}) == {}


def test_tombstone_stops_a_late_update() -> None:
    ledger = Ledger().after_write(version(1), {"name": "n"}).after_delete(version(5))
    assert ledger.fields_to_write(version(4), {"name": "late"}) == {}


def test_newer_create_after_a_delete_starts_a_new_life() -> None:
    ledger = Ledger().after_write(version(1), {"name": "n", "description": "d"}).after_delete(version(5))
    assert ledger.fields_to_write(version(6), {"name": "again"}) == {"name": "again"}


def test_delete_older_than_the_latest_write_is_stale() -> None:
    ledger = Ledger().after_write(version(5), {"name": "n"})
    assert not ledger.may_delete(version(4))
    assert ledger.may_delete(version(6))


def test_erasure_makes_older_events_stale() -> None:
    ledger = Ledger().after_erasure(version(5))
    assert ledger.fields_to_write(version(5), {"name": "n"}) == {}
    assert ledger.fields_to_write(version(6), {"name": "n"}) == {"name": "n"}


def test_ledger_round_trips_through_redis(redis: Redis) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.1)
    written = Ledger().after_write(version(2), {"name": "n", "labels": []}).after_erasure(version(1))
    with ledgers.locked("crm-1") as customer:
        ledgers.commit(customer, written)
    assert ledgers.read("crm-1") == written


def test_second_locker_waits_then_reports_contention(redis: Redis) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.05)
    with ledgers.locked("crm-1"):
        with pytest.raises(CustomerLocked) as busy:
            with ledgers.locked("crm-1"):
                pass
        assert str(busy.value) == "another worker is applying an event for this customer"
        assert busy.value.retry_after == 1
    with ledgers.locked("crm-1"):  # released after the block
        pass


def test_commit_after_losing_the_lock_is_refused(redis: Redis) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.05)
    with ledgers.locked("crm-1") as customer:
        redis.delete(*redis.keys("crmsync:lock:*"))  # as if the lock had expired
        with pytest.raises(CustomerLocked) as lost:
            ledgers.commit(customer, Ledger().after_write(version(1), {"name": "n"}))
        assert str(lost.value) == "customer lock expired before the ledger was written"
    assert ledgers.read("crm-1") == Ledger()


HISTORY: list[tuple[str, str, dict[str, Any]]] = [
    ("created", "2026-11-22T10:00:00Z", {"name": "Acme", "description": "first", "labels": ["a"]}),
    ("updated", "2026-11-22T10:01:00Z", {"labels": ["b"]}),
    ("updated", "2026-11-22T10:02:00Z", {"name": "Acme Corp"}),
    ("deleted", "2026-11-22T10:03:00Z", {}),
    ("created", "2026-11-22T10:04:00Z", {"name": "Acme Again", "labels": ["c"]}),
    ("updated", "2026-11-22T10:05:00Z", {"description": "last"}),
]


@pytest.mark.parametrize(
    "order", [list(p) for p in itertools.islice(itertools.permutations(range(6)), 0, 720, 97)]
)
def test_any_delivery_order_ends_in_the_state_of_the_latest_events(
    deliver: Deliver, worker: SyncWorker, platform: Platform, order: list[int]
) -> None:
    for index in order:
        kind, at, data = HISTORY[index]
        deliver({"type": f"customer.{kind}", "timestamp": at, "data": {"external_id": "crm-1", **data}})
    # An update that arrives before any create is retried (at the back of the queue, as the test's
    # retry schedule is immediate) and applies once the customer exists.
    worker.work(burst=True, with_scheduler=False)
    nodes = platform(
        '{ customers(externalId: "crm-1", isSystem: false) { nodes { name description labels } } }'
    )
    assert nodes["data"]["customers"]["nodes"] == [
        {"name": "Acme Again", "description": "last", "labels": ["c"]}
    ]


def test_failure_with_unknown_outcome_holds_the_customer_against_newer_writes(redis: Redis) -> None:
    from crmsync.core.errors import PayloadErrors

    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.05,
                              in_flight_hold_seconds=30)  # fmt: skip
    with pytest.raises(ApiUnavailable), ledgers.locked("crm-1"):
        raise ApiUnavailable("customers API unreachable: ReadTimeout")
    with pytest.raises(CustomerLocked) as held:
        with ledgers.locked("crm-1"):
            pass
    assert held.value.retry_after is not None and 25 < held.value.retry_after <= 30
    # A failure whose outcome is known (the API refused) frees the customer at once.
    with pytest.raises(PayloadErrors), ledgers.locked("crm-2"):
        raise PayloadErrors("createCustomer failed")
    with ledgers.locked("crm-2"):
        pass


def test_an_erasure_mark_outlives_the_ordinary_ledger(redis: Redis) -> None:
    from crmsync.core.keys import customer_state_key

    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.05,
                              erased_ledger_ttl_seconds=400 * 86_400)  # fmt: skip
    with ledgers.locked("crm-1") as customer:
        ledgers.commit(customer, Ledger().after_write(version(1), {"name": "n"}))
    assert redis.ttl(customer_state_key("crm-1")) <= 60
    with ledgers.locked("crm-1") as customer:
        ledgers.commit(customer, customer.ledger.after_erasure(version(2)))
    assert redis.ttl(customer_state_key("crm-1")) > 399 * 86_400


def test_a_tombstone_read_back_from_redis_stops_a_late_older_update(redis: Redis) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.1)
    with ledgers.locked("crm-1") as customer:
        ledgers.commit(customer, Ledger().after_write(version(1), {"name": "n"}))
    with ledgers.locked("crm-1") as customer:
        ledgers.commit(customer, customer.ledger.after_delete(version(5)))
    # The next event for the customer sees the delete as stored in Redis, not as kept in memory.
    with ledgers.locked("crm-1") as customer:
        assert customer.ledger == Ledger(deleted=version(5), latest=version(5))
        assert customer.ledger.fields_to_write(version(4), {"name": "late"}) == {}
    assert ledgers.read("crm-1") == Ledger(deleted=version(5), latest=version(5))


def test_every_part_of_the_ledger_round_trips_through_the_lock(redis: Redis) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.1)
    written = Ledger(fields={"name": version(3)}, deleted=version(2), erased=version(1), latest=version(3))
    with ledgers.locked("crm-1") as customer:
        ledgers.commit(customer, written)
    with ledgers.locked("crm-1") as customer:
        assert customer.ledger == written


def test_a_hold_shorter_than_the_lock_wait_is_waited_out(redis: Redis) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=5,
                              in_flight_hold_seconds=0.2)  # fmt: skip
    with pytest.raises(ApiUnavailable), ledgers.locked("crm-1"):
        raise ApiUnavailable("customers API unreachable: ReadTimeout")
    assert redis.get(customer_lock_key("crm-1")) == b"hold"
    with ledgers.locked("crm-1") as customer:  # waits the 0.2 s out instead of giving up
        assert redis.get(customer_lock_key("crm-1")) == customer.token.encode()


@pytest.mark.parametrize(
    "hold", [{"in_flight_hold_seconds": 0}, {}], ids=["IN_FLIGHT_HOLD_SECONDS=0", "default"]
)
def test_with_the_hold_disabled_an_unanswered_request_frees_the_customer_at_once(
    redis: Redis, hold: dict[str, Any]
) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0, **hold)
    with pytest.raises(ApiUnavailable), ledgers.locked("crm-1"):
        raise ApiUnavailable("customers API unreachable: ReadTimeout")
    assert redis.get(customer_lock_key("crm-1")) is None
    with ledgers.locked("crm-1"):
        pass


def test_an_event_at_exactly_the_tombstones_version_is_stale() -> None:
    ledger = Ledger().after_delete(version(5))
    assert ledger.fields_to_write(version(5), {"name": "n"}) == {}
    assert not ledger.may_delete(version(5))  # the same delete, redelivered


def test_a_ledger_is_a_value_that_cannot_change_in_place() -> None:
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        Ledger().deleted = version(1)  # type: ignore[misc]


def test_commit_hands_the_committed_ledger_back_and_frees_the_customer(redis: Redis) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0)
    written = Ledger().after_write(version(1), {"name": "n"})
    with ledgers.locked("crm-1") as customer:
        assert 4000 < redis.pttl(customer_lock_key("crm-1")) <= 5000  # lock_ttl_seconds, outside a job
        ledgers.commit(customer, written)
        assert customer.ledger == written
        assert redis.get(customer_lock_key("crm-1")) is None


def test_a_job_stopped_mid_request_holds_the_customer(redis: Redis) -> None:
    from rq.timeouts import JobTimeoutException

    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0,
                              in_flight_hold_seconds=30)  # fmt: skip
    with pytest.raises(JobTimeoutException), ledgers.locked("crm-1"):
        raise JobTimeoutException("stopped while the API call was in flight")
    assert redis.get(customer_lock_key("crm-1")) == b"hold"


def test_a_hold_longer_than_the_lock_wait_is_reported_at_once_with_its_end(redis: Redis) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.1,
                              in_flight_hold_seconds=0.5)  # fmt: skip
    with pytest.raises(ApiUnavailable), ledgers.locked("crm-1"):
        raise ApiUnavailable("customers API unreachable: ReadTimeout")
    with pytest.raises(CustomerLocked) as held:
        with ledgers.locked("crm-1"):
            pass
    assert str(held.value) == "the customer is held after an unanswered request"
    assert held.value.retry_after is not None and 0 < held.value.retry_after <= 0.5


def lock_ttl_inside_a_job(lock_ttl_seconds: int) -> int:
    """Run by an RQ worker: how long a customer lock taken inside this job lasts (ms)."""
    from rq import get_current_job

    job = get_current_job()
    assert job is not None
    ledgers = CustomerLedgers(job.connection, lock_ttl_seconds, ledger_ttl_seconds=60, wait_seconds=0)
    with ledgers.locked("crm-1"):
        return int(job.connection.pttl(customer_lock_key("crm-1")))


@pytest.mark.parametrize("job_timeout", [1, 30])
def test_a_lock_taken_inside_a_job_lasts_the_jobs_timeout_plus_five_seconds(
    redis: Redis, job_timeout: int
) -> None:
    queue = Queue("ordering-test", connection=redis, serializer=JSONSerializer)
    job = queue.enqueue(lock_ttl_inside_a_job, 120, job_timeout=job_timeout)
    SimpleWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    result = job.latest_result()
    assert result is not None
    assert (job_timeout + 4) * 1000 < int(result.return_value or 0) <= (job_timeout + 5) * 1000


def test_a_busy_customer_is_polled_with_backoff_not_in_a_busy_loop(redis: Redis) -> None:
    def lock_attempts() -> int:
        return int(redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.3)
    with ledgers.locked("crm-1"):
        before = lock_attempts()
        with pytest.raises(CustomerLocked), ledgers.locked("crm-1"):
            pass
        # 5 ms, 10 ms, 20 ms, ... 100 ms apart: about 8 attempts in 0.3 s, not thousands.
        assert lock_attempts() - before <= 15


def test_redis_going_away_inside_the_block_frees_the_customer_rather_than_holding_it(redis: Redis) -> None:
    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0,
                              in_flight_hold_seconds=30)  # fmt: skip
    # No request is in flight while Redis is called: nothing can land late.
    with pytest.raises(RedisConnectionError), ledgers.locked("crm-1"):
        raise RedisConnectionError("Connection closed by server.")
    assert redis.get(customer_lock_key("crm-1")) is None


@pytest.mark.parametrize(("failure", "left"), [(RedisConnectionError, None), (ApiUnavailable, b"hold")])
def test_a_lock_redis_was_away_to_settle_is_settled_once_it_is_back(
    failure: type[Exception], left: bytes | None
) -> None:
    server = start_embedded_redis(appendonly=True)
    client = Redis.from_url(server.url, retry=Retry(NoBackoff(), 0))
    try:
        ledgers = CustomerLedgers(client, lock_ttl_seconds=60, ledger_ttl_seconds=60, wait_seconds=0,
                                  in_flight_hold_seconds=30)  # fmt: skip
        with pytest.raises(failure), ledgers.locked("crm-1") as customer:
            server.process.kill()
            server.process.wait()
            if failure is RedisConnectionError:
                ledgers.commit(customer, Ledger())  # Redis goes away as the job records its write
            raise ApiUnavailable("customers API unreachable: ReadTimeout")
        restarted = start_embedded_redis(appendonly=True, port=server.port, directory=server.directory)
        server.process = restarted.process
        assert client.get(customer_lock_key("crm-1")) == customer.token.encode()  # as Redis left it
        ledgers.settle_after_outage()
        assert client.get(customer_lock_key("crm-1")) == left
        ledgers.settle_after_outage()  # settled once
        assert client.get(customer_lock_key("crm-1")) == left
    finally:
        client.close()
        server.stop()


def test_an_applied_event_frees_its_customer_in_the_commit_alone(redis: Redis) -> None:
    def scripts_run() -> int:
        return int(redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0)
    with ledgers.locked("crm-1") as customer:
        before = scripts_run()
        ledgers.commit(customer, Ledger().after_write(version(1), {"name": "n"}))
    assert scripts_run() - before == 1  # the commit deleted the lock: no release round trip after it
    assert redis.get(customer_lock_key("crm-1")) is None


def test_a_merge_records_every_ledger_and_alias_or_nothing(redis: Redis) -> None:
    from jobs.ordering import Alias

    ledgers = CustomerLedgers(redis, lock_ttl_seconds=5, ledger_ttl_seconds=60, wait_seconds=0.05)
    merged = Ledger().after_delete(version(5))
    survivor = Ledger(created=version(1)).after_write(version(1), {"name": "n"}, created=True)
    with ledgers.locked_all(["m", "s"]) as locked:
        redis.delete(customer_lock_key("s"))  # as if the survivor's lock had expired
        with pytest.raises(CustomerLocked):
            ledgers.commit_merge(locked.values(), {"m": merged, "s": survivor}, {"m": Alias("s", version(5))})
    assert (ledgers.read("m"), ledgers.read("s"), ledgers.read_alias("m")) == (Ledger(), Ledger(), None)
    with ledgers.locked_all(["s", "m"]) as locked:
        assert list(locked) == ["m", "s"]  # always taken in one order
        ledgers.commit_merge(locked.values(), {"m": merged, "s": survivor}, {"m": Alias("s", version(5))})
    assert (ledgers.read("m"), ledgers.read("s")) == (merged, survivor)
    assert ledgers.read_alias("m") == Alias("s", version(5))
    assert redis.get(customer_lock_key("m")) is None and redis.get(customer_lock_key("s")) is None
    with ledgers.locked("m") as customer:  # the alias comes back with the lock
        assert customer.alias == Alias("s", version(5))

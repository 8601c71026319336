"""One bad item never fails its batch (issue 27): whatever goes wrong while reading an item of a CRM's
request — a date out of datetime's range, an id the platform cannot store, a value of the wrong type —
rejects that item with its reason and accepts the rest, never a 5xx (which would make the CRM redeliver
the whole batch forever). Over real HTTP and Redis, with items shaped as each vendor documents them
(tests/support.py notes each origin); property-based per source, plus the probe's own repros."""

from __future__ import annotations

import itertools
import json
from typing import Any
from xml.sax.saxutils import escape

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from crmsync.core.settings import Settings
from crmsync.operations.source_items import rejected_counts, rejected_items
from crmsync.web import create_app
from tests.support import (
    SALESFORCE_ORG,
    SALESFORCE_TOKEN,
    SOURCES_ENV,
    basic_auth,
    hubspot_event,
    hubspot_signed_headers,
    pipedrive_body,
    salesforce_account,
    salesforce_message,
    served,
)
from webhooks.sources.items import (
    InboundRequest,
    InvalidItem,
    MappedEvent,
    RejectedItem,
    SourceBatch,
    item_isolation,
)
from webhooks.sources.salesforce import SalesforceSource

BATCHES = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Every example gets fresh ids: a good item is then always new (queued), never a duplicate.
_fresh = itertools.count(1)

# Times a datetime cannot hold once in UTC (the probe's repros), and text that is no time at all.
OUT_OF_RANGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
not_a_time = st.sampled_from(OUT_OF_RANGE_TIMES + ["", "yesterday", "2026-13-01T00:00:00Z", "²"])
# JSON values that are not what a field of a given kind holds.
not_an_int: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "7", "²", "1e3"]) | st.just([1]) | st.just({})
)  # fmt: skip
not_text: st.SearchStrategy[Any] = st.none() | st.booleans() | st.just([]) | st.just({"id": 1})
# External ids the platform can never store (crmsync/core/external_ids.py).
unstorable_ids = st.sampled_from(["a\nb", "a\x00b", "x" * 256, "x" * 10_000, "\x1b]0;PWNED\x07"])


def queued(redis: Redis) -> int:
    return int(Queue("crmsync", connection=redis, serializer=JSONSerializer).count)


def rejected(redis: Redis, source: str) -> int:
    return rejected_counts(redis).get(source, 0)


# -- HubSpot: a JSON array of up to 100 events -----------------------------------------------------

MS_PAST_YEAR_9999 = 253_402_300_800_000
hostile_hubspot_changes = st.one_of(
    st.fixed_dictionaries({"occurredAt": st.integers(MS_PAST_YEAR_9999, 10**30) | st.integers(max_value=-1)}),
    st.fixed_dictionaries({"occurredAt": not_an_int}),
    st.fixed_dictionaries({"objectId": not_an_int | st.integers(max_value=-1)}),
    st.fixed_dictionaries({"objectId": st.integers(10**255, 10**4000)}),  # 256 to 4,001 digits
    st.fixed_dictionaries({"eventId": not_an_int}),
    st.fixed_dictionaries({"portalId": not_an_int}),
    st.fixed_dictionaries({"propertyName": not_text | st.just("")}),
    st.fixed_dictionaries({"subscriptionType": not_text}),
)
hubspot_batches = st.lists(st.tuples(st.booleans(), hostile_hubspot_changes), min_size=1, max_size=30)


def hubspot_item(good: bool, changes: dict[str, Any]) -> dict[str, Any]:
    """A `company.propertyChange` of the name as HubSpot documents it, with `changes` when bad."""
    event = hubspot_event(eventId=next(_fresh), objectId=next(_fresh))
    return event if good else {**event, **changes}


@BATCHES
@given(hubspot_batches)
@example([(False, {"occurredAt": 300_000_000_000_000}), (True, {})])  # the probe's 3e14
@example([(False, {"occurredAt": 10**20}), (True, {})])  # and 1e20
def test_hubspot_rejects_each_hostile_event_alone(
    crm: str, redis: Redis, items: list[tuple[bool, dict[str, Any]]]
) -> None:
    url = f"{crm}/webhooks/hubspot"
    body = json.dumps([hubspot_item(good, changes) for good, changes in items]).encode()
    response = requests.post(url, data=body, headers=hubspot_signed_headers(url, body), timeout=30)
    assert response.status_code == 200, response.text
    good = sum(good for good, _ in items)
    answer = response.json()
    assert (answer["queued"], answer["duplicates"], answer["rejected"]) == (good, 0, len(items) - good)


@pytest.mark.parametrize("occurred_at", [300_000_000_000_000, 10**20])
def test_a_hubspot_event_occurring_past_year_9999_is_rejected_and_the_rest_lands(
    crm: str, redis: Redis, occurred_at: int
) -> None:
    url = f"{crm}/webhooks/hubspot"
    body = json.dumps([hubspot_event(eventId=1, occurredAt=occurred_at), hubspot_event(eventId=2)]).encode()
    response = requests.post(url, data=body, headers=hubspot_signed_headers(url, body), timeout=30)
    assert response.status_code == 200, response.text
    assert (response.json()["queued"], response.json()["rejected"]) == (1, 1)
    [item] = rejected_items(redis, 10)
    assert (item.reason, item.identifiers["eventId"]) == (
        "occurredAt is not a time between years 1 and 9999 in UTC",
        "1",
    )


# -- Salesforce: a SOAP Outbound Message of up to 100 notifications ---------------------------------

SALESFORCE_ACK = b"<Ack>true</Ack>"


def salesforce_item(good: bool, field: str, value: str) -> tuple[str, str]:
    """A notification of an Account (Salesforce's WSDL), with `field` set to `value` when bad."""
    record_id = f"001{next(_fresh):015d}"
    changes = {} if good else {field: escape(value)}
    return f"04l{next(_fresh):015d}", salesforce_account(record_id=record_id, **changes)


hostile_salesforce_fields = st.one_of(
    st.tuples(st.just("LastModifiedDate"), not_a_time),
    # XML 1.0 cannot carry NUL or ESC at all: these reach the mapping.
    st.tuples(st.just("Id"), st.sampled_from(["a\nb", "x" * 256, "x" * 10_000])),
)
salesforce_batches = st.lists(st.tuples(st.booleans(), hostile_salesforce_fields), min_size=1, max_size=30)


@BATCHES
@given(salesforce_batches)
@example([(False, ("LastModifiedDate", OUT_OF_RANGE_TIMES[0])), (True, ("Id", ""))])
@example([(False, ("LastModifiedDate", OUT_OF_RANGE_TIMES[1])), (True, ("Id", ""))])
def test_salesforce_rejects_each_hostile_notification_alone_and_acks_in_soap(
    crm: str, redis: Redis, items: list[tuple[bool, tuple[str, str]]]
) -> None:
    before = (queued(redis), rejected(redis, "salesforce"))
    notifications = [salesforce_item(good, *change) for good, change in items]
    response = requests.post(f"{crm}/webhooks/salesforce?token={SALESFORCE_TOKEN}",
                             data=salesforce_message(*notifications), timeout=30)  # fmt: skip
    assert response.status_code == 200 and SALESFORCE_ACK in response.content, response.text
    good = sum(good for good, _ in items)
    after = (queued(redis), rejected(redis, "salesforce"))
    assert (after[0] - before[0], after[1] - before[1]) == (good, len(items) - good)


# -- Pipedrive: one event a request ----------------------------------------------------------------

hostile_pipedrive = st.one_of(
    st.fixed_dictionaries({"timestamp": not_a_time | not_an_int}),  # a 10-digit int would be a time
    st.fixed_dictionaries({"id_of_record": not_text | st.just("") | unstorable_ids}),
)


def pipedrive_request(good: bool, change: dict[str, Any]) -> bytes:
    """A webhooks v2 `change` of an organization (Pipedrive's docs), with `change` when bad."""
    meta = {"id": f"evt-{next(_fresh)}"}
    data = {"id": next(_fresh), "name": "Orbital Freight"}
    if not good and "timestamp" in change:
        meta["timestamp"] = change["timestamp"]
    elif not good:
        data["id"] = change["id_of_record"]
    return pipedrive_body(data=data, **meta)


@BATCHES
@given(st.lists(st.tuples(st.booleans(), hostile_pipedrive), min_size=1, max_size=6))
@example([(False, {"timestamp": OUT_OF_RANGE_TIMES[0]}), (True, {})])
@example([(False, {"timestamp": OUT_OF_RANGE_TIMES[1]}), (True, {})])
def test_pipedrive_rejects_each_hostile_event_alone(
    crm: str, redis: Redis, events: list[tuple[bool, dict[str, Any]]]
) -> None:
    accepted = refused = 0
    for good, change in events:
        response = requests.post(f"{crm}/webhooks/pipedrive", data=pipedrive_request(good, change),
                                 headers={"authorization": basic_auth()}, timeout=30)  # fmt: skip
        assert response.status_code == 200, response.text
        accepted += response.json()["queued"] + response.json()["duplicates"]
        refused += response.json()["rejected"]
    good_events = sum(good for good, _ in events)
    assert (accepted, refused) == (good_events, len(events) - good_events)


# -- the boundary itself: an error no check foresaw -------------------------------------------------


def test_an_error_no_check_foresaw_rejects_its_item_alone_and_is_kept_for_the_log() -> None:
    batch = SourceBatch("hubspot")
    for index in range(3):
        with item_isolation(batch, lambda: {"index": str(index)}):  # noqa: B023 (called at once)
            _ = 1 // (index - 1)  # the second item fails as a bug would
            batch.events.append(MappedEvent(f"d{index}", {}))
    assert [event.delivery_id for event in batch.events] == ["d0", "d2"]
    assert batch.rejected == [RejectedItem("unreadable item (ZeroDivisionError)", {"index": "1"})]
    assert isinstance(batch.unexpected_error, ZeroDivisionError)


def test_an_item_whose_ids_cannot_be_read_is_still_rejected() -> None:
    batch, meta = SourceBatch("pipedrive"), dict[str, str]()
    with item_isolation(batch, lambda: {"id": meta["id"]}):
        raise InvalidItem("missing meta.id")
    assert batch.rejected == [RejectedItem("missing meta.id", {})]


def test_a_salesforce_request_failing_unforeseen_gets_a_soap_fault(sources_settings: Settings) -> None:
    """Salesforce reads only SOAP: even the app's last-resort 500 is a SOAP Server fault."""

    class Failing(SalesforceSource):
        def authenticate(self, request: InboundRequest) -> None:
            raise RuntimeError("a bug")

    app = create_app(sources_settings, environ=SOURCES_ENV)
    app.extensions["crmsync_sources"]["salesforce"] = Failing(SALESFORCE_TOKEN, [SALESFORCE_ORG], {})
    with served(app) as base:
        response = requests.post(f"{base}/webhooks/salesforce", data=b"<x/>", timeout=10)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/xml")
    assert b"<faultcode>soapenv:Server</faultcode>" in response.content


def test_a_rejected_items_ids_are_kept_cut_short(crm: str, redis: Redis) -> None:
    """A sender chooses its ids' length: what is kept of them for the operator is bounded."""
    long_id = "04l" + "9" * 10_000
    message = salesforce_message((long_id, ""), (long_id, salesforce_account(record_id="001" + "7" * 5000)))
    response = requests.post(f"{crm}/webhooks/salesforce?token={SALESFORCE_TOKEN}", data=message, timeout=30)
    assert response.status_code == 200, response.text
    kept = rejected_items(redis, 10)
    assert len(kept) == 2
    assert all(len(value) <= 64 for item in kept for value in item.identifiers.values())

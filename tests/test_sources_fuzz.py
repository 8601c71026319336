"""Property-based: whatever a CRM source is sent — signed or not, any bytes, any JSON, items with
anything anywhere — it never answers 5xx, and it queues exactly what its answer says it queued."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.support import (
    SALESFORCE_TOKEN,
    basic_auth,
    hubspot_event,
    hubspot_signed_headers,
    salesforce_message,
    salesforce_sobject,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

any_text = st.text(st.characters(codec="utf-8"), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
hubspot_keys = st.sampled_from(
    [
        "eventId",
        "subscriptionId",
        "portalId",
        "occurredAt",
        "subscriptionType",
        "objectId",
        "propertyName",
        "propertyValue",
        "primaryObjectId",
        "mergedObjectIds",
    ]
)
hubspot_types = st.sampled_from(["company.propertyChange", "company.creation", "company.deletion",
                                 "company.merge", "contact.creation"]) | any_text  # fmt: skip
hubspot_events = st.builds(
    lambda kind, changes: {**hubspot_event(subscriptionType=kind), **changes},
    hubspot_types,
    st.dictionaries(hubspot_keys, json_values | st.integers(0, 2**40), max_size=3),
)
hubspot_bodies = (
    st.lists(hubspot_events, max_size=5).map(lambda events: json.dumps(events).encode())
    | st.builds(lambda value: json.dumps(value).encode(), json_values)
    | st.binary(max_size=64)
)
xml_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
salesforce_fields = st.dictionaries(
    st.sampled_from(["Id", "LastModifiedDate", "Name", "Description", "IsDeleted", "Industry"]),
    xml_text.map(lambda text: text.replace("&", "&amp;").replace("<", "&lt;")) | st.just("nil"),
)
salesforce_bodies = st.lists(
    st.tuples(xml_text.filter(lambda t: t.isalnum()) | st.just("04l1"),
              st.builds(salesforce_sobject, st.sampled_from(["Account", "Contact"]), salesforce_fields)),
    max_size=4,
).map(lambda items: salesforce_message(*items)) | st.binary(max_size=64)  # fmt: skip
pipedrive_bodies = st.builds(
    lambda meta, data, previous: json.dumps({"meta": meta, "data": data, "previous": previous}).encode(),
    st.fixed_dictionaries({"action": st.sampled_from(["create", "change", "delete"]) | any_text,
                           "entity": st.sampled_from(["organization", "person"]) | any_text},
                          optional={"id": json_values, "timestamp": json_values | st.just("1795599000"),
                                    "entity_id": json_values}),
    json_values | st.fixed_dictionaries({"id": json_values}, optional={"name": json_values}),
    json_values,
) | st.binary(max_size=64)  # fmt: skip


def queued(redis: Redis) -> int:
    return int(Queue("crmsync", connection=redis, serializer=JSONSerializer).count)


def send(crm: str, name: str, body: bytes, signed: bool) -> requests.Response:
    url = f"{crm}/webhooks/{name}"
    if name == "hubspot":
        headers = hubspot_signed_headers(url, body) if signed and _utf8(body) else {}
        return requests.post(url, data=body, headers=headers, timeout=30)
    if name == "salesforce":
        return requests.post(f"{url}?token={SALESFORCE_TOKEN if signed else 'x'}", data=body, timeout=30)
    return requests.post(
        url, data=body, headers={"authorization": basic_auth()} if signed else {}, timeout=30
    )


def _utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize(
    ("name", "bodies"),
    [("hubspot", hubspot_bodies), ("salesforce", salesforce_bodies), ("pipedrive", pipedrive_bodies)],
    ids=["hubspot", "salesforce", "pipedrive"],
)
def test_no_crm_input_gets_a_5xx_and_only_what_is_acknowledged_is_queued(
    sources_server: str, redis_url: str, name: str, bodies: st.SearchStrategy[bytes]
) -> None:
    redis = Redis.from_url(redis_url)

    @FUZZ
    @given(body=bodies, signed=st.booleans())
    def check(body: bytes, signed: bool) -> None:
        redis.flushdb()  # each example from nothing, as in test_fuzz.py (an erasure shrinks the queue)
        before = queued(redis)
        response = send(sources_server, name, body, signed)
        assert response.status_code < 500, response.text
        added = queued(redis) - before
        if name == "salesforce":
            assert response.headers["content-type"].startswith("text/xml")
            assert response.status_code in (200, 400, 401)
            assert added <= (body.count(b"<Notification>") if response.status_code == 200 else 0)
        else:
            answer: dict[str, Any] = response.json()
            assert added == (answer["queued"] if response.status_code == 200 else 0)

    try:
        check()
    finally:
        redis.close()

"""Property-based: arbitrary bytes, headers and JSON thrown at every webhook endpoint never get a 5xx,
and nothing is enqueued unless the answer says so (202).

Half the examples are signed correctly, so that they get past the signature to the body, JSON and
schema checks; the rest fuzz the signature headers themselves. 200 examples per endpoint, no
deadline (one real HTTP request each), no example database (nothing written into the repository).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from crmsync.core.events import EVENT_TYPES
from tests.support import SECRET, signature_headers

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def standard_webhooks(body: bytes, webhook_id: str) -> dict[str, str]:
    return signature_headers(SECRET, webhook_id, int(time.time()), body)


Signer = Callable[[bytes, str], dict[str, str]]
# Every webhook endpoint with the way its sender signs a delivery: a new source is one line here.
WEBHOOK_ENDPOINTS: list[tuple[str, Signer]] = [
    ("/webhooks/crm", standard_webhooks),
]

# Any character, lone surrogates included (JSON escapes them as "\ud800"), and the strings that broke before.
any_text = st.text(st.characters(exclude_categories=()), max_size=20) | st.sampled_from(
    ["", "\ud800", "a\udfff"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
# Any offset a timestamp may carry, at any instant Python can hold (years 1 to 9999, as written).
timestamps = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(min_value=datetime.min, max_value=datetime.max),
    st.integers(-14 * 60, 14 * 60),
) | st.sampled_from(["2026-11-22T10:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
labels = st.lists(any_text, max_size=3)
purchase_ids = st.lists(st.integers(min_value=-1, max_value=2**40) | st.integers(), max_size=3)


def contract_event(
    event_type: str, required: dict[str, Any], optional: dict[str, Any]
) -> st.SearchStrategy[Any]:
    """Events of `event_type` that the contract would mostly accept, with any text and any time."""
    data = st.fixed_dictionaries({"external_id": any_text, **required}, optional=optional)
    return st.fixed_dictionaries({"type": st.just(event_type), "timestamp": timestamps, "data": data})


contract_events = st.one_of(
    contract_event("customer.created", {"name": any_text}, {"description": any_text, "labels": labels}),
    contract_event("customer.updated", {}, {"name": any_text, "description": any_text, "labels": labels}),
    contract_event("customer.deleted", {}, {}),
    contract_event("customer.erasure_requested", {"purchase_ids": purchase_ids}, {}),
)
# Events with anything anywhere.
wild_events = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES) | any_text, "timestamp": timestamps | json_values,
     "data": st.dictionaries(any_text, json_values, max_size=4) | json_values},
    optional={"extra": json_values},
)  # fmt: skip
bodies = st.one_of(
    st.binary(max_size=512),
    st.builds(
        lambda value, ascii: json.dumps(value, ensure_ascii=ascii).encode("utf-8", "surrogatepass"),
        json_values | wild_events | contract_events,
        st.booleans(),
    ),  # fmt: skip
    contract_events.map(lambda event: json.dumps(event).encode()),
)
# Header values requests can send: Latin-1 without control characters or outer whitespace.
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                        max_size=40).map(str.strip)  # fmt: skip
headers = st.dictionaries(
    st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "content-encoding"]),
    header_values,
)
content_types = st.just("application/json") | st.just("application/json; charset=utf-8") | header_values


def queued(redis: Redis) -> int:
    return int(Queue("crmsync", connection=redis, serializer=JSONSerializer).count)


@pytest.mark.parametrize(("path", "signer"), WEBHOOK_ENDPOINTS, ids=[path for path, _ in WEBHOOK_ENDPOINTS])
@FUZZ
@given(body=bodies, given_headers=headers, signed=st.booleans(), content_type=content_types,
       webhook_id=header_values.filter(bool))  # fmt: skip
def test_no_webhook_input_gets_a_5xx_or_enqueues_unless_accepted(
    web_server: str,
    redis_url: str,
    path: str,
    signer: Signer,
    body: bytes,
    given_headers: dict[str, str],
    signed: bool,
    content_type: str,
    webhook_id: str,
) -> None:
    sent: dict[str, Any] = {"content-type": content_type, **given_headers}
    if signed:
        sent.update(signer(body, webhook_id))
    redis = Redis.from_url(redis_url)
    try:
        # Each example starts from nothing: an accepted erasure cancels its customer's queued jobs (GDPR
        # scrub), so a queue left over from an earlier example with the same external id would shrink.
        redis.flushdb()
        before = queued(redis)
        response = requests.post(f"{web_server}{path}", data=body, headers=sent, timeout=30)
        after = queued(redis)
    finally:
        redis.close()
    event(f"answered {response.status_code}")  # --hypothesis-show-statistics: how far examples got
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert after == before + (1 if response.status_code == 202 else 0)
    if response.status_code >= 400:
        assert set(response.json()) >= {"error", "message"}

"""The dashboard refuses malformed input with a 400 in the one JSON error shape, never a 500: time
filters beyond the calendar, JSON API bodies that break their schema, and arbitrary input (Hypothesis)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from tests.support import AUTH

# Each parses as a time ago or a moment, and lands outside what a datetime can hold.
BEYOND_THE_CALENDAR = ["999999999d", "99999999999999999999h", "9" * 5_000 + "m"]


def csrf_headers(dashboard: str) -> dict[str, str]:
    response = requests.get(f"{dashboard}/api/csrf-token", auth=AUTH, timeout=5)
    return {"X-CSRF-Token": response.json()["csrf_token"]}


def assert_invalid_filter(response: requests.Response, name: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_filter"
    assert name in response.json()["message"]


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", BEYOND_THE_CALENDAR, ids=["days", "hours", "5000-digits"])
def test_a_time_filter_beyond_the_calendar_is_a_400_naming_it(
    dashboard: str, redis: Redis, name: str, value: str
) -> None:
    listed = requests.get(f"{dashboard}/api/failed", params={name: value}, auth=AUTH, timeout=5)
    assert_invalid_filter(listed, name)
    replay = requests.post(f"{dashboard}/api/replay", json={"all_matching": True, "filter": {name: value}},
                           headers=csrf_headers(dashboard), auth=AUTH, timeout=5)  # fmt: skip
    assert_invalid_filter(replay, name)
    # The pages: the list, the replay-all confirmation, and the replay-all form itself.
    for path in ("/failed", "/failed/replay-matching"):
        page = requests.get(f"{dashboard}{path}", params={name: value}, auth=AUTH, timeout=5)
        assert page.status_code == 400 and f"{name}: use a time" in page.text
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', requests.get(f"{dashboard}/failed", auth=AUTH).text
    )
    assert token
    form = {"all_matching": "1", name: value, "csrf_token": token.group(1)}
    posted = requests.post(f"{dashboard}/failed/replay", data=form, auth=AUTH, timeout=5,
                           headers={"Origin": dashboard.removesuffix("/dashboard")})  # fmt: skip
    assert_invalid_filter(posted, name)
    assert redis.llen("rq:queue:crmsync") == 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/replay", {"all_matching": True, "filter": "x"}, "filter"),
        ("/api/replay", {"all_matching": True, "filter": [1]}, "filter"),
        ("/api/replay", {"all_matching": True, "filter": {"since": 5}}, "filter"),
        ("/api/replay", {"all_matching": True, "filter": {"type": ["a"]}}, "filter"),
        ("/api/replay", {"all_matching": True, "filter": {"colour": "red"}}, "filter"),
        ("/api/replay", {"all_matching": "yes"}, "all_matching"),
        ("/api/replay", {"job_ids": "evt_1"}, "job_ids"),
        ("/api/replay", {"job_ids": [1]}, "job_ids"),
        ("/api/replay", {"job_ids": ["evt_1"], "all_matching": True}, "_schema"),
        ("/api/replay", {}, "_schema"),
        ("/api/replay", [1], "_schema"),
        ("/api/discard", {"job_ids": [1], "reason": "r"}, "job_ids"),
        ("/api/discard", {"job_ids": ["evt_1"], "reason": ["r"]}, "reason"),
        ("/api/discard", {"reason": "r"}, "job_ids"),
        ("/api/discard", "evt_1", "_schema"),
    ],
)
def test_an_api_body_that_breaks_its_schema_is_a_400_naming_the_field(
    dashboard: str, redis: Redis, path: str, body: Any, field: str
) -> None:
    response = requests.post(
        f"{dashboard}{path}", json=body, headers=csrf_headers(dashboard), auth=AUTH, timeout=5
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["errors"]
    assert redis.llen("rq:queue:crmsync") == 0


# Any text, lone surrogates included; JSON of any shape.
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
moments = st.sampled_from(
    BEYOND_THE_CALENDAR + ["2h", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text | moments,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text | moments, inner, max_size=3),
    max_leaves=10,
)
# Query strings requests can send (it percent-encodes what it must).
query_values = st.text(st.characters(codec="utf-8"), max_size=20) | moments | st.integers().map(str)
queries = st.dictionaries(
    st.sampled_from(["since", "until", "type", "failure_class", "external_id", "page", "per_page", "status"]),
    query_values,
)
filters = st.fixed_dictionaries(
    {}, optional={name: query_values | json_values for name in ("since", "until", "type", "external_id")}
)
replay_bodies = st.fixed_dictionaries(
    {}, optional={"all_matching": st.booleans() | json_values, "filter": filters | json_values,
                  "job_ids": st.lists(any_text, max_size=3) | json_values, "reason": any_text | json_values},
) | json_values  # fmt: skip


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(
    query=queries,
    body=replay_bodies,
    get_path=st.sampled_from(
        [
            "/api/failed",
            "/api/erasures",
            "/api/replays",
            "/api/overview",
            "/api/customer",
            "/api/activity",
            "/api/reconcile",
            "/failed",
        ]
    ),
    post_path=st.sampled_from(["/api/replay", "/api/discard"]),
)
def test_no_dashboard_api_input_gets_a_5xx(
    dashboard: str, redis: Redis, query: dict[str, str], body: Any, get_path: str, post_path: str
) -> None:
    # Nothing has failed, so nothing can be replayed: nothing is ever enqueued.
    got = requests.get(f"{dashboard}{get_path}", params=query, auth=AUTH, timeout=10)
    assert got.status_code < 500, got.text
    # Sent as json.dumps writes it: Infinity and escaped lone surrogates included.
    headers = {**csrf_headers(dashboard), "Content-Type": "application/json"}
    posted = requests.post(
        f"{dashboard}{post_path}", data=json.dumps(body), headers=headers, auth=AUTH, timeout=10
    )
    assert posted.status_code < 500, posted.text
    if posted.status_code >= 400:
        assert set(posted.json()) >= {"error", "message"}
    assert redis.llen("rq:queue:crmsync") == 0

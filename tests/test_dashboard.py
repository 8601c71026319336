"""The dashboard over real HTTP: Basic auth, CSRF, no customer data, and the JSON API."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import requests
from redis import Redis

from crmsync.core.settings import Settings
from crmsync.web.dashboard.csrf import TOKEN_LIFETIME_SECONDS, issue_token, same_origin, token_is_valid
from tests.support import AUTH, DASHBOARD_PASSWORD, DASHBOARD_USER, Deliver, event, fail, work

NAME, DESCRIPTION, LABEL = "Mars Missions", "Mars Missions Corp", "Interplanetary"


def csrf_token(dashboard: str) -> str:
    response = requests.get(f"{dashboard}/api/csrf-token", auth=AUTH, timeout=5)
    return str(response.json()["csrf_token"])


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def test_the_dashboard_is_off_without_a_password(web_server: str) -> None:
    response = requests.get(f"{web_server}/dashboard/", auth=AUTH, timeout=5)
    assert response.status_code == 404


def test_the_dashboard_asks_for_basic_credentials(dashboard: str) -> None:
    response = requests.get(f"{dashboard}/", timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize(
    "credentials", [(DASHBOARD_USER, "wrong-password"), ("someone", DASHBOARD_PASSWORD), ("", "")]
)
def test_wrong_credentials_are_refused(dashboard: str, credentials: tuple[str, str]) -> None:
    assert requests.get(f"{dashboard}/", auth=credentials, timeout=5).status_code == 401


def test_pages_carry_the_security_headers(dashboard: str) -> None:
    response = requests.get(f"{dashboard}/", auth=AUTH, timeout=5)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_the_overview_counts_the_queue_and_the_last_hours_webhooks(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    fail(deliver, settings, redis, event("created", "crm-0", name="A"))
    deliver(event("created", "crm-1", name="B"), webhook_id="msg_1")
    deliver(event("created", "crm-1", name="B"), webhook_id="msg_1")
    deliver(event("created", "crm-2", name="C"), secret=b"not-the-secret-0123456789abcdef0")
    overview = requests.get(f"{dashboard}/api/overview", auth=AUTH, timeout=5).json()
    assert (overview["queued"], overview["failed"], overview["scheduled"]) == (1, 1, 0)
    assert overview["webhooks_last_hour"] == {"accepted": 2, "duplicate": 1, "rejected": 1}
    assert overview["oldest_queued_age_seconds"] >= 0
    page = requests.get(f"{dashboard}/", auth=AUTH, timeout=5).text
    assert '<span class="figure" id="failed">1</span>' in page
    assert '<span class="figure" id="duplicate">1</span>' in page


def test_the_failed_page_shows_identifiers_and_the_failure_but_no_customer_data(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    (job_id,) = fail(
        deliver,
        settings,
        redis,
        event("created", "crm-7", name=NAME, description=DESCRIPTION, labels=[LABEL]),
    )
    for url in (f"{dashboard}/failed", f"{dashboard}/jobs/{job_id}", f"{dashboard}/api/failed"):
        body = requests.get(url, auth=AUTH, timeout=5).text
        assert "crm-7" in body and "api_rejected" in body and "HTTP 401" in body
        for personal in (NAME, DESCRIPTION, LABEL, LABEL.lower()):
            assert personal not in body, url


def test_the_api_filters_and_pages_failed_jobs(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    fail(
        deliver,
        settings,
        redis,
        *(event("deleted", f"crm-{n}") for n in range(3)),
        event("created", name="A"),
    )
    answer = requests.get(
        f"{dashboard}/api/failed", params={"type": "customer.deleted", "per_page": "2"}, auth=AUTH, timeout=5
    ).json()
    assert (answer["total"], answer["pages"], len(answer["items"])) == (3, 2, 2)
    assert {item["type"] for item in answer["items"]} == {"customer.deleted"}


def test_a_malformed_time_filter_is_a_400_naming_it(dashboard: str, redis: Redis) -> None:
    response = requests.get(f"{dashboard}/api/failed", params={"since": "yesterday"}, auth=AUTH, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_filter" and "since" in response.json()["message"]


def test_an_api_post_without_the_csrf_token_is_refused(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    response = requests.post(f"{dashboard}/api/replay", json={"job_ids": [job_id]}, auth=AUTH, timeout=5)
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_token_invalid"
    assert redis.llen("rq:queue:crmsync") == 0


def test_a_form_post_from_another_site_is_refused(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    response = requests.post(
        f"{dashboard}/failed/replay",
        data={"job_id": job_id, "csrf_token": csrf_token(dashboard)},
        headers={"Origin": "https://evil.example"},
        auth=AUTH,
        timeout=5,
    )
    assert response.status_code == 403 and response.json()["error"] == "cross_origin"
    assert redis.llen("rq:queue:crmsync") == 0


def test_state_changes_only_by_post(dashboard: str, redis: Redis) -> None:
    for path in ("/failed/replay", "/failed/discard", "/api/replay", "/api/discard"):
        assert requests.get(f"{dashboard}{path}", auth=AUTH, timeout=5).status_code == 405


def test_replaying_through_the_page_requeues_the_job_and_reports_it(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    page = requests.get(f"{dashboard}/failed", auth=AUTH, timeout=5)
    response = requests.post(
        f"{dashboard}/failed/replay",
        data={"job_id": job_id, "csrf_token": form_token(page.text)},
        headers={"Origin": dashboard.removesuffix("/dashboard")},
        auth=AUTH,
        timeout=5,
    )
    assert response.history[0].status_code == 303
    assert '<p class="notice" id="notice-replayed">1 replayed</p>' in response.text
    work(settings, redis)
    replays = requests.get(f"{dashboard}/api/replays", auth=AUTH, timeout=5).json()["items"]
    assert [(r["job_id"], r["status"], r["outcome"]) for r in replays] == [(job_id, "finished", "applied")]


def test_replay_all_matching_through_the_api(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    fail(
        deliver,
        settings,
        redis,
        event("deleted", "crm-1"),
        event("deleted", "crm-2"),
        event("created", name="A"),
    )
    response = requests.post(
        f"{dashboard}/api/replay",
        json={"all_matching": True, "filter": {"type": "customer.deleted", "since": "1h"}},
        headers={"X-CSRF-Token": csrf_token(dashboard)},
        auth=AUTH,
        timeout=5,
    )
    assert [result["status"] for result in response.json()["results"]] == ["replayed", "replayed"]
    assert redis.llen("rq:queue:crmsync") == 2


def test_a_discard_through_the_api_needs_a_reason(
    dashboard: str, deliver: Deliver, settings: Settings, redis: Redis
) -> None:
    (job_id,) = fail(deliver, settings, redis, event("created", name=NAME))
    headers = {"X-CSRF-Token": csrf_token(dashboard)}
    refused = requests.post(
        f"{dashboard}/api/discard", json={"job_ids": [job_id]}, headers=headers, auth=AUTH
    )
    assert refused.status_code == 400 and refused.json()["error"] == "reason_required"
    done = requests.post(
        f"{dashboard}/api/discard",
        json={"job_ids": [job_id], "reason": "test data"},
        headers=headers,
        auth=AUTH,
    )
    assert done.json() == {"results": [{"job_id": job_id, "status": "discarded"}]}
    assert "test data" in requests.get(f"{dashboard}/discarded", auth=AUTH, timeout=5).text


def test_a_csrf_token_is_bound_to_its_user_and_expires(settings: Settings) -> None:
    configured = replace(settings, dashboard_password=DASHBOARD_PASSWORD)
    token = issue_token(configured, "operator", now=1_000_000)
    assert token_is_valid(configured, "operator", token, now=1_000_000 + 60)
    assert not token_is_valid(configured, "someone-else", token, now=1_000_000 + 60)
    assert not token_is_valid(configured, "operator", token, now=1_000_000 + TOKEN_LIFETIME_SECONDS + 1)
    assert not token_is_valid(replace(configured, dashboard_password="another-password"), "operator", token)
    assert not token_is_valid(configured, "operator", "1000000.forged", now=1_000_000)


@pytest.mark.parametrize(
    ("origin", "referer", "allowed"),
    [
        ("http://127.0.0.1:5000", None, True),
        (None, "http://127.0.0.1:5000/dashboard/failed", True),
        (None, None, True),
        ("https://evil.example", None, False),
        (None, "http://127.0.0.1:6000/", False),
        ("null", None, False),
    ],
)
def test_same_origin(origin: str | None, referer: str | None, allowed: bool) -> None:
    assert same_origin("http://127.0.0.1:5000/", origin, referer) is allowed

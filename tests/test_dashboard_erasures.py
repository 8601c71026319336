"""The dashboard's Erasures page and API over real HTTP: every erasure in the audit trail, failed and
overdue ones flagged (a CSS class and a text marker), a status filter, and no personal data."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import requests
from redis import Redis

from jobs.worker import SyncWorker
from sandbox import RunningSandbox
from tests.support import AUTH, P1, P2, P3, PERSONAL, Deliver, make_erasures_of_every_kind

EVERY_KIND = {"msg_pending", "msg_failed", "msg_completed", "msg_overdue"}


def page_rows(html: str) -> dict[str, tuple[set[str], str]]:
    """Each row of the erasures table by webhook id: its CSS classes and its text."""
    return {
        match[1]: (set(match[2].split()), " ".join(re.sub(r"<[^>]+>", " ", match[3]).split()))
        for match in re.finditer(r'<tr data-webhook-id="([^"]+)" class="([^"]*)">(.*?)</tr>', html, re.S)
    }


def get(url: str, **params: str) -> requests.Response:
    return requests.get(url, params=params, auth=AUTH, timeout=5)


@pytest.fixture
def erasures(
    dashboard: str, deliver: Deliver, worker: SyncWorker, sandbox: RunningSandbox, redis: Redis
) -> str:
    """The dashboard's base URL, with an overdue, a completed, a failed and a pending erasure audited."""
    make_erasures_of_every_kind(deliver, worker, sandbox, redis)
    return dashboard


def test_the_erasures_page_needs_the_dashboards_credentials(dashboard: str) -> None:
    assert requests.get(f"{dashboard}/erasures", timeout=5).status_code == 401
    assert requests.get(f"{dashboard}/api/erasures", timeout=5).status_code == 401
    assert (
        requests.get(f"{dashboard}/erasures", auth=(AUTH[0], "wrong-password"), timeout=5).status_code == 401
    )


def test_the_erasures_page_lists_each_erasure_and_flags_the_failed_and_overdue_ones(erasures: str) -> None:
    response = get(f"{erasures}/erasures")

    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert 'href="/dashboard/erasures" aria-current="page">Erasures</a>' in response.text
    rows = page_rows(response.text)
    assert set(rows) == EVERY_KIND
    assert (list(rows)[0], list(rows)[-1]) == ("msg_pending", "msg_overdue")  # newest first
    (failed_classes, failed), (overdue_classes, overdue) = rows["msg_failed"], rows["msg_overdue"]
    assert {"needs-action", "failed"} <= failed_classes and "overdue" not in failed_classes
    assert {"needs-action", "overdue", "pending"} <= overdue_classes
    assert "⚠ failed" in failed and "⚠ overdue" not in failed
    # The failed erasure's job is one click away: the failed jobs of that type and customer.
    assert 'href="/dashboard/failed?type=customer.erasure_requested&amp;external_id=crm-2"' in response.text
    assert "⚠ overdue" in overdue and "pending" in overdue
    for in_time in ("msg_completed", "msg_pending"):
        classes, text = rows[in_time]
        assert "needs-action" not in classes and "⚠" not in text, in_time
    # Identifiers, per-purchase outcomes, times and the API's message; nothing else.
    assert f"crm-2 {P3} erased 999 not_found" in failed and "Purchase 999 not found" in failed
    assert f"msg_completed crm-1 {P1} erased" in rows["msg_completed"][1]
    assert f"crm-3 {P2} not tried" in overdue
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows["msg_completed"][1])) == 3
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", failed)) == 2  # received, deadline
    for personal in PERSONAL:
        assert personal not in response.text, personal


def test_the_erasures_api_returns_the_same_erasures_and_the_counts(erasures: str) -> None:
    response = get(f"{erasures}/api/erasures")

    assert response.status_code == 200
    answer = response.json()
    items = {item["webhook_id"]: item for item in answer["items"]}
    assert [item["webhook_id"] for item in answer["items"]] == list(
        page_rows(get(f"{erasures}/erasures").text)
    )
    assert {name: (item["status"], item["overdue"]) for name, item in items.items()} == {
        "msg_pending": ("pending", False),
        "msg_completed": ("completed", False),
        "msg_failed": ("failed", False),
        "msg_overdue": ("pending", True),
    }
    assert answer["counts"] == {"pending": 2, "completed": 1, "failed": 1, "overdue": 1}
    assert answer["deadline_days"] == 30
    failed, completed = items["msg_failed"], items["msg_completed"]
    assert (failed["external_id"], failed["purchase_ids"], failed["purchases"]) == (
        "crm-2",
        [P3, 999],
        {str(P3): "erased", "999": "not_found"},
    )
    assert failed["completed_at"] is None and "Purchase 999 not found" in failed["failure"]
    assert completed["completed_at"] >= completed["received_at"]
    assert items["msg_overdue"]["deadline"] < datetime.now(UTC).isoformat()
    for personal in PERSONAL:
        assert personal not in response.text, personal


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ("overdue", {"msg_overdue"}),
        ("failed", {"msg_failed"}),
        ("pending", {"msg_pending", "msg_overdue"}),
        ("completed", {"msg_completed"}),
        ("", EVERY_KIND),
    ],
)
def test_the_status_filter_shows_only_the_matching_erasures(
    erasures: str, status: str, shown: set[str]
) -> None:
    page = get(f"{erasures}/erasures", status=status).text
    api = get(f"{erasures}/api/erasures", status=status).json()

    assert set(page_rows(page)) == shown
    assert {item["webhook_id"] for item in api["items"]} == shown
    assert api["counts"]["pending"] == 2  # the counts are of every erasure, whatever the filter
    if status:
        assert f'<option value="{status}" selected>' in page


def test_an_unknown_status_filter_is_a_400_naming_it(dashboard: str, redis: Redis) -> None:
    page, api = get(f"{dashboard}/erasures", status="lost"), get(f"{dashboard}/api/erasures", status="lost")

    assert page.status_code == 400 and "status: use one of pending, completed, failed, overdue" in page.text
    assert api.status_code == 400 and api.json()["error"] == "invalid_filter"
    assert "status" in api.json()["message"]


def test_no_erasures_yet_says_so(dashboard: str, redis: Redis) -> None:
    page = get(f"{dashboard}/erasures").text
    assert "No erasures." in page
    assert get(f"{dashboard}/api/erasures").json()["counts"] == dict.fromkeys(
        ("pending", "completed", "failed", "overdue"), 0
    )

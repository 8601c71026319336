"""Deterministic faults: one API throttled for a window, and mutations refused with echoing errors."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import RunningSandbox
from sandbox.faults import ThrottleWindow
from tests.sandbox.sandbox_documents import CREATE_CUSTOMER, UPDATE_CUSTOMER
from tests.sandbox.sandbox_testkit import ApiClient

COUNT_QUERY = {"query": "{ customers { totalCount } }"}
PURCHASE_QUERY = {"query": "{ purchase(id: 1) { id } }"}


def test_a_throttled_api_answers_429_for_the_next_requests_only(
    admin_api: ApiClient, customers_api: ApiClient, personal_data_api: ApiClient
) -> None:
    response = admin_api.request("PUT", "/faults/throttle/customers", json={"requests": 2, "retry_after": 3})
    assert response.json() == {"api": "customers", "requests": 2, "retry_after": 3}

    answers = [customers_api.request("POST", json=COUNT_QUERY) for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 429, 200]
    assert [a.headers.get("Retry-After") for a in answers] == ["3", "3", None]
    # The other API is not affected.
    assert personal_data_api.request("POST", json=PURCHASE_QUERY).status_code == 200
    assert admin_api.request("GET", "/stats").json()["faults"]["throttle"] == 2


def test_a_time_window_tells_the_client_how_long_is_left(
    admin_api: ApiClient, customers_api: ApiClient, personal_data_api: ApiClient
) -> None:
    admin_api.request("PUT", "/faults/throttle/personal-data", json={"seconds": 30})

    response = personal_data_api.request("POST", json=PURCHASE_QUERY)

    assert response.status_code == 429
    assert response.json() == {"error": {"status": 429, "message": "Too many requests."}}
    assert 29 <= int(response.headers["Retry-After"]) <= 30
    assert customers_api.request("POST", json=COUNT_QUERY).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("DELETE", "/faults/throttle/customers", None), ("PUT", "/faults", {}), ("POST", "/reset", None)],
)
def test_a_throttle_window_can_be_ended_early(
    admin_api: ApiClient, customers_api: ApiClient, method: str, path: str, body: Any
) -> None:
    admin_api.request("PUT", "/faults/throttle/customers", json={"seconds": 30})

    assert admin_api.request(method, path, json=body).status_code == 200

    assert customers_api.request("POST", json=COUNT_QUERY).status_code == 200


def test_a_window_ends_at_its_deadline() -> None:
    window = ThrottleWindow(until=100.0)

    assert window.take(now=98.2, default_retry_after=1) == 2
    assert window.take(now=99.99, default_retry_after=1) == 1
    assert window.take(now=100.0, default_retry_after=1) is None


@pytest.mark.parametrize(
    "body",
    [{}, {"seconds": 1, "requests": 1}, {"seconds": -1}, {"requests": 1.5}, {"requests": True},
     {"seconds": "1"}, {"requests": 1, "retry_after": -1}, {"requests": 1, "extra": 1}, [1]],
)  # fmt: skip
def test_a_malformed_throttle_window_is_refused(admin_api: ApiClient, body: Any) -> None:
    assert admin_api.request("PUT", "/faults/throttle/customers", json=body).status_code == 400


def test_an_unknown_api_cannot_be_throttled(admin_api: ApiClient) -> None:
    assert admin_api.request("PUT", "/faults/throttle/billing", json={"seconds": 1}).status_code == 404


def test_rejected_mutations_echo_every_submitted_value(
    sandbox: RunningSandbox, admin_api: ApiClient, customers_api: ApiClient
) -> None:
    created = customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Acme"}})["createCustomer"]["customer"]
    assert admin_api.request("PUT", "/faults/reject", json={"next": 1}).json() == {"next": 1}
    update = {"id": created["id"], "description": "Moved to Magrathea", "labels": ["Galaxy-President"]}

    refused = customers_api.data(UPDATE_CUSTOMER, {"input": update})["updateCustomer"]
    accepted = customers_api.data(UPDATE_CUSTOMER, {"input": update})["updateCustomer"]

    assert refused == {
        "customer": None,
        "errors": [
            {"field": "id", "messages": [f'Invalid value: "{created["id"]}".']},
            {"field": "description", "messages": ['Invalid value: "Moved to Magrathea".']},
            {"field": "labels", "messages": ['Invalid value: ["Galaxy-President"].']},
        ],
    }
    assert accepted["errors"] == []
    stats = admin_api.request("GET", "/stats").json()
    assert (stats["mutations"]["updateCustomer"], stats["faults"]["rejected"]) == (2, 1)


@pytest.mark.parametrize("body", [{}, {"next": -1}, {"next": "1"}, {"next": False}])
def test_a_malformed_rejection_count_is_refused(admin_api: ApiClient, body: Any) -> None:
    assert admin_api.request("PUT", "/faults/reject", json=body).status_code == 400


def test_counters_can_be_zeroed_without_losing_data(admin_api: ApiClient, customers_api: ApiClient) -> None:
    customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Acme"}})
    admin_api.request("PUT", "/faults/throttle/customers", json={"requests": 1})
    customers_api.request("POST", json=COUNT_QUERY)

    stats = admin_api.request("DELETE", "/stats").json()

    assert stats["mutations"]["createCustomer"] == 0 and stats["faults"]["throttle"] == 0
    assert stats["customers"] == 1

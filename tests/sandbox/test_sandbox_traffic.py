"""Request rates per API and per second, and the latency every GraphQL call answers after."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox import RunningSandbox
from sandbox.traffic import ApiTraffic
from tests.sandbox.sandbox_testkit import CUSTOMERS_TOKEN, ApiClient

COUNT_QUERY = {"query": "{ customers { totalCount } }"}
PURCHASE_QUERY = {"query": "{ purchase(id: 1) { id } }"}


def rates(admin_api: ApiClient) -> dict[str, dict[str, object]]:
    response = admin_api.request("GET", "/rates")
    assert response.status_code == 200, response.text
    body: dict[str, dict[str, object]] = response.json()
    return body


def test_rates_count_each_apis_requests_per_second(
    admin_api: ApiClient, customers_api: ApiClient, personal_data_api: ApiClient
) -> None:
    for _ in range(5):
        customers_api.data(COUNT_QUERY["query"])
    personal_data_api.data(PURCHASE_QUERY["query"])

    report = rates(admin_api)

    customers, personal_data = report["customers"], report["personal-data"]
    assert customers["total"] == 5 and personal_data["total"] == 1
    per_second = customers["per_second"]
    assert isinstance(per_second, dict) and sum(per_second.values()) == 5
    assert customers["max_per_second"] == max(per_second.values())
    assert personal_data["max_per_second"] == 1


def test_refused_requests_are_counted_too(
    sandbox: RunningSandbox, admin_api: ApiClient, customers_api: ApiClient
) -> None:
    admin_api.request("PUT", "/faults", json={"throttle_rate": 1})
    assert customers_api.request("POST", json=COUNT_QUERY).status_code == 429
    assert requests.post(sandbox.customers_url, json=COUNT_QUERY, timeout=10).status_code == 401

    assert rates(admin_api)["customers"]["total"] == 2


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/rates"), ("POST", "/reset")])
def test_rates_start_again_from_zero(
    admin_api: ApiClient, customers_api: ApiClient, method: str, path: str
) -> None:
    customers_api.data(COUNT_QUERY["query"])

    assert admin_api.request(method, path).status_code == 200

    assert rates(admin_api)["customers"] == {
        "total": 0,
        "max_per_second": 0,
        "max_in_sliding_second": 0,
        "per_second": {},
    }


def test_max_per_second_is_the_busiest_wall_clock_second() -> None:
    traffic = ApiTraffic()
    for wall in (100.1, 100.9, 101.0, 101.2, 101.3, 102.95):
        traffic.record(wall, monotonic=wall)

    assert traffic.to_json()["per_second"] == {"100": 2, "101": 3, "102": 1}
    assert traffic.max_per_second == 3


def test_the_sliding_second_catches_a_burst_split_across_two_wall_clock_seconds() -> None:
    traffic = ApiTraffic()
    for wall in (100.7, 100.8, 100.9, 101.0, 101.1, 101.2, 102.5):
        traffic.record(wall, monotonic=wall)

    assert traffic.max_per_second == 3
    assert traffic.max_in_sliding_second == 6


def test_latency_can_be_read_and_set(admin_api: ApiClient, customers_api: ApiClient) -> None:
    assert admin_api.request("GET", "/latency").json() == {"api_latency_ms": 0}

    response = admin_api.request("PUT", "/latency", json={"api_latency_ms": 5})

    assert response.json() == {"api_latency_ms": 5}
    assert customers_api.data(COUNT_QUERY["query"]) == {"customers": {"totalCount": 0}}
    admin_api.request("POST", "/reset")
    assert admin_api.request("GET", "/latency").json() == {"api_latency_ms": 0}


@pytest.mark.parametrize(
    "body", [{}, {"api_latency_ms": -1}, {"api_latency_ms": 1.5}, {"api_latency_ms": True}]
)
def test_a_malformed_latency_is_refused(admin_api: ApiClient, body: object) -> None:
    assert admin_api.request("PUT", "/latency", json=body).status_code == 400


def test_calls_waiting_out_the_latency_do_not_block_each_other(
    sandbox: RunningSandbox, admin_api: ApiClient
) -> None:
    """25 calls are all inside the server at once while none has been answered; no timing involved."""
    admin_api.request("PUT", "/latency", json={"api_latency_ms": 60_000})
    headers = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}

    def call() -> int:
        return requests.post(sandbox.customers_url, json=COUNT_QUERY, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = [pool.submit(call) for _ in range(25)]
        assert sandbox.state.rates.wait_for_total("customers", 25, timeout=10)
        assert not any(answer.done() for answer in answers)
        sandbox.state.faults.release()  # Wakes every waiting call, as a shutdown does.
        assert [answer.result() for answer in answers] == [200] * 25

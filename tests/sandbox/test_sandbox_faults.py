"""Fault injection: 503, 429 with Retry-After, slow answers, and responses lost after the commit."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportConnectionFailed, TransportServerError
from gql.transport.requests import RequestsHTTPTransport

from sandbox import FaultSettings, RunningSandbox
from sandbox.faults import FaultInjector
from tests.sandbox.sandbox_documents import CREATE_CUSTOMER, LIST_CUSTOMERS
from tests.sandbox.sandbox_testkit import CUSTOMERS_TOKEN, ApiClient

CREATE_ACME: dict[str, Any] = {
    "query": CREATE_CUSTOMER,
    "variables": {"input": {"name": "Acme", "externalId": "crm-1"}},
}


def set_faults(admin_api: ApiClient, **settings: Any) -> None:
    """Switch faults on through the admin API, as a test harness outside the process would."""
    response = admin_api.request("PUT", "/faults", json=settings)
    assert response.status_code == 200, response.text


def gql_transport(sandbox: RunningSandbox) -> RequestsHTTPTransport:
    """A gql 4 transport to the customers API with retries off, as the sync service uses it."""
    return RequestsHTTPTransport(
        url=sandbox.customers_url, headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}, retries=0
    )


def customers_named_acme(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    """Read the store directly, bypassing the faulty endpoints."""
    return sandbox.state.store.search_customers(name="Acme")


def test_unavailable_answers_503_json_and_executes_nothing(
    sandbox: RunningSandbox, admin_api: ApiClient, customers_api: ApiClient
) -> None:
    set_faults(admin_api, unavailable_rate=1)

    response = customers_api.request("POST", json=CREATE_ACME)

    assert response.status_code == 503
    assert response.json() == {"error": {"status": 503, "message": "Service temporarily unavailable."}}
    assert customers_named_acme(sandbox) == []
    stats = admin_api.request("GET", "/stats").json()
    assert (stats["mutations"]["createCustomer"], stats["faults"]["unavailable"]) == (0, 1)


def test_throttle_answers_429_with_retry_after_and_executes_nothing(
    sandbox: RunningSandbox, admin_api: ApiClient, customers_api: ApiClient
) -> None:
    set_faults(admin_api, throttle_rate=1, retry_after=7)

    response = customers_api.request("POST", json=CREATE_ACME)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert customers_named_acme(sandbox) == []
    assert admin_api.request("GET", "/stats").json()["faults"]["throttle"] == 1


@pytest.mark.parametrize(
    ("settings", "status"), [({"throttle_rate": 1}, 429), ({"unavailable_rate": 1}, 503)]
)
def test_gql_sees_status_faults_as_transport_server_errors(
    sandbox: RunningSandbox, admin_api: ApiClient, settings: dict[str, Any], status: int
) -> None:
    set_faults(admin_api, **settings)
    transport = gql_transport(sandbox)

    with Client(transport=transport) as session, pytest.raises(TransportServerError) as raised:
        session.execute(GraphQLRequest(LIST_CUSTOMERS, variable_values={}))

    assert raised.value.code == status
    if status == 429:
        assert transport.response_headers is not None
        assert transport.response_headers["Retry-After"] == "1"


def test_slow_answer_still_commits_after_the_client_gave_up(
    sandbox: RunningSandbox, admin_api: ApiClient, customers_api: ApiClient
) -> None:
    set_faults(admin_api, slow_rate=1, slow_seconds=1.0)

    with pytest.raises(requests.exceptions.ReadTimeout):
        customers_api.request("POST", json=CREATE_ACME, timeout=0.2)

    assert sandbox.state.store.wait_for_calls("createCustomer", 1, timeout=10)
    assert [c["externalId"] for c in customers_named_acme(sandbox)] == ["crm-1"]
    assert admin_api.request("GET", "/stats").json()["faults"]["slow"] == 1


def test_slow_answer_arrives_for_a_patient_client(admin_api: ApiClient, customers_api: ApiClient) -> None:
    set_faults(admin_api, slow_rate=1, slow_seconds=0.05)

    body = customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Acme"}})

    assert body["createCustomer"]["errors"] == []


def test_lost_response_commits_the_mutation_but_the_client_sees_a_connection_error(
    sandbox: RunningSandbox, admin_api: ApiClient, customers_api: ApiClient
) -> None:
    set_faults(admin_api, lost_response_rate=1)

    with pytest.raises(requests.exceptions.ConnectionError):
        customers_api.request("POST", json=CREATE_ACME)

    # The mutation ran before the connection was dropped, so it is visible at once.
    assert [c["externalId"] for c in customers_named_acme(sandbox)] == ["crm-1"]
    stats = admin_api.request("GET", "/stats").json()
    assert (stats["mutations"]["createCustomer"], stats["faults"]["lost_response"]) == (1, 1)


def test_lost_response_spares_queries(admin_api: ApiClient, customers_api: ApiClient) -> None:
    set_faults(admin_api, lost_response_rate=1)

    assert customers_api.data(LIST_CUSTOMERS, {})["customers"]["totalCount"] == 0


def test_gql_sees_a_lost_response_as_a_connection_failure(
    sandbox: RunningSandbox, admin_api: ApiClient
) -> None:
    set_faults(admin_api, lost_response_rate=1)

    with Client(transport=gql_transport(sandbox)) as session, pytest.raises(TransportConnectionFailed):
        session.execute(GraphQLRequest(CREATE_CUSTOMER, variable_values=CREATE_ACME["variables"]))

    assert sandbox.state.store.stats()["mutations"]["createCustomer"] == 1


def test_admin_and_health_check_are_spared_from_faults(sandbox: RunningSandbox, admin_api: ApiClient) -> None:
    set_faults(admin_api, unavailable_rate=1, throttle_rate=1)

    assert admin_api.request("GET", "/stats").status_code == 200
    assert requests.get(f"{sandbox.base_url}/healthz", timeout=10).status_code == 200


def test_faults_are_off_by_default(customers_api: ApiClient) -> None:
    for _ in range(20):
        assert (
            customers_api.request("POST", json={"query": "{ customers { totalCount } }"}).status_code == 200
        )


def test_a_seed_reproduces_the_same_faults() -> None:
    settings = FaultSettings(unavailable_rate=0.3, throttle_rate=0.3, lost_response_rate=0.5, seed=42)
    first, second = FaultInjector(settings), FaultInjector(settings)

    draws = [first.draw() for _ in range(50)]

    assert draws == [second.draw() for _ in range(50)]
    assert len(set(draws)) > 1


def test_partial_rates_inject_some_faults_and_not_others() -> None:
    injector = FaultInjector(FaultSettings(unavailable_rate=0.5, seed=1))

    unavailable = [injector.draw().unavailable for _ in range(200)]

    assert 50 < sum(unavailable) < 150

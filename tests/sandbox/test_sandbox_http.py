"""The HTTP surface: Bearer tokens, malformed bodies, health check, and the JSON error shape."""

from __future__ import annotations

import http.client
import json

import pytest
import requests

from sandbox import RunningSandbox
from tests.sandbox.sandbox_testkit import CUSTOMERS_TOKEN, PERSONAL_DATA_TOKEN, ApiClient

QUERY = {"query": "{ customers { totalCount } }"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {PERSONAL_DATA_TOKEN}"},
        {"Authorization": CUSTOMERS_TOKEN},
        {"Authorization": f"Basic {CUSTOMERS_TOKEN}"},
    ],
)
def test_customers_api_refuses_a_bad_token(sandbox: RunningSandbox, headers: dict[str, str]) -> None:
    response = requests.post(sandbox.customers_url, json=QUERY, headers=headers, timeout=10)

    assert response.status_code == 401
    assert response.json() == {"error": {"status": 401, "message": "Missing or invalid bearer token."}}


def test_personal_data_api_refuses_the_customers_token(sandbox: RunningSandbox) -> None:
    response = requests.post(
        sandbox.personal_data_url,
        json={"query": "{ purchase(id: 1) { id } }"},
        headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"},
        timeout=10,
    )

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "The request body must be JSON."),
        (b'"a string"', "The request body must be a JSON object."),
        (b'[{"query": "{ customers { totalCount } }"}]', "Batched requests are not supported."),
        (b"{}", "'query' must be a non-empty string."),
        (b'{"query": 1}', "'query' must be a non-empty string."),
        (b'{"query": "{ x }", "variables": []}', "'variables' must be a JSON object or null."),
        (b'{"query": "{ x }", "operationName": 1}', "'operationName' must be a string or null."),
    ],
)
def test_malformed_body_is_a_400_with_graphql_errors(
    customers_api: ApiClient, body: bytes, message: str
) -> None:
    response = customers_api.request("POST", data=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": message}]}


def test_invalid_document_is_a_200_with_errors_and_no_execution(
    sandbox: RunningSandbox, customers_api: ApiClient
) -> None:
    body = customers_api.execute('mutation { createCustomer(input: {name: "A"}) { nope } }')

    assert body["data"] is None
    assert "nope" in body["errors"][0]["message"]
    assert sandbox.state.store.stats()["mutations"]["createCustomer"] == 0


def test_successful_response_has_data_and_no_errors_key(customers_api: ApiClient) -> None:
    body = customers_api.execute("{ customers { totalCount } }")

    assert body == {"data": {"customers": {"totalCount": 0}}}


def test_operation_name_selects_the_operation(customers_api: ApiClient) -> None:
    response = customers_api.request(
        "POST",
        json={
            "query": 'query A { customers { totalCount } } query B { customer(id: "x") { id } }',
            "operationName": "B",
        },
    )

    assert response.json() == {"data": {"customer": None}}


def test_healthz_needs_no_token(sandbox: RunningSandbox) -> None:
    response = requests.get(f"{sandbox.base_url}/healthz", timeout=10)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nowhere", 404), ("GET", "/customers/graphql", 405)]
)
def test_http_errors_are_json(sandbox: RunningSandbox, method: str, path: str, status: int) -> None:
    response = requests.request(method, sandbox.base_url + path, timeout=10)

    assert response.status_code == status
    assert response.json()["error"]["status"] == status


def test_keep_alive_serves_several_requests_on_one_connection(sandbox: RunningSandbox) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
    headers = {"Authorization": f"Bearer {CUSTOMERS_TOKEN}", "Content-Type": "application/json"}
    try:
        statuses = []
        for _ in range(3):
            connection.request("POST", "/customers/graphql", body=json.dumps(QUERY), headers=headers)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            # http.client drops its socket when the server says it will close the connection.
            assert connection.sock is not None
            assert response.getheader("Connection") is None
    finally:
        connection.close()

    assert statuses == [200, 200, 200]


def test_a_refused_request_leaves_the_connection_usable(sandbox: RunningSandbox) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
    body = json.dumps(QUERY)
    try:
        # The 401 answer never reads the body; it must not be taken for the next request line.
        connection.request("POST", "/customers/graphql", body=body, headers={"Authorization": "Bearer bad"})
        refused = connection.getresponse()
        refused.read()
        connection.request(
            "POST", "/customers/graphql", body=body, headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
        )
        accepted = connection.getresponse()
        accepted_body = json.loads(accepted.read())
    finally:
        connection.close()

    assert (refused.status, accepted.status) == (401, 200)
    assert accepted_body == {"data": {"customers": {"totalCount": 0}}}

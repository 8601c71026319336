"""The customers API's rules: lookups by externalId, updates, deletes, and refusals in payload errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gql import Client, GraphQLRequest
from gql.transport.requests import RequestsHTTPTransport

import sandbox as sandbox_package
from sandbox import RunningSandbox
from tests.sandbox.sandbox_documents import (
    CREATE_CUSTOMER,
    DELETE_CUSTOMER,
    GET_CUSTOMER,
    LIST_CUSTOMERS,
    UPDATE_CUSTOMER,
)
from tests.sandbox.sandbox_testkit import CUSTOMERS_TOKEN, ApiClient


def create(api: ApiClient, **fields: Any) -> dict[str, Any]:
    """Create a customer that must be accepted and return it."""
    payload = api.data(CREATE_CUSTOMER, {"input": fields})["createCustomer"]
    assert payload["errors"] == []
    customer: dict[str, Any] = payload["customer"]
    return customer


def find_by_external_id(api: ApiClient, external_id: str) -> list[dict[str, Any]]:
    """Look customers up the way the sync service does: by externalId, excluding system customers."""
    nodes: list[dict[str, Any]] = api.data(LIST_CUSTOMERS, {"externalId": external_id, "isSystem": False})[
        "customers"
    ]["nodes"]
    return nodes


def test_created_customer_is_found_by_external_id(customers_api: ApiClient) -> None:
    created = create(customers_api, name="Acme", externalId="crm-1", labels=["Gold", "EU"])

    assert find_by_external_id(customers_api, "crm-1") == [created]
    assert created["labels"] == ["gold", "eu"]
    assert find_by_external_id(customers_api, "crm-2") == []


def test_customer_id_is_base64_of_customer_uuid(customers_api: ApiClient) -> None:
    import base64
    import uuid

    created = create(customers_api, name="Acme")
    kind, _, raw_uuid = base64.b64decode(created["id"]).decode().partition(":")

    assert kind == "Customer" and uuid.UUID(raw_uuid)


@pytest.mark.parametrize("description", [None, "unset"])
def test_description_is_empty_string_when_unset_or_null(customers_api: ApiClient, description: str) -> None:
    fields = {"name": "Acme"} if description == "unset" else {"name": "Acme", "description": None}

    assert create(customers_api, **fields)["description"] == ""


def test_update_changes_only_given_fields_and_replaces_labels(customers_api: ApiClient) -> None:
    created = create(customers_api, name="Acme", description="Rockets", externalId="crm-1", labels=["a", "b"])

    payload = customers_api.data(UPDATE_CUSTOMER, {"input": {"id": created["id"], "labels": ["C"]}})

    assert payload["updateCustomer"] == {"customer": {**created, "labels": ["c"]}, "errors": []}


def test_update_with_null_description_stores_empty_string(customers_api: ApiClient) -> None:
    created = create(customers_api, name="Acme", description="Rockets")

    payload = customers_api.data(UPDATE_CUSTOMER, {"input": {"id": created["id"], "description": None}})

    assert payload["updateCustomer"]["customer"]["description"] == ""


def test_update_may_keep_the_customers_own_name(customers_api: ApiClient) -> None:
    created = create(customers_api, name="Acme", externalId="crm-1")

    payload = customers_api.data(
        UPDATE_CUSTOMER, {"input": {"id": created["id"], "name": "Acme", "externalId": "crm-1"}}
    )

    assert payload["updateCustomer"]["errors"] == []


def test_delete_returns_the_deleted_customer(customers_api: ApiClient) -> None:
    created = create(customers_api, name="Acme", externalId="crm-1")

    payload = customers_api.data(DELETE_CUSTOMER, {"input": {"id": created["id"]}})

    assert payload["deleteCustomer"] == {"customer": created, "errors": []}
    assert customers_api.data(GET_CUSTOMER, {"id": created["id"]}) == {"customer": None}
    assert find_by_external_id(customers_api, "crm-1") == []


def test_duplicate_name_is_refused_in_payload_errors_echoing_the_name(customers_api: ApiClient) -> None:
    create(customers_api, name="Jane Doe")

    body = customers_api.execute(CREATE_CUSTOMER, {"input": {"name": "Jane Doe"}})

    assert "errors" not in body
    payload = body["data"]["createCustomer"]
    assert payload["customer"] is None
    # Echoed, as real APIs do, so that a client's redaction of its stored messages is exercised.
    assert payload["errors"] == [{"field": "name", "messages": ['Name "Jane Doe" is already taken.']}]


def test_duplicate_external_id_is_refused_in_payload_errors_echoing_it(customers_api: ApiClient) -> None:
    create(customers_api, name="Acme", externalId="crm-1")

    payload = customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Other", "externalId": "crm-1"}})

    assert payload["createCustomer"]["customer"] is None
    assert payload["createCustomer"]["errors"] == [
        {"field": "externalId", "messages": ['External ID "crm-1" is already taken.']}
    ]


def test_an_echoed_value_is_quoted_as_json(customers_api: ApiClient) -> None:
    name = 'Zoë "Z" O\'Brien\nLtd'
    create(customers_api, name=name)

    payload = customers_api.data(CREATE_CUSTOMER, {"input": {"name": name}})["createCustomer"]

    assert payload["errors"] == [
        {"field": "name", "messages": [f"Name {json.dumps(name, ensure_ascii=False)} is already taken."]}
    ]


def test_labels_with_a_null_are_refused_echoing_the_labels(customers_api: ApiClient) -> None:
    payload = customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Acme", "labels": ["VIP", None]}})

    assert payload["createCustomer"]["errors"] == [
        {"field": "labels", "messages": ['Labels must not contain null: ["VIP", null].']}
    ]


def test_update_to_a_taken_external_id_is_refused(customers_api: ApiClient) -> None:
    create(customers_api, name="Acme", externalId="crm-1")
    other = create(customers_api, name="Other", externalId="crm-2")

    payload = customers_api.data(UPDATE_CUSTOMER, {"input": {"id": other["id"], "externalId": "crm-1"}})

    assert payload["updateCustomer"]["errors"][0]["field"] == "externalId"
    assert find_by_external_id(customers_api, "crm-2") == [other]


def test_many_customers_may_have_a_null_external_id(customers_api: ApiClient) -> None:
    create(customers_api, name="Acme")

    assert create(customers_api, name="Other", externalId=None)["externalId"] is None


@pytest.mark.parametrize("name", ["", "   "])
def test_blank_name_is_refused(customers_api: ApiClient, name: str) -> None:
    payload = customers_api.data(CREATE_CUSTOMER, {"input": {"name": name}})["createCustomer"]

    assert payload == {
        "clientMutationId": None,
        "customer": None,
        "errors": [{"field": "name", "messages": ["This field cannot be blank."]}],
    }


@pytest.mark.parametrize(
    ("document", "mutation_input", "message"),
    [
        (UPDATE_CUSTOMER, {"name": "New"}, "This field is required."),
        (UPDATE_CUSTOMER, {"id": "Q3VzdG9tZXI6bm9uZQ==", "name": "New"}, "Customer not found."),
        (DELETE_CUSTOMER, {}, "This field is required."),
        (DELETE_CUSTOMER, {"id": "Q3VzdG9tZXI6bm9uZQ=="}, "Customer not found."),
    ],
)
def test_missing_or_unknown_id_is_refused_in_payload_errors(
    customers_api: ApiClient, document: str, mutation_input: dict[str, Any], message: str
) -> None:
    body = customers_api.execute(document, {"input": mutation_input})

    assert "errors" not in body
    (payload,) = body["data"].values()
    assert payload == {"customer": None, "errors": [{"field": "id", "messages": [message]}]}


def test_client_mutation_id_is_echoed(customers_api: ApiClient) -> None:
    payload = customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Acme", "clientMutationId": "m-1"}})

    assert payload["createCustomer"]["clientMutationId"] == "m-1"


@pytest.mark.parametrize(
    ("variables", "expected_names"),
    [
        ({"name": "Acme"}, ["Acme"]),
        ({"nameIcontains": "ACM"}, ["Acme", "Acme Mining"]),
        ({"label": "Gold"}, ["Acme Mining", "Zeta"]),
        ({"isSystem": True}, []),
        ({"isSystem": False, "label": "gold", "nameIcontains": "zeta"}, ["Zeta"]),
    ],
)
def test_listing_filters(
    customers_api: ApiClient, variables: dict[str, Any], expected_names: list[str]
) -> None:
    create(customers_api, name="Acme")
    create(customers_api, name="Acme Mining", labels=["gold"])
    create(customers_api, name="Zeta", labels=["GOLD", "eu"])

    nodes = customers_api.data(LIST_CUSTOMERS, variables)["customers"]["nodes"]

    assert [node["name"] for node in nodes] == expected_names


def test_gql_client_speaks_the_sandbox_wire_format(sandbox: RunningSandbox) -> None:
    schema = Path(sandbox_package.__file__).with_name("schema").joinpath("customers.graphql").read_text()
    transport = RequestsHTTPTransport(
        url=sandbox.customers_url, headers={"Authorization": f"Bearer {CUSTOMERS_TOKEN}"}
    )

    # Client(schema=...) validates each document against the SDL before sending it.
    with Client(transport=transport, schema=schema) as session:
        created = session.execute(
            GraphQLRequest(CREATE_CUSTOMER, variable_values={"input": {"name": "Acme", "externalId": "x-1"}})
        )
        found = session.execute(GraphQLRequest(LIST_CUSTOMERS, variable_values={"externalId": "x-1"}))

    assert created["createCustomer"]["errors"] == []
    assert found["customers"]["nodes"] == [created["createCustomer"]["customer"]]

"""The admin API: token, reset, seeding purchases, counters and fault settings."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import FaultSettings, RunningSandbox
from tests.sandbox.sandbox_documents import (
    CREATE_CUSTOMER,
    DELETE_PERSONAL_DATA,
    GET_CUSTOMER,
    GET_PURCHASE,
    LIST_CUSTOMERS,
    UPDATE_CUSTOMER,
)
from tests.sandbox.sandbox_testkit import HAN_SOLO_PURCHASE, PERSONAL_DATA_TOKEN, ApiClient


def test_admin_refuses_the_personal_data_token(sandbox: RunningSandbox) -> None:
    client = ApiClient(sandbox.base_url + "/admin", PERSONAL_DATA_TOKEN)
    with client.session:
        assert client.request("GET", "/stats").status_code == 401


def test_seeded_purchases_are_served_in_the_purchase_shape(
    admin_api: ApiClient, personal_data_api: ApiClient
) -> None:
    response = admin_api.request("POST", "/purchases", json=[HAN_SOLO_PURCHASE])

    assert response.status_code == 201
    assert response.json() == {"seeded": 1}
    purchase = personal_data_api.data(GET_PURCHASE, {"id": 356018965})["purchase"]
    assert purchase["billingContact"]["firstName"] == "Han"
    assert purchase["customer"] == {"id": 131355826}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": 1}, "The body must be a JSON list of purchases."),
        ([{"customer": None}], "Each purchase needs an integer id."),
        ([{"id": True}], "Each purchase needs an integer id."),
        ([{"id": 1, "emails": []}], "Unknown purchase fields: emails."),
        (
            [{"id": 1, "billingContact": {"firstName": "Han"}}],
            "billingContact must be null or an object with an integer id.",
        ),
        ([{"id": 1}, "x"], "Each purchase must be a JSON object."),
    ],
)
def test_malformed_purchases_are_refused_whole(
    sandbox: RunningSandbox, admin_api: ApiClient, body: Any, message: str
) -> None:
    response = admin_api.request("POST", "/purchases", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert sandbox.state.store.stats()["purchases"] == 0


def test_stats_count_mutations_and_erasures_per_purchase(
    admin_api: ApiClient, customers_api: ApiClient, personal_data_api: ApiClient
) -> None:
    admin_api.request("POST", "/purchases", json=[HAN_SOLO_PURCHASE])
    customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Acme"}})
    customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Acme"}})  # Refused, but still executed.
    personal_data_api.data(DELETE_PERSONAL_DATA, {"purchaseId": 356018965})

    stats = admin_api.request("GET", "/stats").json()

    assert stats == {
        "mutations": {
            "createCustomer": 2,
            "updateCustomer": 0,
            "deleteCustomer": 0,
            "deletePersonalCustomerData": 1,
        },
        "deletePersonalCustomerData": {"356018965": 1},
        "customers": 1,
        "purchases": 1,
        "faults": {"unavailable": 0, "throttle": 0, "slow": 0, "lost_response": 0, "rejected": 0},
    }


def test_reset_clears_data_and_counters_and_switches_faults_off(
    sandbox: RunningSandbox, admin_api: ApiClient, customers_api: ApiClient
) -> None:
    admin_api.request("POST", "/purchases", json=[HAN_SOLO_PURCHASE])
    customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Acme"}})
    admin_api.request("PUT", "/faults", json={"throttle_rate": 1})
    customers_api.request("POST", json={"query": "{ customers { totalCount } }"})

    response = admin_api.request("POST", "/reset")

    assert response.status_code == 200
    assert admin_api.request("GET", "/faults").json() == FaultSettings().to_json()
    assert response.json()["mutations"]["createCustomer"] == 0
    assert response.json()["faults"]["throttle"] == 0
    assert (response.json()["customers"], response.json()["purchases"]) == (0, 0)
    assert customers_api.data("{ customers { totalCount } }") == {"customers": {"totalCount": 0}}


def test_put_faults_replaces_the_settings(admin_api: ApiClient) -> None:
    response = admin_api.request("PUT", "/faults", json={"slow_rate": 0.5, "slow_seconds": 2, "seed": 7})

    expected = {**FaultSettings().to_json(), "slow_rate": 0.5, "slow_seconds": 2.0, "seed": 7}
    assert response.json() == expected
    assert admin_api.request("GET", "/faults").json() == expected


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"throttle_rate": 1.5},
        {"throttle_rate": "1"},
        {"throttle_rate": True},
        {"retry_after": 1.5},
        {"retry_after": -1},
        {"seed": "x"},
        {"unknown_rate": 1},
    ],
)
def test_invalid_fault_settings_are_refused(admin_api: ApiClient, body: Any) -> None:
    response = admin_api.request("PUT", "/faults", json=body)

    assert response.status_code == 400
    assert admin_api.request("GET", "/faults").json() == FaultSettings().to_json()


def test_admin_body_must_be_json(admin_api: ApiClient) -> None:
    response = admin_api.request("PUT", "/faults", data=b"{not json")

    assert response.status_code == 400
    assert response.json() == {"error": {"status": 400, "message": "The request body must be JSON."}}


def test_a_reissued_customer_keeps_its_values_under_a_new_id(
    admin_api: ApiClient, customers_api: ApiClient
) -> None:
    values = {"name": "Acme", "description": "Rockets", "externalId": "crm-1", "labels": ["a"]}
    old = customers_api.data(CREATE_CUSTOMER, {"input": values})["createCustomer"]["customer"]

    response = admin_api.request(
        "POST", "/customers/reissue", json={"external_ids": ["crm-1", "crm-unknown"]}
    )

    assert response.json() == {"reissued": 1}
    assert customers_api.data(GET_CUSTOMER, {"id": old["id"]})["customer"] is None
    (new,) = customers_api.data(LIST_CUSTOMERS, {"externalId": "crm-1"})["customers"]["nodes"]
    assert new["id"] != old["id"] and {**new, "id": old["id"]} == old
    refused = customers_api.data(UPDATE_CUSTOMER, {"input": {"id": old["id"], "name": "Acme 2"}})
    assert refused["updateCustomer"]["errors"] == [{"field": "id", "messages": ["Customer not found."]}]


@pytest.mark.parametrize("body", [{}, {"external_ids": "crm-1"}, {"external_ids": [1]}, []])
def test_reissue_needs_a_list_of_external_ids(admin_api: ApiClient, body: Any) -> None:
    assert admin_api.request("POST", "/customers/reissue", json=body).status_code == 400

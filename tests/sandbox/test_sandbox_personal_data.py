"""The personal-data API: anonymising a purchase's contacts, and refusing unknown purchases."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sandbox import ANONYMISED_EMAIL, RunningSandbox
from tests.sandbox.sandbox_documents import DELETE_PERSONAL_DATA, GET_PURCHASE
from tests.sandbox.sandbox_testkit import HAN_SOLO_PURCHASE, ApiClient

COUNTRY_US = {"id": "US", "name": "United States"}
STATE_GA = {"id": "US_GA", "name": "Georgia", "country": COUNTRY_US}
LEIA_PURCHASE: dict[str, Any] = {
    "id": 356018966,
    "customer": {"id": 131355827},
    "customerCountry": {"id": "US", "name": "United States"},
    "billingContact": {
        "id": 1,
        "company": "Rebel Alliance",
        "firstName": "Leia",
        "lastName": "Organa",
        "email": "leia@example.com",
        "addressLine1": "1 Palace Way",
        "addressLine2": "Suite 2",
        "postalCode": "30033",
        "city": "Atlanta",
        "country": COUNTRY_US,
        "state": STATE_GA,
    },
    "deliveryContact": {
        "id": 2,
        "company": None,
        "firstName": "Leia",
        "lastName": None,
        "email": None,
        "addressLine1": None,
        "addressLine2": None,
        "postalCode": None,
        "city": "Decatur",
        "country": COUNTRY_US,
        "state": None,
    },
    "licenseeContact": None,
}


@pytest.fixture
def purchases(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    """Han Solo's and Leia Organa's purchases, seeded into the sandbox."""
    seeded = [copy.deepcopy(HAN_SOLO_PURCHASE), copy.deepcopy(LEIA_PURCHASE)]
    sandbox.state.store.seed_purchases(seeded)
    return seeded


def test_anonymises_han_solo_as_the_vendor_documents(
    personal_data_api: ApiClient, purchases: list[dict[str, Any]]
) -> None:
    data = personal_data_api.data(DELETE_PERSONAL_DATA, {"purchaseId": 356018965})

    contact = data["deletePersonalCustomerData"]["updatedPurchase"]["billingContact"]
    assert contact == {
        "id": 380127817,
        "company": None,
        "firstName": "XXX",
        "lastName": "XXX",
        "email": ANONYMISED_EMAIL,
        "addressLine1": "XXX",
        "addressLine2": None,
        "postalCode": "XXX",
        "city": "XXX",
        "country": {"id": "MT", "name": "Malta"},
        "state": None,
    }


def test_anonymises_every_contact_keeping_nulls_countries_and_states(
    personal_data_api: ApiClient, purchases: list[dict[str, Any]]
) -> None:
    updated = personal_data_api.data(DELETE_PERSONAL_DATA, {"purchaseId": 356018966})[
        "deletePersonalCustomerData"
    ]["updatedPurchase"]

    billing, delivery = updated["billingContact"], updated["deliveryContact"]
    assert billing == {
        "id": 1,
        "company": "XXX",
        "firstName": "XXX",
        "lastName": "XXX",
        "email": ANONYMISED_EMAIL,
        "addressLine1": "XXX",
        "addressLine2": "XXX",
        "postalCode": "XXX",
        "city": "XXX",
        "country": COUNTRY_US,
        "state": STATE_GA,
    }
    assert delivery == {
        **LEIA_PURCHASE["deliveryContact"],
        "firstName": "XXX",
        "city": "XXX",
    }
    assert updated["licenseeContact"] is None
    assert updated["customer"] == {"id": 131355827}
    assert updated["customerCountry"] == LEIA_PURCHASE["customerCountry"]


def test_anonymisation_is_stored_and_leaves_other_purchases_alone(
    personal_data_api: ApiClient, purchases: list[dict[str, Any]]
) -> None:
    returned = personal_data_api.data(DELETE_PERSONAL_DATA, {"purchaseId": 356018965})

    assert (
        personal_data_api.data(GET_PURCHASE, {"id": 356018965})["purchase"]
        == returned["deletePersonalCustomerData"]["updatedPurchase"]
    )
    leia = personal_data_api.data(GET_PURCHASE, {"id": 356018966})["purchase"]
    assert leia["billingContact"]["firstName"] == "Leia"


def test_unknown_purchase_is_a_top_level_error(personal_data_api: ApiClient) -> None:
    body = personal_data_api.execute(DELETE_PERSONAL_DATA, {"purchaseId": 999})

    assert body["data"] == {"deletePersonalCustomerData": None}
    assert [error["message"] for error in body["errors"]] == ["Purchase 999 not found"]


def test_unknown_purchase_query_returns_null(personal_data_api: ApiClient) -> None:
    assert personal_data_api.data(GET_PURCHASE, {"id": 999}) == {"purchase": None}


def test_erasures_are_counted_per_purchase(
    sandbox: RunningSandbox, personal_data_api: ApiClient, purchases: list[dict[str, Any]]
) -> None:
    personal_data_api.data(DELETE_PERSONAL_DATA, {"purchaseId": 356018965})

    stats = sandbox.state.store.stats()
    assert stats["deletePersonalCustomerData"] == {"356018965": 1}
    assert stats["mutations"]["deletePersonalCustomerData"] == 1

"""What a reconcile needs: bulk seeding, system customers, and stable paging in creation order."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import RunningSandbox
from tests.sandbox.sandbox_documents import CREATE_CUSTOMER, DELETE_CUSTOMER, LIST_CUSTOMERS
from tests.sandbox.sandbox_testkit import ApiClient

BY_CREATED_AT = [{"field": "CREATED_AT", "direction": "ASC"}]


def seed(admin_api: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    response = admin_api.request("POST", "/customers", json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def page(api: ApiClient, **variables: Any) -> dict[str, Any]:
    connection: dict[str, Any] = api.data(LIST_CUSTOMERS, variables)["customers"]
    return connection


def names(connection: dict[str, Any]) -> list[str]:
    return [node["name"] for node in connection["nodes"]]


def list_all(api: ApiClient, **variables: Any) -> list[str]:
    """Every page of a listing sorted by creation, following endCursor."""
    seen: list[str] = []
    after = None
    while True:
        connection = page(api, after=after, sortBy=BY_CREATED_AT, **variables)
        seen += names(connection)
        if not connection["pageInfo"]["hasNextPage"]:
            return seen
        after = connection["pageInfo"]["endCursor"]


def test_seeded_customers_include_system_ones_and_ones_without_external_id(
    admin_api: ApiClient, customers_api: ApiClient
) -> None:
    answer = seed(admin_api, {"customers": [
        {"name": "Acme", "externalId": "crm-1", "description": "d", "labels": ["VIP"]},
        {"name": "Hand-made"},
        {"name": "Platform test customer", "externalId": "sys-1", "isSystem": True},
    ]})  # fmt: skip

    assert answer == {"seeded": 3, "customers": 3}
    listed = page(customers_api, isSystem=False, sortBy=BY_CREATED_AT)
    assert listed["totalCount"] == 2
    assert [(n["name"], n["externalId"], n["labels"]) for n in listed["nodes"]] == [
        ("Acme", "crm-1", ["vip"]),
        ("Hand-made", None, []),
    ]
    assert names(page(customers_api, isSystem=True)) == ["Platform test customer"]
    assert page(customers_api)["totalCount"] == 3  # Without isSystem, system customers are listed too.


def test_generated_customers_are_listed_once_each_in_creation_order(
    admin_api: ApiClient, customers_api: ApiClient
) -> None:
    seed(admin_api, {"generate": {"count": 250}})
    seed(admin_api, {"generate": {"count": 3, "start": 251, "external_id_prefix": None, "is_system": True}})

    listed = list_all(customers_api, isSystem=False)

    assert listed == [f"Customer {n}" for n in range(1, 251)]
    assert page(customers_api, externalId="crm-7")["nodes"][0]["name"] == "Customer 7"
    assert page(customers_api, isSystem=True, sortBy=BY_CREATED_AT)["totalCount"] == 3


def test_seeding_counts_no_mutation(admin_api: ApiClient) -> None:
    seed(admin_api, {"generate": {"count": 10}})

    stats = admin_api.request("GET", "/stats").json()

    assert stats["customers"] == 10
    assert set(stats["mutations"].values()) == {0}


def test_paging_by_creation_neither_skips_nor_repeats_when_customers_change_between_pages(
    admin_api: ApiClient, customers_api: ApiClient
) -> None:
    seed(admin_api, {"generate": {"count": 9}})
    first = page(customers_api, first=3, sortBy=BY_CREATED_AT)
    seen_id = first["nodes"][1]["id"]
    customers_api.data(DELETE_CUSTOMER, {"input": {"id": seen_id}})
    customers_api.data(CREATE_CUSTOMER, {"input": {"name": "Newcomer"}})

    after = first["pageInfo"]["endCursor"]
    second = page(customers_api, first=3, after=after, sortBy=BY_CREATED_AT)
    rest = page(customers_api, after=second["pageInfo"]["endCursor"], sortBy=BY_CREATED_AT)

    assert names(first) == ["Customer 1", "Customer 2", "Customer 3"]
    assert names(second) == ["Customer 4", "Customer 5", "Customer 6"]
    assert names(rest) == ["Customer 7", "Customer 8", "Customer 9", "Newcomer"]
    assert second["pageInfo"]["hasPreviousPage"] is True and rest["pageInfo"]["hasNextPage"] is False


def test_paging_without_a_sort_order_skips_a_customer_after_a_deletion(
    admin_api: ApiClient, customers_api: ApiClient
) -> None:
    """The platform's offset cursors: why a full listing must sort by creation."""
    seed(admin_api, {"generate": {"count": 6}})
    first = page(customers_api, first=3)
    customers_api.data(DELETE_CUSTOMER, {"input": {"id": first["nodes"][0]["id"]}})

    second = page(customers_api, first=3, after=first["pageInfo"]["endCursor"])

    assert names(second) == ["Customer 5", "Customer 6"]


def test_paging_by_creation_descending(admin_api: ApiClient, customers_api: ApiClient) -> None:
    seed(admin_api, {"generate": {"count": 5}})
    newest_first = [{"field": "CREATED_AT", "direction": "DESC"}]

    first = page(customers_api, first=2, sortBy=newest_first)
    second = page(customers_api, first=2, after=first["pageInfo"]["endCursor"], sortBy=newest_first)

    assert names(first) + names(second) == ["Customer 5", "Customer 4", "Customer 3", "Customer 2"]
    assert second["pageInfo"]["hasNextPage"] is True


def test_a_filtered_listing_by_creation_counts_and_pages_the_matches(
    admin_api: ApiClient, customers_api: ApiClient
) -> None:
    seed(admin_api, {"generate": {"count": 12}})

    first = page(customers_api, first=2, nameIcontains="customer 1", sortBy=BY_CREATED_AT)
    by_external_id = page(customers_api, externalId="crm-3", isSystem=False, sortBy=BY_CREATED_AT)
    zero = page(customers_api, first=0, sortBy=BY_CREATED_AT)

    assert (names(first), first["totalCount"]) == (["Customer 1", "Customer 10"], 4)
    assert (names(by_external_id), by_external_id["totalCount"]) == (["Customer 3"], 1)
    assert by_external_id["pageInfo"]["hasNextPage"] is False
    assert (names(zero), zero["pageInfo"]["hasNextPage"]) == ([], True)


def test_a_cursor_of_another_order_is_refused(admin_api: ApiClient, customers_api: ApiClient) -> None:
    seed(admin_api, {"generate": {"count": 3}})
    unsorted_cursor = page(customers_api, first=1)["pageInfo"]["endCursor"]

    body = customers_api.execute(LIST_CUSTOMERS, {"after": unsorted_cursor, "sortBy": BY_CREATED_AT})

    assert [error["message"] for error in body["errors"]] == ["Invalid cursor in argument 'after'."]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"customers": [{"name": "A"}, {"name": "A"}]}, "Customer 1: the name is already taken."),
        ({"customers": [{"name": "A", "externalId": "x"}, {"name": "B", "externalId": "x"}]},
         "Customer 1: the externalId is already taken."),
        ({"customers": [{"name": "Seeded 1"}]}, "Customer 0: the name is already taken."),
        ({"customers": [{"name": " "}]}, "Customer 0 needs a non-blank string name."),
        ({"customers": [{"name": "A", "labels": [None]}]},
         "Customer 0: labels must be a list of strings or null."),
        ({"customers": [{"name": "A", "isSystem": 1}]}, "Customer 0: isSystem must be a boolean."),
        ({"customers": [{"name": "A", "email": "a@b"}]}, "Customer 0 has unknown fields: email."),
        ({"customers": ["A"]}, "Customer 0 must be a JSON object."),
        ({"generate": {"count": -1}}, "count must be a whole number up to 1000000, start an integer."),
        ({"generate": {"count": 1, "size": 1}}, "Unknown generate settings: size."),
        ([], 'The body must be {"customers": [...]} or {"generate": {...}}.'),
    ],
)  # fmt: skip
def test_malformed_or_clashing_seeds_are_refused_whole(
    sandbox: RunningSandbox, admin_api: ApiClient, body: Any, message: str
) -> None:
    seed(admin_api, {"generate": {"count": 1, "name_prefix": "Seeded "}})

    response = admin_api.request("POST", "/customers", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert sandbox.state.store.stats()["customers"] == 1

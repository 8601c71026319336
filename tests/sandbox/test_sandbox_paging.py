"""Listing customers: pages of at most 100, opaque cursors, and sort orders."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import RunningSandbox
from tests.sandbox.sandbox_documents import LIST_CUSTOMERS, UPDATE_CUSTOMER
from tests.sandbox.sandbox_testkit import ApiClient

CUSTOMER_COUNT = 205
BY_CREATED_AT = [{"field": "CREATED_AT", "direction": "ASC"}]


@pytest.fixture
def many_customers(sandbox: RunningSandbox) -> list[str]:
    """205 customers created straight in the store (the HTTP path is covered elsewhere); their names."""
    names = [f"Customer {index:03}" for index in range(CUSTOMER_COUNT)]
    for name in names:
        sandbox.state.store.create_customer({"name": name})
    return names


def list_page(api: ApiClient, **variables: Any) -> dict[str, Any]:
    """Return one page of the customers connection."""
    page: dict[str, Any] = api.data(LIST_CUSTOMERS, {"isSystem": False, **variables})["customers"]
    return page


def test_paging_with_cursors_returns_every_customer_once_in_created_order(
    customers_api: ApiClient, many_customers: list[str]
) -> None:
    seen: list[str] = []
    page_sizes: list[int] = []
    after = None
    while True:
        page = list_page(customers_api, after=after, sortBy=BY_CREATED_AT)
        assert page["totalCount"] == CUSTOMER_COUNT
        seen += [node["name"] for node in page["nodes"]]
        page_sizes.append(len(page["nodes"]))
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert page_sizes == [100, 100, 5]
    assert seen == many_customers


@pytest.mark.parametrize("first", [None, 100, 101, 5000])
def test_first_is_capped_at_100(
    customers_api: ApiClient, many_customers: list[str], first: int | None
) -> None:
    page = list_page(customers_api, first=first)

    assert len(page["nodes"]) == 100
    assert page["pageInfo"]["hasNextPage"] is True


def test_small_pages_follow_on_from_the_cursor(customers_api: ApiClient, many_customers: list[str]) -> None:
    first_page = list_page(customers_api, first=2)
    second_page = list_page(customers_api, first=2, after=first_page["pageInfo"]["endCursor"])

    assert [n["name"] for n in first_page["nodes"] + second_page["nodes"]] == many_customers[:4]
    assert first_page["pageInfo"]["hasPreviousPage"] is False
    assert second_page["pageInfo"]["hasPreviousPage"] is True


def test_sort_by_name_descending(customers_api: ApiClient, many_customers: list[str]) -> None:
    page = list_page(customers_api, first=3, sortBy=[{"field": "NAME", "direction": "DESC"}])

    assert [node["name"] for node in page["nodes"]] == many_customers[::-1][:3]


def test_sort_by_updated_at_puts_the_last_change_last(
    customers_api: ApiClient, many_customers: list[str]
) -> None:
    first = list_page(customers_api, first=1)["nodes"][0]
    customers_api.data(UPDATE_CUSTOMER, {"input": {"id": first["id"], "description": "changed"}})

    page = list_page(customers_api, after=None, sortBy=[{"field": "UPDATED_AT", "direction": "DESC"}])

    assert page["nodes"][0]["id"] == first["id"]


def test_empty_listing_has_no_cursors(customers_api: ApiClient) -> None:
    page = list_page(customers_api)

    assert page == {
        "totalCount": 0,
        "nodes": [],
        "edges": [],
        "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None},
    }


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"after": "not-a-cursor"}, "Invalid cursor in argument 'after'."),
        ({"after": "Q3VzdG9tZXI6MQ=="}, "Invalid cursor in argument 'after'."),
        ({"first": -1}, "Argument 'first' must be a non-negative integer."),
    ],
)
def test_bad_paging_arguments_are_top_level_errors(
    customers_api: ApiClient, variables: dict[str, Any], message: str
) -> None:
    body = customers_api.execute(LIST_CUSTOMERS, variables)

    assert [error["message"] for error in body["errors"]] == [message]

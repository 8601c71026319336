"""The worker's GraphQL documents are valid against the platform's schema (as the sandbox serves it)."""

from __future__ import annotations

from importlib import resources

import pytest
from graphql import build_schema, validate

from jobs.documents import DOCUMENTS

SCHEMAS = {
    "customers": build_schema((resources.files("sandbox") / "schema" / "customers.graphql").read_text()),
    "personal_data": build_schema(
        (resources.files("sandbox") / "schema" / "personal_data.graphql").read_text()
    ),
}
API_OF = {
    "find_customer": "customers",
    "find_customer_by_name": "customers",
    "find_customer_fields": "customers",
    "create_customer": "customers",
    "update_customer": "customers",
    "delete_customer": "customers",
    "delete_personal_customer_data": "personal_data",
    "list_customers": "customers",
}


def test_every_document_is_assigned_to_an_api() -> None:
    assert set(DOCUMENTS) == set(API_OF)


@pytest.mark.parametrize("name", sorted(API_OF))
def test_document_validates_against_its_api_schema(name: str) -> None:
    errors = validate(SCHEMAS[API_OF[name]], DOCUMENTS[name].document)
    assert errors == []


def test_a_wrong_document_is_caught_by_the_same_check() -> None:
    from gql import GraphQLRequest

    wrong = GraphQLRequest("query { customers(externalId: 1) { nodes { email } } }")
    assert validate(SCHEMAS["customers"], wrong.document) != []

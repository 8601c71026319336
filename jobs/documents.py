"""The GraphQL documents the worker sends, parsed once per process from the `.graphql` files."""

from __future__ import annotations

from importlib import resources
from typing import Any

from gql import GraphQLRequest
from graphql import DocumentNode, print_ast

__all__ = ["DOCUMENTS", "load", "PreparedRequest"]

_FOLDER = resources.files(__package__) / "documents"


class PreparedRequest(GraphQLRequest):
    """A parsed document whose query text is printed once, not on every call.

    gql's `GraphQLRequest.payload` runs `print_ast` over the whole document for each request it
    sends; these documents never change, so a request built from a PreparedRequest (as
    `PreparedRequest(document, variable_values=...)`) reuses the text printed at import.
    """

    def __init__(self, request: DocumentNode | GraphQLRequest | str, **options: Any) -> None:
        super().__init__(request, **options)
        self.query: str = request.query if isinstance(request, PreparedRequest) else print_ast(self.document)

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": self.query}
        if self.operation_name:
            payload["operationName"] = self.operation_name
        if self.variable_values:
            payload["variables"] = self.variable_values
        if self.extensions:
            payload["extensions"] = self.extensions
        return payload


def load(name: str) -> GraphQLRequest:
    """Parse `documents/<name>.graphql`; a syntax error here fails at import, not mid-job."""
    return PreparedRequest(_FOLDER.joinpath(f"{name}.graphql").read_text())


DOCUMENTS: dict[str, GraphQLRequest] = {
    name: load(name)
    for name in (
        "find_customer",
        "find_customer_by_name",
        "find_customer_fields",
        "create_customer",
        "update_customer",
        "delete_customer",
        "delete_personal_customer_data",
        "list_customers",
    )
}
FIND_CUSTOMER = DOCUMENTS["find_customer"]
FIND_CUSTOMER_BY_NAME = DOCUMENTS["find_customer_by_name"]
FIND_CUSTOMER_FIELDS = DOCUMENTS["find_customer_fields"]
CREATE_CUSTOMER = DOCUMENTS["create_customer"]
UPDATE_CUSTOMER = DOCUMENTS["update_customer"]
DELETE_CUSTOMER = DOCUMENTS["delete_customer"]
DELETE_PERSONAL_CUSTOMER_DATA = DOCUMENTS["delete_personal_customer_data"]
LIST_CUSTOMERS = DOCUMENTS["list_customers"]

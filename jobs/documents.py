"""The GraphQL documents the worker sends, parsed once per process from the `.graphql` files."""

from __future__ import annotations

from importlib import resources

from gql import GraphQLRequest

__all__ = ["DOCUMENTS", "load"]

_FOLDER = resources.files(__package__) / "documents"


def load(name: str) -> GraphQLRequest:
    """Parse `documents/<name>.graphql`; a syntax error here fails at import, not mid-job."""
    return GraphQLRequest(_FOLDER.joinpath(f"{name}.graphql").read_text())


DOCUMENTS: dict[str, GraphQLRequest] = {
    name: load(name)
    for name in (
        "find_customer",
        "create_customer",
        "update_customer",
        "delete_customer",
        "delete_personal_customer_data",
    )
}
FIND_CUSTOMER = DOCUMENTS["find_customer"]
CREATE_CUSTOMER = DOCUMENTS["create_customer"]
UPDATE_CUSTOMER = DOCUMENTS["update_customer"]
DELETE_CUSTOMER = DOCUMENTS["delete_customer"]
DELETE_PERSONAL_CUSTOMER_DATA = DOCUMENTS["delete_personal_customer_data"]

"""The documents' query text is printed once; what is sent is exactly what gql would have sent."""

from __future__ import annotations

from gql import GraphQLRequest

from jobs.documents import DOCUMENTS, PreparedRequest


def test_a_prepared_request_sends_the_payload_gql_would_send() -> None:
    for document in DOCUMENTS.values():
        variables = {"externalId": "crm-1"}
        prepared = type(document)(document, variable_values=variables)
        assert isinstance(prepared, PreparedRequest)
        assert prepared.payload == GraphQLRequest(document.document, variable_values=variables).payload


def test_a_request_built_from_a_prepared_one_reuses_its_printed_text() -> None:
    document = DOCUMENTS["find_customer"]
    assert isinstance(document, PreparedRequest)
    assert PreparedRequest(document, variable_values={"externalId": "x"}).query is document.query

"""GraphQL-over-HTTP: reading a request body, executing it with graphql-core, shaping the response."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FormattedExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    build_schema,
    get_operation_ast,
    parse,
    validate,
)
from graphql import execute as execute_document

SCHEMA_NAMES = ("customers", "personal_data")


class MalformedRequest(ValueError):
    """The HTTP body is not a GraphQL request; the message says which part is wrong."""


@dataclass(frozen=True)
class OperationRequest:
    """One GraphQL request as sent over HTTP."""

    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None

    @classmethod
    def from_body(cls, body: bytes) -> OperationRequest:
        """Parse a JSON body `{query, variables, operationName}`, raising MalformedRequest."""
        try:
            data = json.loads(body)
        except ValueError:
            raise MalformedRequest("The request body must be JSON.") from None
        if isinstance(data, list):
            # Batching is not confirmed for either vendor; refusing it keeps clients honest.
            raise MalformedRequest("Batched requests are not supported.")
        if not isinstance(data, dict):
            raise MalformedRequest("The request body must be a JSON object.")
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        if not isinstance(query, str) or not query.strip():
            raise MalformedRequest("'query' must be a non-empty string.")
        if variables is not None and not isinstance(variables, dict):
            raise MalformedRequest("'variables' must be a JSON object or null.")
        if name is not None and not isinstance(name, str):
            raise MalformedRequest("'operationName' must be a string or null.")
        return cls(query=query, variables=variables, operation_name=name)

    def is_mutation(self) -> bool:
        """Tell whether the operation to run is a mutation; a document that fails to parse is not."""
        try:
            operation = get_operation_ast(_parsed(self.query), self.operation_name)
        except GraphQLError:
            return False
        return operation is not None and operation.operation == OperationType.MUTATION


@cache
def load_schema(name: str) -> GraphQLSchema:
    """Build one of the SCHEMA_NAMES from its SDL file, once per process."""
    sdl = resources.files("sandbox").joinpath("schema", f"{name}.graphql").read_text(encoding="utf-8")
    return build_schema(sdl)


def execute(schema: GraphQLSchema, root: object, request: OperationRequest) -> FormattedExecutionResult:
    """Run a request against `root` and return the response body: data, plus errors when present."""
    try:
        document = _validated(schema, request.query)
    except GraphQLError as error:
        return ExecutionResult(data=None, errors=[error]).formatted
    except _Invalid as invalid:
        return ExecutionResult(data=None, errors=invalid.errors).formatted
    result = execute_document(
        schema,
        document,
        root_value=root,
        variable_values=request.variables,
        operation_name=request.operation_name,
    )
    assert isinstance(result, ExecutionResult)  # resolvers are synchronous
    return result.formatted


class _Invalid(Exception):
    def __init__(self, errors: list[GraphQLError]) -> None:
        super().__init__("invalid document")
        self.errors = errors


# Clients send the same few documents over and over; like production GraphQL servers, parse and
# validate each distinct one once (validation was half of the sandbox's CPU per request).
@lru_cache(maxsize=512)
def _parsed(query: str) -> DocumentNode:
    return parse(query)


@lru_cache(maxsize=512)
def _validated(schema: GraphQLSchema, query: str) -> DocumentNode:
    document = _parsed(query)
    errors = validate(schema, document)
    if errors:
        raise _Invalid(list(errors))
    return document

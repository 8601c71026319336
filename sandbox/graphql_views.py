"""The two GraphQL endpoints, with authentication and fault injection in front of execution."""

from __future__ import annotations

import socket
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request

from sandbox.auth import bearer_token_matches
from sandbox.graphql_api import MalformedRequest, OperationRequest, execute, load_schema
from sandbox.http_errors import error_response, graphql_request_error
from sandbox.state import current_state

bp = Blueprint("graphql", __name__)


@bp.post("/customers/graphql")
def customers_graphql() -> Response:
    """Serve the customers API."""
    state = current_state()
    return _serve("customers", "customers", state.config.customers_token, state.customers_root)


@bp.post("/personal-data/graphql")
def personal_data_graphql() -> Response:
    """Serve the personal-data API."""
    state = current_state()
    return _serve(
        "personal-data", "personal_data", state.config.personal_data_token, state.personal_data_root
    )


def _serve(api: str, schema_name: str, token: str, root: object) -> Response:
    """Count the request, wait the API latency, authenticate, inject faults, and execute it."""
    state = current_state()
    state.rates.record(api)
    faults = state.faults
    faults.delay()
    if not bearer_token_matches(token):
        return error_response(401, "Missing or invalid bearer token.")
    draw, settings = faults.draw(), faults.settings
    if draw.unavailable:
        faults.record("unavailable")
        return error_response(503, "Service temporarily unavailable.")
    retry_after = faults.take_throttle(api)
    if draw.throttle and retry_after is None:
        retry_after = settings.retry_after
    if retry_after is not None:
        faults.record("throttle")
        return error_response(429, "Too many requests.", {"Retry-After": str(retry_after)})
    try:
        operation = OperationRequest.from_body(request.get_data())
    except MalformedRequest as exc:
        return graphql_request_error(str(exc))
    if schema_name == "personal_data" and faults.take_purchase_failure(operation.variables):
        faults.record("unavailable")
        return error_response(503, "Service temporarily unavailable.")
    if draw.slow:
        # Execute after the pause, like a slow server: the change commits even if the client left.
        faults.record("slow")
        faults.pause()
    body = execute(load_schema(schema_name), root, operation)
    if draw.lose_response and operation.is_mutation():
        faults.record("lost_response")
        return _dropped_connection()
    return jsonify(body)


def _dropped_connection() -> Response:
    """Return a response whose body closes the TCP connection before anything is written.

    Raising ConnectionError while werkzeug iterates the body makes its server treat the connection as
    dropped and write nothing; shutting the socket down makes the client see EOF instead of a response.
    """
    connection = request.environ.get("werkzeug.socket")

    def body() -> Iterator[bytes]:
        if connection is not None:
            connection.shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("The sandbox dropped this response on purpose.")
        yield b""  # Unreachable: makes this function a generator, run only by the server.

    return Response(body(), mimetype="application/json")

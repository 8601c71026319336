"""The one error-response helper of the sandbox's HTTP surface.

Transport-level errors (401, 404, 429, 503, bad admin input) use `{"error": {"status", "message"}}`.
That body deliberately lacks the `data`/`errors` keys: gql then raises TransportServerError with the
status code, as it would for a real gateway's 429 or 503, instead of mistaking it for a GraphQL result.
A malformed GraphQL request is the exception: GraphQL-over-HTTP answers it with `{"errors": [...]}`.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Build a JSON transport error with `status`; `message` must not echo client input."""
    response = jsonify({"error": {"status": status, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def graphql_request_error(message: str) -> Response:
    """Build the 400 GraphQL-over-HTTP answer to a body that is not a GraphQL request."""
    response = jsonify({"errors": [{"message": message}]})
    response.status_code = 400
    return response


def init_app(app: Flask) -> None:
    """Answer werkzeug's HTTP errors (404, 405, ...) with the JSON shape instead of HTML pages."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_response(exc.code or 500, exc.description or exc.name)

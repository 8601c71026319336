"""One JSON error shape for the whole HTTP surface: `{"error": code, "message": ..., ...}`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

__all__ = ["error_response", "http_error_response", "init_app"]

log = logging.getLogger("crmsync.web")


def error_response(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    """A JSON error body with a stable machine-readable `code` and a human-readable `message`."""
    return jsonify({"error": code, "message": message, **extra}), status


def http_error_response(exc: HTTPException) -> tuple[Response, int]:
    """An HTTP error (404, 405, 413, ...) in the one JSON shape."""
    code = (exc.name or "error").lower().replace(" ", "_")
    return error_response(exc.code or 500, code, exc.description or exc.name)


def init_app(app: Flask, count_unexpected: Callable[[str], None]) -> None:
    """Answer every HTTP error (404, 405, 413, ...) and any unexpected failure in the same JSON shape;
    `count_unexpected(endpoint)` counts the unexpected ones in the metrics."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return http_error_response(exc)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        # The documented boundary for anything unforeseen, a bug by definition (every bad input has its
        # 4xx): logged with its traceback, counted by endpoint (alert on it), answered as JSON.
        endpoint = request.endpoint or "unknown"
        log.exception("unhandled error", extra={"event": "unhandled_error", "method": request.method,
                                                "path": request.path})  # fmt: skip
        count_unexpected(endpoint)
        return error_response(500, "internal_error", "The server failed to handle the request.")

"""One JSON error shape for the whole HTTP surface: `{"error": code, "message": ..., ...}`."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

__all__ = ["error_response", "init_app"]


def error_response(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    """A JSON error body with a stable machine-readable `code` and a human-readable `message`."""
    return jsonify({"error": code, "message": message, **extra}), status


def init_app(app: Flask) -> None:
    """Answer every HTTP error (404, 405, 413, ...) and any unexpected failure in the same JSON shape."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        # The documented boundary for anything unforeseen: logged with its type, answered as JSON.
        app.logger.exception("unhandled error", extra={"event": "unhandled_error"})
        return error_response(500, "internal_error", "The server failed to handle the request.")

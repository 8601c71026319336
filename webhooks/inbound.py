"""The request as the sources see it, read off the WSGI environ with as little of werkzeug's work as
possible: the receive path is benchmarked (docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any, cast

from flask import Flask, Request, current_app, request
from werkzeug.local import LocalProxy

from crmsync.core.settings import Settings

from .body import read_body
from .sources.items import InboundRequest

__all__ = ["unproxied", "read_request_body", "inbound_request", "request_headers"]


def unproxied() -> tuple[Request, Flask]:
    """The current request and app, taken from behind Flask's proxies once: every attribute read
    through a proxy first raises and catches an AttributeError (~8 K instructions; docs/benchmarks.md)."""
    return (cast("LocalProxy[Request]", request)._get_current_object(),
            cast("LocalProxy[Flask]", current_app)._get_current_object())  # fmt: skip


def read_request_body(incoming: Request, settings: Settings) -> bytes:
    """The whole body of `incoming`, within MAX_BODY_BYTES and BODY_TIMEOUT_SECONDS; or a BodyError
    (webhooks/body.py)."""
    return read_body(incoming.environ, incoming.content_length, settings.max_body_bytes,
                     settings.body_timeout_seconds)  # fmt: skip


def inbound_request(incoming: Request, body: bytes) -> InboundRequest:
    """`incoming` as the sources see it; `target` is the path and query as the client sent them (a
    signature may cover them byte for byte)."""
    environ = incoming.environ
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or incoming.full_path.rstrip("?")
    return InboundRequest(
        method=incoming.method,
        scheme=incoming.scheme,
        host=incoming.host,
        target=target,
        headers=request_headers(environ),
        body=body,
        # Parsed only when there is one (~5 K instructions for an empty one).
        query=incoming.args if environ.get("QUERY_STRING") else {},
    )


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name, read off the WSGI environ as werkzeug's
    EnvironHeaders does, without its title-casing of every name (~10 µs a request)."""
    headers = {name[5:].replace("_", "-").lower(): value for name, value in environ.items()
               if name.startswith("HTTP_") and name not in _BODY_HEADERS_AS_HTTP}  # fmt: skip
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = environ[name]
    return headers


# A client's own `Content-Type` header arrives as CONTENT_TYPE; these duplicates are not headers.
_BODY_HEADERS_AS_HTTP = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})

"""Closing a kept-alive connection after an answer that left the request body unread.

After a 413, 408 or a broken body the rest of the body is still on the socket (or never comes), so
the next request on that connection cannot be found: the answer must say `Connection: close` and
the server must close. A view asks for it with `close_connection(response)`. werkzeug's server acts
on that header itself; gunicorn drops hop-by-hop headers an app sets and would announce keep-alive,
then close after draining at most 64 KiB of the body: the client's next request on that connection
would hit a closed socket. So this middleware tells gunicorn's response object to close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Response

__all__ = ["close_connection", "CloseConnection"]

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def close_connection(response: Response) -> Response:
    """Ask the server to close the connection once `response` is sent."""
    response.headers["Connection"] = "close"
    return response


class CloseConnection:
    """WSGI middleware: a response carrying `Connection: close` makes gunicorn close the connection."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if any(name.lower() == "connection" and value.lower() == "close" for name, value in headers):
                # gunicorn's start_response is a method of its Response, which has force_close().
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)

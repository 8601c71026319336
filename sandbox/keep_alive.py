"""A werkzeug request handler that keeps HTTP/1.1 connections open between requests.

Werkzeug's development server always answers `Connection: close`: http.server cannot drain a request
body the application left unread, and werkzeug's own drain after each response reads the socket
until it goes quiet, which would swallow the client's next request. Clients of the real APIs reuse
connections (requests sessions, gql transports), and some failures only show on a reused connection,
so this handler reads each fixed-length body up front and hides the socket from that drain while the
application runs. Requests with chunked bodies still get `Connection: close`.
"""

from __future__ import annotations

import io
import socket
from typing import TYPE_CHECKING, Any

from werkzeug.serving import WSGIRequestHandler

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

# Idle keep-alive connections are closed after this long, so they do not hold a thread forever.
IDLE_TIMEOUT_SECONDS = 30


class KeepAliveRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, minus the unconditional `Connection: close` once the body is fully read."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_SECONDS
    _body_drained = False

    def setup(self) -> None:
        """Disable Nagle's algorithm: werkzeug sends headers and body in separate writes, and on a
        kept-alive connection the client's delayed ACK would otherwise stall every response ~40 ms."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run_wsgi(self) -> None:
        """Run one request, then put back the socket reader that make_environ set aside."""
        socket_reader = self.rfile
        try:
            super().run_wsgi()
        finally:
            self.rfile = socket_reader

    def make_environ(self) -> WSGIEnvironment:
        """Build the WSGI environ with the request body already read off the socket."""
        environ = super().make_environ()
        self._body_drained = False
        if environ.get("wsgi.input_terminated"):
            return environ  # Chunked: werkzeug dechunks it lazily; this connection will close.
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return environ
        environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
        # Werkzeug's post-response drain reads self.rfile; an empty stream there leaves the
        # client's next request on the socket for the next handle_one_request.
        self.rfile = io.BytesIO()
        self._body_drained = True
        return environ

    def send_header(self, keyword: str, value: Any) -> None:
        """Drop werkzeug's `Connection: close` when the next request can be parsed safely."""
        if keyword.lower() == "connection" and str(value).lower() == "close" and self._body_drained:
            return
        super().send_header(keyword, value)

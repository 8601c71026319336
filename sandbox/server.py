"""Serving the sandbox over real HTTP with werkzeug's threaded server, keeping connections alive."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.app import create_sandbox_app
from sandbox.config import SandboxConfig
from sandbox.keep_alive import KeepAliveRequestHandler
from sandbox.state import SandboxState, state_of


def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = 5050) -> None:
    """Serve the sandbox until interrupted."""
    app = create_sandbox_app(config)
    server = make_server(host, port, app, threaded=True, request_handler=KeepAliveRequestHandler)
    try:
        server.serve_forever()
    finally:
        state_of(app).faults.release()
        server.server_close()


@dataclass
class RunningSandbox:
    """A sandbox serving in a background thread; `stop()` shuts it down and frees the port."""

    server: BaseWSGIServer
    thread: threading.Thread
    app: Flask

    @property
    def port(self) -> int:
        """The port the server is bound to."""
        return self.server.server_port

    @property
    def base_url(self) -> str:
        """The server's root URL, without a trailing slash."""
        return f"http://{self.server.host}:{self.port}"

    @property
    def customers_url(self) -> str:
        """The customers API's GraphQL endpoint."""
        return f"{self.base_url}/customers/graphql"

    @property
    def personal_data_url(self) -> str:
        """The personal-data API's GraphQL endpoint."""
        return f"{self.base_url}/personal-data/graphql"

    @property
    def state(self) -> SandboxState:
        """The sandbox's store and fault injector, for assertions and waits in tests."""
        return state_of(self.app)

    def stop(self) -> None:
        """Wake slow requests, stop serving, and close the listening socket."""
        self.state.faults.release()
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


def start_in_thread(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> RunningSandbox:
    """Start a sandbox in a daemon thread; port 0 picks a free port. Returns once it accepts requests."""
    app = create_sandbox_app(config)
    # The socket is bound and listening when make_server returns, so no readiness wait is needed.
    server = make_server(host, port, app, threaded=True, request_handler=KeepAliveRequestHandler)
    # A short poll interval makes stop() return quickly; the default half second adds up in test suites.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="sandbox-server", daemon=True
    )
    thread.start()
    return RunningSandbox(server=server, thread=thread, app=app)
